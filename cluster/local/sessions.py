"""Process sessions: how `anneal up` starts its processes and `anneal down` stops exactly them.

Each process tree starts as a session of its own; Ray's workers make their own process
groups but stay in their session. Nothing here finds processes by name, so a user's other
Ray clusters live on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """Starts `command` as a session of its own, its output appended to `log_path`; returns its session id."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return process.pid


def session_members(sid: int) -> list[int]:
    """Live processes of the session `sid` (`up` starts each tree as its own session; Ray's
    workers make their own process groups but stay in it). Zombies do not count."""
    proc = Path("/proc")
    if not proc.is_dir():  # no /proc: fall back to the process group of the leader
        try:
            os.killpg(sid, 0)
        except ProcessLookupError:
            return []
        return [sid]
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(stat.parent.name))
    return members


def group_alive(sid: int) -> bool:
    _reap(sid)
    return bool(session_members(sid))


def stop_group(sid: int, timeout_s: float) -> None:
    """SIGTERM every process of the session, then SIGKILL whatever is left after `timeout_s`."""
    _signal_all(sid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while group_alive(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal_all(sid, signal.SIGKILL)
    _reap(sid)


def _signal_all(sid: int, signum: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    # The group leader may be our own child (tests call up() in-process).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
