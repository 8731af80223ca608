"""The `anneal` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from anneal.client import Client
from anneal.errors import AnnealError
from anneal.settings import Settings
from anneal.spec import StudySpec
from anneal.types import EventKind, Study, StudyState, TrialState

if TYPE_CHECKING:
    from cluster.writer import TrialWriter

console = Console(stderr=True)
out = Console()


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(home=args.home, grpc_address=args.address)


def _client(args: argparse.Namespace) -> Client:
    return Client.from_settings(_settings(args))


# ---------------------------------------------------------------- cluster


def cmd_up(args: argparse.Namespace) -> int:
    from cluster.local import up

    settings = Settings.load(
        home=args.home, grpc_address=args.address, num_cpus=args.num_cpus, insecure=args.insecure or None
    )
    cluster = up(settings, log=console.print)
    out.print(
        f"anneal is up: gRPC {cluster.grpc_address}, Ray dashboard {cluster.ray_dashboard_url}, "
        f"Serve HTTP http://127.0.0.1:{cluster.serve_http_port}"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from cluster.local import down

    down(_settings(args), log=console.print)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cluster.server import serve_forever

    settings = Settings.load(
        home=args.home, grpc_address=args.address, reflection=args.reflection or None, insecure=args.insecure or None
    )
    serve_forever(settings)
    return 0


def cmd_token_add(args: argparse.Namespace) -> int:
    """Adds a principal to the tokens file and prints its new token, the one time it is shown."""
    from cluster.auth import add_principal, tokens_path

    path = tokens_path(_settings(args))
    token = add_principal(
        path,
        args.name,
        admin=args.admin,
        max_concurrent_studies=args.max_concurrent_studies,
        max_concurrent_trials=args.max_concurrent_trials,
    )
    console.print(f"principal {args.name} is in {path} (restart the server to take it up); its token:")
    out.print(token)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The study driver: `anneal run --study ID` or `--standby JOB_ID` (jobs the server submits),
    or `anneal run spec.yaml`."""
    supervisor = os.getppid()  # for a driver a Ray job started: the job's process, read before slow imports
    settings = _settings(args)
    writer: TrialWriter | None = None
    if args.standby:
        from cluster.supervision import exit_if_orphaned

        with exit_if_orphaned(supervisor):
            handed = _wait_as_standby(settings, args.standby, supervisor)
        if handed is None:
            console.print("no study was handed to this standby driver; exiting")
            return 0
        study_id, writer = handed
    elif args.study:
        study_id = args.study
    else:
        study_id = _record_spec(settings, args.spec)

    from cluster.driver import run_study

    resume = bool(args.resume and args.study)
    study = run_study(settings, study_id, supervisor=supervisor, allow_import_paths=True, writer=writer, resume=resume)
    _print_study(study)
    return 0 if study.state is StudyState.SUCCEEDED else 1


def _wait_as_standby(settings: Settings, job_id: str, supervisor: int) -> tuple[str, TrialWriter] | None:
    """Warms up, then waits for the study the server hands to this standby's Ray job: its id
    and the trial writer started for it; None when none came."""
    from cluster.driver import prepare_driver, wait_for_assignment

    writer = prepare_driver(settings)
    study_id = wait_for_assignment(settings, job_id, supervisor=supervisor)
    if study_id is None:
        writer.close()
        return None
    return study_id, writer


def _record_spec(settings: Settings, spec_path: str) -> str:
    """`anneal run spec.yaml`: records the spec as a study of the cluster's own users."""
    from cluster.auth import LOCAL_PRINCIPAL
    from cluster.store import Store
    from trainers.registry import check_spec

    spec = StudySpec.load(spec_path)
    check_spec(spec, allow_import_paths=True, data_roots=settings.data_roots)
    study_id = Store(settings.store_url).create_study(spec, owner=LOCAL_PRINCIPAL).study_id
    console.print(f"study {study_id} recorded in {settings.store_url}")
    return study_id


# ---------------------------------------------------------------- studies


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.create_study(StudySpec.load(args.spec))
        out.print(f"study {study.study_id} ({study.name}) {study.state.value}, Ray job {study.ray_job_id}")
        if args.watch:
            return _watch(client, study.study_id)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch(client, args.study_id)


def watch_with_progress(client: Client, study_id: str) -> Study:
    """Follows a study's events with a progress bar; returns the study once it ended."""
    study = client.get_study(study_id)
    metric, mode = study.spec.objective.metric, study.spec.objective.mode
    best: float | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{study.name}: starting", total=study.spec.budget.max_trials)
        for event in client.watch_study(study_id):
            trial = event.trial
            if event.kind is EventKind.TRIAL_ENDED and trial is not None:
                value = trial.metrics.get(metric)
                if value is not None and trial.state is not TrialState.ERROR:
                    best = value if best is None or (value > best if mode == "max" else value < best) else best
                progress.advance(task)
                note = f"{trial.trial_id} {trial.state.value.lower()}"
                progress.update(task, description=f"{study.name}: best {metric} {_fmt(best)} | {note}")
            elif event.kind is EventKind.STUDY_STARTED:
                progress.update(task, description=f"{study.name}: running")
            elif event.kind is EventKind.STUDY_ENDED:
                progress.update(
                    task, description=f"{study.name}: {event.study_state.value if event.study_state else ''}"
                )
    return client.get_study(study_id)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _watch(client: Client, study_id: str) -> int:
    study = watch_with_progress(client, study_id)
    _print_study(study)
    return 0 if study.state is StudyState.SUCCEEDED else 1


def _print_study(study: Study) -> None:
    out.print(f"study {study.study_id} ({study.name}): {study.state.value}")
    if study.error:
        out.print(f"  error: {study.error}")
    if study.best_trial:
        out.print(f"  best trial {study.best_trial.trial_id}: config {study.best_trial.config}")
        out.print(f"  metrics {study.best_trial.metrics}; held-out {study.best_test_metrics}")
        out.print(f"  model {study.registered_model} v{study.registered_model_version}: {study.model_uri}")


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.study_id:
            study = client.get_study(args.study_id)
            _print_study(study)
            table = Table("trial", "state", "epochs", "metrics")
            for trial in study.trials:
                metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(trial.metrics.items()))
                table.add_row(trial.trial_id, trial.state.value, str(trial.epochs), metrics)
            out.print(table)
            return 0
        table = Table("study", "name", "state", "trials", "created")
        for study in client.list_studies():
            table.add_row(
                study.study_id,
                study.name,
                study.state.value,
                str(len(study.trials)),
                study.created_at.isoformat(timespec="seconds"),
            )
        out.print(table)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.cancel_study(args.study_id)
        out.print(f"study {study.study_id}: {study.state.value}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deployment = client.deploy(args.study_id, args.replicas)
        out.print(
            f"deployment {deployment.name}: {deployment.state.value}, {deployment.replicas} replica(s), "
            f"HTTP route {deployment.route}"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    text = Path(args.rows[1:]).read_text() if args.rows.startswith("@") else args.rows
    rows = json.loads(text)
    with _client(args) as client:
        predictions = client.predict(args.deployment, rows)
    out.print_json(json.dumps([p.model_dump() for p in predictions]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(_settings(args), Path(args.spec), console=console, out=out)


# ---------------------------------------------------------------- parser

INSECURE_HELP = "allow a non-loopback address without TLS and configured tokens (logs a warning)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anneal", description="Distributed training and hyperparameter tuning.")
    parser.add_argument("--home", help="state directory (ANNEAL_HOME; default ~/.anneal)")
    parser.add_argument("--address", help="gRPC address of the server (ANNEAL_GRPC_ADDRESS)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("up", cmd_up, "start a local Ray cluster and the anneal server")
    sub.add_argument("--num-cpus", type=int, help="CPUs the Ray head offers (default: all)")
    sub.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    command("down", cmd_down, "stop what `anneal up` started")
    sub = command("serve", cmd_serve, "run the gRPC server in the foreground")
    sub.add_argument("--reflection", action="store_true", help="serve gRPC reflection")
    sub.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    sub = command("token", cmd_token_add, "add a principal to the tokens file and print its token")
    sub.add_argument("action", choices=["add"])
    sub.add_argument("name", help="the principal's name (lower case, digits, dashes)")
    sub.add_argument("--admin", action="store_true", help="sees and acts on every principal's studies")
    sub.add_argument("--max-concurrent-studies", type=int, help="own quota (default: the server's)")
    sub.add_argument("--max-concurrent-trials", type=int, help="own quota (default: the server's)")
    sub = command("submit", cmd_submit, "submit a study spec (YAML)")
    sub.add_argument("spec")
    sub.add_argument("--watch", action="store_true", help="follow the study until it ends")
    sub = command("watch", cmd_watch, "follow a study's progress until it ends")
    sub.add_argument("study_id")
    sub = command("status", cmd_status, "list studies, or show one")
    sub.add_argument("study_id", nargs="?")
    sub = command("cancel", cmd_cancel, "cancel a study")
    sub.add_argument("study_id")
    sub = command("deploy", cmd_deploy, "serve a study's best model with Ray Serve")
    sub.add_argument("study_id")
    sub.add_argument("--replicas", type=int, default=0)
    sub = command("predict", cmd_predict, "send rows to a deployment")
    sub.add_argument("deployment")
    sub.add_argument("rows", help="JSON list of rows, or @file.json")
    sub = command("run", cmd_run, "run a study in this process (the Ray job's entrypoint)")
    group = sub.add_mutually_exclusive_group(required=True)
    group.add_argument("spec", nargs="?", help="a spec file to run as a new study")
    group.add_argument("--study", help="the id of a recorded study")
    group.add_argument("--standby", metavar="JOB_ID", help="wait, warmed up, for the study handed to this Ray job")
    sub.add_argument(
        "--resume",
        action="store_true",
        help="with --study: go on with a RUNNING study whose driver died, from Tune's last snapshot",
    )
    sub = command("demo", cmd_demo, "up, tune, deploy, predict, down")
    sub.add_argument("--spec", default="examples/digits.yaml")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or args.command in ("run", "serve") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
        return code
    except AnnealError as error:
        console.print(f"[red]{type(error).__name__}[/red]: {error}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
