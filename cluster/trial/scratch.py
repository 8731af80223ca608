"""Scratch directories for checkpoints on their way into Tune's storage, which outlive no
process that made them.

A trial writes each checkpoint into a scratch directory, and Tune copies it into the study's
storage before its report returns; the directory is removed then. A worker killed in between
(SIGKILL, an out-of-memory kill, a lost node) never removes it, so each process keeps its
scratch under a folder named by its pid, and every trial, as it starts, removes the folders
of processes that are gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("anneal.trial")


def scratch_root() -> Path:
    """This user's scratch folder on this node (per user: another user's processes cannot be
    told apart from dead ones by a signal)."""
    return Path(tempfile.gettempdir()) / f"anneal-scratch-{os.getuid()}"


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A fresh directory under this process's scratch folder, removed on leaving."""
    own = scratch_root() / str(os.getpid())
    own.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ckpt-", dir=own) as directory:
        yield Path(directory)


def remove_dead_scratch() -> int:
    """Removes the scratch folders of this user's processes that are gone; returns how many."""
    root = scratch_root()
    if not root.is_dir():
        return 0
    removed = 0
    for folder in root.iterdir():
        if folder.name.isdigit() and not _alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if removed:
        log.info("removed the checkpoint scratch of %d processes that are gone", removed)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid: alive, and not ours to judge
        return True
    return True
