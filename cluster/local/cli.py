"""The `anneal` command: the client's commands (`anneal.cli`) and the server's, which run on
the cluster: up, down, serve, token, run (a study driver's Ray job) and demo.

The console script enters here. It stays light: each command imports what it runs, so
`anneal submit` on a client machine loads no Ray, torch or MLflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from anneal import cli
from anneal.cli import AddCommand, console, out, print_study, settings_of
from anneal.settings import Settings
from anneal.types import StudyState

if TYPE_CHECKING:
    from cluster.driver.writer import TrialWriter

INSECURE_HELP = "allow a non-loopback address without TLS and configured tokens (logs a warning)"


def cmd_up(args: argparse.Namespace) -> int:
    from cluster.local.cluster import up

    settings = Settings.load(
        home=args.home,
        grpc_address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        object_store_mb=args.object_store_mb,
        insecure=args.insecure or None,
    )
    cluster = up(settings, log=console.print)
    out.print(
        f"anneal is up: gRPC {cluster.grpc_address}, Ray dashboard {cluster.ray_dashboard_url}, "
        f"Serve HTTP http://127.0.0.1:{cluster.serve_http_port}, "
        f"metrics http://{settings.metrics_host}:{cluster.metrics_port}/metrics"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from cluster.local.cluster import down

    down(settings_of(args), log=console.print)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cluster.server.main import serve_forever

    settings = Settings.load(
        home=args.home, grpc_address=args.address, reflection=args.reflection or None, insecure=args.insecure or None
    )
    serve_forever(settings)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """`anneal token add NAME` or `anneal token revoke NAME`: edits the tokens file, which a
    running server reads again within a second of the change."""
    return cmd_token_revoke(args) if args.action == "revoke" else cmd_token_add(args)


def cmd_token_add(args: argparse.Namespace) -> int:
    """Adds a principal to the tokens file and prints its new token, the one time it is shown."""
    from cluster.server.principals import add_principal, tokens_path

    path = tokens_path(settings_of(args))
    token = add_principal(
        path,
        args.name,
        admin=args.admin,
        max_concurrent_studies=args.max_concurrent_studies,
        max_concurrent_trials=args.max_concurrent_trials,
    )
    console.print(f"principal {args.name} is in {path} (a running server takes it up within a second); its token:")
    out.print(token)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """Removes a principal and its token from the tokens file."""
    from cluster.server.principals import revoke_principal, tokens_path

    path = tokens_path(settings_of(args))
    revoke_principal(path, args.name)
    console.print(f"principal {args.name} is removed from {path}; a running server refuses its token within a second")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The study driver: `anneal run --study ID` or `--standby JOB_ID` (jobs the server submits),
    or `anneal run spec.yaml`."""
    supervisor = os.getppid()  # for a driver a Ray job started: the job's process, read before slow imports
    settings = settings_of(args)
    writer: TrialWriter | None = None
    if args.standby:
        from cluster.driver.supervision import exit_if_orphaned

        with exit_if_orphaned(supervisor):  # from before the slow imports on
            from cluster.driver.standby import wait_as_standby

            handed = wait_as_standby(settings, args.standby, supervisor)
        if handed is None:
            console.print("no study was handed to this standby driver; exiting")
            return 0
        study_id, writer = handed
    elif args.study:
        study_id = args.study
        if args.resume:
            from cluster.driver.standby import prepare_driver

            # A resumed study's trials start on warm workers, as a standby's do; the kill that
            # ended its last driver ended that driver's warm workers too.
            writer = prepare_driver(settings)
    else:
        study_id = _record_spec(settings, args.spec)

    from cluster.driver.run import run_study

    resume = bool(args.resume and args.study)
    study = run_study(settings, study_id, supervisor=supervisor, allow_import_paths=True, writer=writer, resume=resume)
    print_study(study)
    return 0 if study.state is StudyState.SUCCEEDED else 1


def _record_spec(settings: Settings, spec_path: str) -> str:
    """`anneal run spec.yaml`: records the spec as a study of the cluster's own users, checked
    before the driver's slow imports."""
    from anneal.spec import StudySpec
    from anneal.types import LOCAL_PRINCIPAL
    from cluster.store.store import Store
    from trainers.registry import check_spec

    spec = StudySpec.load(spec_path)
    check_spec(spec, allow_import_paths=True, data_roots=settings.data_roots)
    study_id = Store(settings.store_url).create_study(spec, owner=LOCAL_PRINCIPAL).study_id
    console.print(f"study {study_id} recorded in {settings.store_url}")
    return study_id


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.local.demo import run_demo

    return run_demo(settings_of(args), Path(args.spec), console=console, out=out)


def add_server_commands(command: AddCommand) -> None:
    sub = command("up", cmd_up, "start a local Ray cluster and the anneal server")
    sub.add_argument("--num-cpus", type=int, help="CPUs the Ray head offers (default: all)")
    sub.add_argument("--num-gpus", type=int, help="GPUs the Ray head offers (default: those it finds)")
    sub.add_argument("--object-store-mb", type=int, help="MiB of shared memory for Ray's object store")
    sub.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    command("down", cmd_down, "stop what `anneal up` started")
    sub = command("serve", cmd_serve, "run the gRPC server in the foreground")
    sub.add_argument("--reflection", action="store_true", help="serve gRPC reflection")
    sub.add_argument("--insecure", action="store_true", help=INSECURE_HELP)
    sub.set_defaults(info_logs=True)
    sub = command("token", cmd_token, "add a principal to the tokens file and print its token, or revoke one")
    sub.add_argument("action", choices=["add", "revoke"], help="add (or give a new token to) a principal, or revoke it")
    sub.add_argument("name", help="the principal's name (lower case, digits, dashes)")
    sub.add_argument("--admin", action="store_true", help="add: sees and acts on every principal's studies")
    sub.add_argument("--max-concurrent-studies", type=int, help="add: own quota (default: the server's)")
    sub.add_argument("--max-concurrent-trials", type=int, help="add: own quota (default: the server's)")
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
    sub.set_defaults(info_logs=True)
    sub = command("demo", cmd_demo, "up, tune, deploy, predict, down")
    sub.add_argument("--spec", default="examples/digits.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extensions=[add_server_commands])


if __name__ == "__main__":  # `python -m cluster.local.cli`, as `anneal up` starts the server
    sys.exit(main())
