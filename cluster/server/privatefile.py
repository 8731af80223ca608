"""Files that hold secrets (tokens, their digests, the audit log): written whole and readable
by their owner only, and an existing one that others may read tightened, saying so."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("anneal.auth")

PRIVATE_MODE = 0o600
OTHERS_BITS = 0o077  # group's and others' read, write and execute


def write_private(path: Path, text: str) -> None:
    """Writes the whole file or nothing (a reader sees the old text or the new, never half),
    readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover could have another mode, or be a symlink
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())  # the rename must not land before the text does
    os.replace(partial, path)


def tighten(path: Path, what: str) -> bool:
    """Makes `path` readable by its owner only if others may read it (logging that it did);
    returns whether it changed. A file this user cannot change is left, with a warning."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if not mode & OTHERS_BITS:
        return False
    try:
        os.chmod(path, PRIVATE_MODE)
    except OSError as error:
        log.warning("%s %s is readable by others (mode %o) and cannot be made private: %s", what, path, mode, error)
        return False
    log.warning("%s %s was readable by others (mode %o); it is now readable by its owner only", what, path, mode)
    return True
