"""A trial's checkpoint scratch does not outlive it: a worker SIGKILLed while a checkpoint sits
in its scratch leaves a folder that the next trial to start removes, and a live process's
scratch is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.trial.scratch import remove_dead_scratch, scratch_directory, scratch_root

HOLDS_A_CHECKPOINT = """
import sys, time
from cluster.trial.scratch import scratch_directory
with scratch_directory() as directory:
    (directory / "checkpoint.pt").write_bytes(b"x" * 1024)
    print(directory, flush=True)
    time.sleep(60)
"""


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def test_the_scratch_of_a_killed_worker_is_removed_by_the_next_trial() -> None:
    worker = subprocess.Popen([sys.executable, "-c", HOLDS_A_CHECKPOINT], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    left = Path(worker.stdout.readline().strip())
    assert (left / "checkpoint.pt").is_file()
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert left.exists()  # nothing cleaned up after a SIGKILL

    with scratch_directory() as mine:  # this process's, in use
        assert remove_dead_scratch() == 1
        assert not left.parent.exists() and mine.exists()
    assert [folder.name for folder in scratch_root().iterdir()] == [str(os.getpid())]


def test_a_checkpoint_scratch_is_gone_once_left_and_private_while_used() -> None:
    with scratch_directory() as directory:
        assert directory.parent == scratch_root() / str(os.getpid())
        assert directory.parent.stat().st_mode & 0o077 == 0
    assert not directory.exists()
    assert remove_dead_scratch() == 0
