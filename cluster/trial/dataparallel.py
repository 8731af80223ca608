"""A data-parallel trial: the Tune trial function runs a Ray Train `TorchTrainer` over N workers.

This is the one Train-in-Tune pattern Ray 2.60 supports (a Train V2 trainer cannot be given
to a Tuner). The workers (`cluster.worker.train`) hand their epochs to the trial function
through a Ray queue, and it reports them to Tune and persists the checkpoints, exactly as a
single-worker trial's context does: schedulers, retries and study resumes treat both alike.
Train retries nothing itself (Tune's retries would multiply with its own): a lost worker
fails the trial attempt, and Tune restarts it from its newest checkpoint on a new worker
group. Whatever ends the trial function (its end, an error, Tune stopping it), the Train run
is aborted on the way out, so its workers and their placement group go with it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import ray
from ray.train.torch import TorchConfig
from ray.train.v2._internal.callbacks import DatasetsCallback
from ray.train.v2.api.config import FailureConfig, RunConfig, ScalingConfig
from ray.train.v2.torch.torch_trainer import TorchTrainer  # what ray.train.torch gives with Train V2 on
from ray.util.queue import Empty, Queue

from cluster.trial.announce import AnnounceController, ControllerStarted
from cluster.trial.context import TuneTrainContext
from cluster.trial.plan import WorkerPlan
from cluster.trial.trainenv import WORKER_ENV_VARS, control_env_vars, train_environments
from cluster.worker.handover import Handover
from cluster.worker.train import WorkerSetup, train_worker
from trainers.workercontext import StudyData

log = logging.getLogger("anneal.trial")

POLL_S = 0.2
ABORT_WAIT_S = 10.0
# A worker group that cannot be placed is retried after Train's start timeout (60 s); a study
# never asks for more than the cluster holds (the server checks), so this bounds a wait for
# resources another job holds rather than waiting forever.
WORKER_GROUP_ATTEMPTS = 5


def run_data_parallel(target: str, trial_id: str, data: StudyData, context: TuneTrainContext, plan: WorkerPlan) -> None:
    """Trains the trial on `plan.workers` Ray Train workers, reporting through `context`."""
    resumed = context.load_checkpoint()
    # In the environment of Train's control processes, so a warm one takes it (`trainenv`).
    channel = Queue(actor_options={"num_cpus": 0, "runtime_env": {"env_vars": control_env_vars()}})
    setup = WorkerSetup(
        target=target,
        config=dict(context.config),
        data=ray.put(data),
        resumed=ray.put(resumed) if resumed is not None else None,
        start_epoch=context.epoch,
        channel=channel,
        num_threads=plan.threads,
        report_interval_s=context.pacing.report_interval_s,
        checkpoint_interval_s=context.pacing.checkpoint_interval_s,
        decisions=context.pacing.decisions,
    )
    trainer = TrialTorchTrainer(
        train_worker,
        train_loop_config={"setup": setup},
        scaling_config=ScalingConfig(
            num_workers=plan.workers,
            use_gpu=plan.gpu > 0,
            resources_per_worker={"CPU": plan.cpu, **({"GPU": plan.gpu} if plan.gpu else {})},
        ),
        torch_config=TorchConfig(backend="nccl" if plan.gpu > 0 else "gloo"),
        run_config=RunConfig(
            name=trial_id,
            storage_path=plan.storage_path,
            failure_config=FailureConfig(max_failures=0, controller_failure_limit=WORKER_GROUP_ATTEMPTS),
            worker_runtime_env={"env_vars": WORKER_ENV_VARS},
            # Train runs controller callbacks given here too, beside user callbacks.
            callbacks=[AnnounceController(channel)],  # type: ignore[list-item]
        ),
    )
    outcome: queue.Queue[BaseException | None] = queue.Queue()
    fitting = threading.Thread(target=_fit, args=(trainer, outcome), name=f"anneal-train-{trial_id}", daemon=True)
    controller: list[Any] = []
    try:
        fitting.start()
        final = _pump(channel, fitting, context, controller)
        error = outcome.get()
        if final is None and error is not None:
            raise error
        if final is not None:
            # Only now, with the Train run over and its placement group removed by its own
            # controller: Tune may end this actor at the final result, and the controller with it.
            context.hand_over(final.epochs, final.checkpoint, final=True)
    finally:
        # Tune stopped the trial or it failed: the Train run is aborted aside, so this function
        # returns within Tune's two seconds for a reused actor.
        threading.Thread(target=_wind_down, args=(fitting, controller, channel), daemon=True).start()


class TrialTorchTrainer(TorchTrainer):
    """A `TorchTrainer` that starts Ray Data's dataset manager only for a trial that gives it
    datasets. A trial's data reaches its workers through the object store, and the manager is
    an actor of its own: started as the workers begin training, it took a core from them for
    seconds while it started and imported Ray Data."""

    def _create_default_callbacks(self) -> list[Any]:
        callbacks: list[Any] = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [callback for callback in callbacks if not isinstance(callback, DatasetsCallback)]


def _fit(trainer: TorchTrainer, outcome: queue.Queue[BaseException | None]) -> None:
    try:
        trainer.fit()
        outcome.put(None)
    except BaseException as error:  # handed to the trial function's thread, which raises it
        outcome.put(error)


def _pump(
    channel: Queue, fitting: threading.Thread, context: TuneTrainContext, controller: list[Any]
) -> Handover | None:
    """Reports each hand-over to Tune but the final one, until the Train run has ended and the
    queue is drained; returns the final hand-over, if one came."""
    final = None
    while True:
        try:
            item = channel.get(timeout=POLL_S)
        except Empty:
            if fitting.is_alive() or not channel.empty():
                continue
            return final
        if isinstance(item, ControllerStarted):
            controller.append(item.handle)
            _check_environment(item.runtime_env)
        elif isinstance(item, Handover) and item.final:
            final = item
        elif isinstance(item, Handover):
            context.hand_over(item.epochs, item.checkpoint, final=False)


def _check_environment(controller_env: str) -> None:
    """Warns when Train's controller runs in another environment than the driver warms processes
    for (`cluster.trial.trainenv`): data-parallel trials would then start cold."""
    own = json.loads(ray.get_runtime_context().get_runtime_env_string() or "{}")
    expected = train_environments(own, control_env_vars()).control
    if controller_env != expected:
        log.warning(
            "Ray Train's controller runs in the runtime environment %s, not %s as expected: its processes start cold",
            controller_env,
            expected,
        )


def _wind_down(fitting: threading.Thread, controller: list[Any], channel: Queue) -> None:
    """Aborts a Train run that is still going, so its workers and placement group go within seconds."""
    if fitting.is_alive():
        _abort(controller)
        fitting.join(ABORT_WAIT_S)
    ray.kill(channel.actor)  # type: ignore[arg-type]


def _abort(controller: list[Any]) -> None:
    """Ends the Train run: its controller aborts the worker group (removing the placement group)
    and exits; if it does not answer in time, it is killed, and Train's placement-group cleaner
    removes the group."""
    if not controller:
        log.warning("the Train run ended before its controller announced itself")
        return
    handle = controller[0]
    try:
        ray.get(handle.abort.remote(), timeout=ABORT_WAIT_S)
    except Exception:  # aborting exits the actor, so the call ends in an actor-died error
        pass
    ray.kill(handle, no_restart=True)
