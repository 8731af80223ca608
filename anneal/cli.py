"""The `anneal` command line: the client's commands, and the way to add more.

The one `anneal` command enters on the cluster side (`cluster.local.cli`), which adds the
server's commands (up, down, serve, token, run, demo) to these; this module imports
nothing of the cluster, so a client machine needs none of the server's dependencies.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from anneal.client import Client
from anneal.errors import AnnealError
from anneal.settings import Settings
from anneal.spec import AUTOSCALING_FIELDS, StudySpec
from anneal.types import Deployment, EventKind, Study, StudyState, TrainerDescription, TrialState

console = Console(stderr=True)
out = Console()

Handler = Callable[[argparse.Namespace], int]
# Adds a subcommand: (name, handler, help) -> its parser, for the command's own arguments.
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]
# Adds a group of subcommands, e.g. the server's.
Extension = Callable[[AddCommand], None]


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the global flags (--home, --address) and the environment give."""
    return Settings.load(home=args.home, grpc_address=args.address)


def _client(args: argparse.Namespace) -> Client:
    return Client.from_settings(settings_of(args))


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
    metric, mode = study.spec.first_goal.metric, study.spec.first_goal.mode
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
                standing = (
                    f"Pareto front of {len(event.pareto_front)}"
                    if study.spec.is_multi_objective()
                    else f"best {metric} {_fmt(best)}"
                )
                progress.update(task, description=f"{study.name}: {standing} | {note}")
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
    print_study(study)
    return 0 if study.state is StudyState.SUCCEEDED else 1


def print_study(study: Study) -> None:
    out.print(f"study {study.study_id} ({study.name}): {study.state.value}")
    if study.error:
        out.print(f"  error: {study.error}")
    if study.spec.search.warm_start:
        earlier = ", ".join(study.spec.search.warm_start)
        out.print(f"  warm-started: its sampler learnt {study.warm_start_trials} completed trials of {earlier}")
    if study.best_trial:
        out.print(f"  best trial {study.best_trial.trial_id}: config {study.best_trial.config}")
        out.print(f"  metrics {study.best_trial.metrics}; held-out {study.best_test_metrics}")
        out.print(f"  model {study.registered_model} v{study.registered_model_version}: {study.model_uri}")
    front = study.pareto_front
    if front:
        out.print(f"  Pareto front ({len(front)} trials, best first; deploy any with --trial):")
        for trial in front:
            values = ", ".join(f"{goal.metric}={trial.metrics[goal.metric]:.4g}" for goal in study.spec.goals)
            out.print(f"    {trial.trial_id}: {values}")


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.study_id:
            study = client.get_study(args.study_id)
            print_study(study)
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


def cmd_plot(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.get_study(args.study_id)
    try:
        from anneal.plots import write_plots  # Optuna, plotly and matplotlib: only this command needs them
    except ImportError as error:
        console.print(f"[red]anneal plot needs the server extra's Optuna, plotly and matplotlib[/red]: {error}")
        return 2
    written = write_plots(study, Path(args.out or Path("anneal-plots") / study.study_id))
    for path in written.paths:
        out.print(str(path), soft_wrap=True, markup=False, highlight=False)  # whole paths, as scripts read them
    for name, reason in written.skipped.items():
        console.print(f"not drawn: {name}: {reason}")
    return 0 if written.paths else 1


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.cancel_study(args.study_id)
        out.print(f"study {study.study_id}: {study.state.value}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    scaling = {name: getattr(args, name) for name in AUTOSCALING_FIELDS if getattr(args, name) is not None}
    with _client(args) as client:
        deployment = client.deploy(
            args.study_id or "",
            args.replicas,
            name=args.name,
            model=args.model,
            version=args.version,
            trial_id=args.trial,
            **scaling,
        )
    print_deployment(deployment)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_deployment(client.rollback(args.name))
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_deployment(client.delete_deployment(args.name))
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            print_deployment(client.get_deployment(args.name))
            return 0
        table = Table("deployment", "state", "serving", "previous", "replicas", "route")
        for d in client.list_deployments():
            previous = f"{d.previous.registered_model} v{d.previous.version}" if d.previous else ""
            replicas = f"{d.replicas_running}/{d.replicas_wanted}"
            table.add_row(f"{d.owner}/{d.name}", d.state.value, _version_text(d), previous, replicas, d.route)
        out.print(table)
    return 0


def _version_text(deployment: Deployment) -> str:
    return f"{deployment.registered_model} v{deployment.model_version}" if deployment.registered_model else ""


def print_deployment(d: Deployment) -> None:
    out.print(f"deployment {d.owner}/{d.name}: {d.state.value}, HTTP route {d.route}")
    out.print(f"  serving {_version_text(d)} (study {d.study_id}, trial {d.trial_id or '?'})")
    if d.previous is not None:
        out.print(f"  previous {d.previous.registered_model} v{d.previous.version} (study {d.previous.study_id})")
    if d.autoscaling is not None:
        a = d.autoscaling
        out.print(
            f"  autoscaling {a.min_replicas} to {a.max_replicas} replicas, "
            f"{a.target_ongoing_requests:g} requests in flight each"
        )
    else:
        out.print(f"  {d.replicas} replica(s)")
    if d.serve_status:
        out.print(f"  Serve: {d.serve_status}, {d.replicas_running} running of {d.replicas_wanted} wanted")
    for message in (d.serve_message, d.error):
        if message:
            out.print(f"  {message}")


def cmd_predict(args: argparse.Namespace) -> int:
    text = Path(args.rows[1:]).read_text() if args.rows.startswith("@") else args.rows
    examples = json.loads(text)
    with _client(args) as client:
        # Rows are lists of numbers; deeper lists are tensors of the model's input shape.
        nested = bool(examples) and isinstance(examples[0], list) and any(isinstance(v, list) for v in examples[0])
        predictions = (
            client.predict_tensors(args.deployment, examples) if nested else client.predict(args.deployment, examples)
        )
    # Each row's JSON answer: label and probabilities (classification) or values (regression).
    out.print_json(json.dumps([p.answer() for p in predictions]))
    return 0


def cmd_trainers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        trainers = client.list_trainers()
    if args.name:
        chosen = [t for t in trainers if t.name == args.name]
        if not chosen:
            out.print(f"no trainer {args.name!r}; the server lists: {', '.join(t.name for t in trainers)}")
            return 1
        print_trainer(chosen[0])
        return 0
    table = Table("trainer", "task", "input", "metrics", "datasets", "source")
    for t in trainers:
        if not t.available:
            table.add_row(t.name, "[red]unavailable[/red]", "", t.error, "", t.source)
            continue
        task = t.task.value if t.task else ""
        table.add_row(t.name, task, _input_text(t), ", ".join(t.metrics), ", ".join(t.datasets), t.source)
    out.print(table)
    return 0


def _input_text(trainer: TrainerDescription) -> str:
    return "×".join(map(str, trainer.input_shape)) + " tensor" if trainer.input_shape else "rows"


def print_trainer(t: TrainerDescription) -> None:
    """One trainer, with what a spec may set: enough to write one without its code."""
    if not t.available:
        out.print(f"{t.name}: unavailable ({t.source})\n  {t.error}")
        return
    out.print(f"{t.name}: {t.description}")
    out.print(f"  task {t.task.value if t.task else '?'}, input {_input_text(t)}; from {t.source}")
    out.print(f"  metrics: {', '.join(t.metrics)}")
    out.print(f"  datasets: {', '.join(t.datasets) or '(files under the data roots only)'}")
    if t.epochs_parameter:
        out.print(f"  epochs parameter (schedulers stop along it): {t.epochs_parameter}")
    table = Table("parameter", "default", "description")
    for p in t.parameters:
        table.add_row(p.name, "" if p.default is None else json.dumps(p.default), p.description)
    out.print(table)


# ---------------------------------------------------------------- parser


def build_parser(extensions: Sequence[Extension] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anneal", description="Distributed training and hyperparameter tuning.")
    parser.add_argument("--home", help="state directory (ANNEAL_HOME; default ~/.anneal)")
    parser.add_argument("--address", help="gRPC address of the server (ANNEAL_GRPC_ADDRESS)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    for extend in extensions:
        extend(command)
    add_client_commands(command)
    return parser


def add_client_commands(command: AddCommand) -> None:
    sub = command("submit", cmd_submit, "submit a study spec (YAML)")
    sub.add_argument("spec")
    sub.add_argument("--watch", action="store_true", help="follow the study until it ends")
    sub = command("watch", cmd_watch, "follow a study's progress until it ends")
    sub.add_argument("study_id")
    sub = command("status", cmd_status, "list studies, or show one")
    sub.add_argument("study_id", nargs="?")
    sub = command("plot", cmd_plot, "draw a study's plots (PNG, and one HTML page) into a folder")
    sub.add_argument("study_id")
    sub.add_argument("--out", default="", help="the folder (default ./anneal-plots/STUDY_ID)")
    sub = command("cancel", cmd_cancel, "cancel a study")
    sub.add_argument("study_id")
    sub = command("deploy", cmd_deploy, "serve a study's best model, or a registered model version, with Ray Serve")
    sub.add_argument("study_id", nargs="?", help="the study whose best model to serve")
    sub.add_argument("--name", default="", help="the deployment (default: the study's name); one serving rolls over")
    sub.add_argument("--model", default="", help="a registered model of yours (owner.name), instead of a study")
    sub.add_argument("--version", type=int, default=0, help="the registered model's version")
    sub.add_argument("--trial", default="", help="a trial of the study instead of its best")
    sub.add_argument("--replicas", type=int, default=0, help="fixed replicas (default: the study's)")
    for name in AUTOSCALING_FIELDS:
        kind = int if name.endswith("replicas") else float
        sub.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=f"autoscaling: {name}")
    sub = command("rollback", cmd_rollback, "serve a deployment's previous version again")
    sub.add_argument("name")
    sub = command("undeploy", cmd_undeploy, "remove a deployment from Ray Serve, freeing its replicas")
    sub.add_argument("name")
    sub = command("deployments", cmd_deployments, "list your deployments, or show one")
    sub.add_argument("name", nargs="?")
    sub = command("trainers", cmd_trainers, "list the server's trainers, or show one with its parameters")
    sub.add_argument("name", nargs="?")
    sub = command("predict", cmd_predict, "send rows, or tensors, to a deployment")
    sub.add_argument("deployment")
    sub.add_argument("rows", help="JSON list of rows (or of tensors, nested lists), or @file.json")


def main(argv: Sequence[str] | None = None, extensions: Sequence[Extension] = ()) -> int:
    """Runs one command; a command whose parser sets `info_logs` (a long-running process) logs at INFO."""
    args = build_parser(extensions).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose or getattr(args, "info_logs", False) else logging.WARNING,
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
