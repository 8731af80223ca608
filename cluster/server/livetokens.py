"""The principals a running server accepts, following its tokens file: a token added, replaced
(`anneal token add`) or revoked (`anneal token revoke`) counts from the next call on, without
a restart.

The file is looked at from the calls themselves, at most once per `CHECK_EVERY_S`: a stat of
its inode, size and modification time, and a new read only when one of them changed. A file
that cannot be read or parsed, or is gone, leaves the principals last read in place (and the
log says why): a half-edited file must neither lock every caller out nor let one in.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from anneal.errors import AnnealError
from anneal.settings import Settings
from cluster.server.principals import Principal, TokenTable, configured_principals, tokens_path

log = logging.getLogger("anneal.auth")

CHECK_EVERY_S = 1.0
FileStamp = tuple[int, int, int]  # inode, size, modification time (ns)


def file_stamp(path: Path) -> FileStamp | None:
    """What tells one version of the file from the next; None for no file. A replaced file
    (the CLI writes a new one and renames it over the old) has a new inode."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


class LiveTokenTable:
    """A `TokenTable` of the settings' principals, read again whenever the tokens file changes."""

    def __init__(
        self,
        settings: Settings,
        *,
        check_every_s: float = CHECK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Reads the settings' principals (`configured_principals`); a file that cannot be read
        or parsed fails here, at start-up, as a `ConfigurationError`."""
        self.settings = settings
        self.path = tokens_path(settings)
        self.check_every_s = check_every_s
        self._clock = clock
        self._stamp = file_stamp(self.path)  # taken before the file is read: a change after it is seen
        self._table = TokenTable(configured_principals(settings))
        self._next_check = clock() + check_every_s
        self._checking = threading.Lock()

    @property
    def principals(self) -> list[Principal]:
        return self._table.principals

    def authenticate(self, token: str | None) -> Principal | None:
        self.check()
        return self._table.authenticate(token)

    def check(self) -> None:
        """Reads the tokens file again if it is time to look and it changed. One caller looks;
        the others go on with the table they have rather than wait."""
        if self._clock() < self._next_check or not self._checking.acquire(blocking=False):
            return
        try:
            self._next_check = self._clock() + self.check_every_s
            stamp = file_stamp(self.path)
            if stamp != self._stamp:
                self._reload(stamp)
        finally:
            self._checking.release()

    def _reload(self, stamp: FileStamp | None) -> None:
        self._stamp = stamp  # a file that fails is tried again only once it changes again
        if stamp is None:
            log.warning("the tokens file %s is gone; kept the %d principals last read", self.path, len(self.principals))
            return
        try:
            table = TokenTable(configured_principals(self.settings))
        except Exception as error:  # whatever is wrong with the file, the last table stays
            reason = str(error) if isinstance(error, AnnealError) else f"{self.path}: {error!r}"
            log.warning("kept the %d principals last read: %s", len(self.principals), reason)
            return
        log.info("read the tokens file %s again: %s", self.path, _changes(self.principals, table.principals))
        if not table.principals:
            log.warning("no principal is left: every call is refused until one is added")
        self._table = table


def _changes(before: list[Principal], after: list[Principal]) -> str:
    """Which principals were added, removed or changed (a new token, role or quota), by name."""
    old, new = {p.name: p for p in before}, {p.name: p for p in after}
    parts = [
        f"{what} {', '.join(names)}"
        for what, names in (
            ("added", sorted(new.keys() - old.keys())),
            ("removed", sorted(old.keys() - new.keys())),
            ("changed", sorted(n for n in old.keys() & new.keys() if old[n] != new[n])),
        )
        if names
    ]
    return "; ".join(parts) or "no principal changed"
