"""A study driver started by a Ray job must not outlive the job's supervisor process.

Ray's job supervisor normally kills its driver's process group when it dies, and the
driver's own checks notice a vanished supervisor while it waits or trains. A standby driver
caught starting up when the cluster stops has neither: `ray.init` retries a dead GCS for
about 14 minutes, with torch imported and a trial writer beside it. This module is light on
purpose: the watch starts before a driver's slow imports.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("anneal.supervision")

POLL_S = 0.5
ORPHANED_EXIT_CODE = 1


@contextmanager
def exit_if_orphaned(supervisor: int, poll_s: float = POLL_S) -> Iterator[None]:
    """Within the block, ends this process at once when its parent is no longer `supervisor`.
    The trial writer, a child of this process, exits by itself when it sees its driver gone."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if os.getppid() != supervisor:
                log.warning("the Ray job that started this driver is gone; the driver exits")
                logging.shutdown()
                os._exit(ORPHANED_EXIT_CODE)  # the main thread may be stuck in a C call (ray.init)

    watcher = threading.Thread(target=watch, name="anneal-orphan-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
