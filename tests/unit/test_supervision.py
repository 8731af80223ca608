"""A standby driver whose Ray job process dies while it starts up exits at once, even with
its main thread stuck in a call that does not return (as `ray.init` on a dead GCS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.driver.supervision import ORPHANED_EXIT_CODE, exit_if_orphaned

REPO = Path(__file__).resolve().parents[2]

# The driver: watched, its main thread blocked in a C call that never returns by itself.
DRIVER = """
import os, sys, threading
from cluster.driver.supervision import exit_if_orphaned
with exit_if_orphaned(os.getppid(), poll_s=0.05):
    print(os.getpid(), flush=True)
    lock = threading.Lock(); lock.acquire(); lock.acquire()
"""

# The job's process: starts the driver, passes its pid on, and dies.
SUPERVISOR = f"""
import subprocess, sys
driver = subprocess.Popen(
    [sys.executable, "-c", {DRIVER!r}], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
)
print(driver.stdout.readline().strip(), flush=True)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.timeout(30)
def test_a_driver_whose_supervisor_dies_exits_within_a_poll() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    supervisor = subprocess.run([sys.executable, "-c", SUPERVISOR], env=env, capture_output=True, text=True, check=True)
    driver = int(supervisor.stdout.strip())
    died = time.monotonic()
    while not _gone(driver):
        assert time.monotonic() - died < 10, "the orphaned driver is still running"
        time.sleep(0.05)


def test_a_driver_whose_supervisor_lives_runs_the_block_to_its_end() -> None:
    ran = []
    with exit_if_orphaned(os.getppid(), poll_s=0.01):
        time.sleep(0.1)
        ran.append(True)
    assert ran == [True]
    assert ORPHANED_EXIT_CODE != 0
