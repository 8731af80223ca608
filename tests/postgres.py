"""A throwaway PostgreSQL server on loopback, for the tests that run the store on PostgreSQL.

It uses the server binaries of Debian's `postgresql` package (or any `initdb` on PATH):
a fresh data directory in a temporary folder, trust authentication, a free loopback port,
stopped and removed at the end. `ANNEAL_TEST_POSTGRES_URL` points the tests at a server of
your own instead. As root, the server runs as the `postgres` user, since PostgreSQL refuses
to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXTERNAL_URL_ENV = "ANNEAL_TEST_POSTGRES_URL"
HOW_TO_RUN = (
    "PostgreSQL is not installed: install Debian's postgresql package (the tests start a "
    f"throwaway server on loopback) or set {EXTERNAL_URL_ENV} to a server's SQLAlchemy URL"
)
START_TIMEOUT_S = 60


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, newest PostgreSQL first."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def available() -> bool:
    if os.environ.get(EXTERNAL_URL_ENV):
        return True
    if os.geteuid() == 0 and not _has_user("postgres"):
        return False
    return server_binaries() is not None


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server() -> Iterator[str]:
    """A running server's SQLAlchemy URL (its `postgres` database) until the block ends."""
    external = os.environ.get(EXTERNAL_URL_ENV)
    if external:
        yield external
        return
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError(HOW_TO_RUN)
    home = Path(tempfile.mkdtemp(prefix="anneal-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_owner, *command], check=True, capture_output=True, timeout=START_TIMEOUT_S)

    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off -c max_connections=200"
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "anneal", "--no-sync")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-o", options, "start")
        yield f"postgresql+psycopg://anneal@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped when the block ends."""
    import sqlalchemy as sa

    name = f"anneal_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
