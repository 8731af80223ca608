"""Studies run as Ray jobs (Ray Jobs API): the server submits, stops and inspects them."""

from __future__ import annotations

import shlex

from ray.job_submission import JobStatus, JobSubmissionClient

from anneal.settings import Settings

RAY_TOKEN_ENV = {"RAY_AUTH_MODE": "token"}


def job_id_for(study_id: str) -> str:
    return f"anneal-{study_id}"


class JobLauncher:
    """Submits `anneal run --study ID` to the cluster's job API, with the settings as its environment."""

    def __init__(self, settings: Settings) -> None:
        if not settings.ray_dashboard_url:
            raise ValueError(
                "ray_dashboard_url is not set: start a cluster with `anneal up` or pass --ray-dashboard-url"
            )
        self.settings = settings
        self.client = JobSubmissionClient(settings.ray_dashboard_url)

    def submit(self, study_id: str) -> str:
        env = {**self.settings.to_env(), **RAY_TOKEN_ENV}
        return self.client.submit_job(
            entrypoint=f"anneal run --study {shlex.quote(study_id)}",
            submission_id=job_id_for(study_id),
            runtime_env={"env_vars": env},
            metadata={"anneal.study_id": study_id},
        )

    def stop(self, job_id: str) -> None:
        if job_id and not self.status(job_id).is_terminal():
            self.client.stop_job(job_id)

    def status(self, job_id: str) -> JobStatus:
        return self.client.get_job_status(job_id)
