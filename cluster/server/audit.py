"""The audit log: one JSON line per state-changing call (CreateStudy, CancelStudy, Deploy,
Rollback, DeleteDeployment; reads and Predict are not audited), saying who made it, what it
was, which study or deployment it named, how it ended and when.

Each line goes to the `anneal.audit` logger and is appended to the audit file (`audit_file`,
default `$ANNEAL_HOME/audit.log`, mode 0600). The file is opened for each line, in append mode:
state-changing calls are few, and a file that logrotate moved away is simply made again. A
line holds identifiers only (never a token, never a spec's contents), each cut to
`MAX_VALUE_CHARS`, and JSON's escapes keep a caller's newlines from forging a line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import grpc

from anneal.settings import Settings
from cluster.server.privatefile import PRIVATE_MODE, tighten

log = logging.getLogger("anneal.audit")
server_log = logging.getLogger("anneal.server")

AUDIT_FILE = "audit.log"
# Identifiers come from the caller's request: a study id or a name may be any string it sends.
MAX_VALUE_CHARS = 256


def audit_path(settings: Settings) -> Path:
    return Path(settings.audit_file) if settings.audit_file else settings.home / AUDIT_FILE


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class AuditLog:
    """Appends one line per audited call to the audit file and the `anneal.audit` logger."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_mode = False

    def record(self, *, principal: str, rpc: str, code: grpc.StatusCode, peer: str, **target: str) -> None:
        """One line: when, who (principal and address), what (`rpc`), which (`target`: study_id,
        study_name, deployment, model, version; empty ones left out) and the status code.
        Never raises: an audit file that cannot be written is logged, and the call goes on."""
        entry = {
            "time": self._clock().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "principal": principal,
            "rpc": rpc,
            **{key: _cut(value) for key, value in target.items() if value},
            "code": code.name,
            "peer": _cut(peer),
        }
        line = json.dumps(entry)
        log.info("%s", line)
        try:
            self._append(line)
        except OSError as error:
            server_log.error("could not append to the audit log %s: %s; the line was %s", self.path, error, line)

    def _append(self, line: str) -> None:
        with self._lock:
            if not self._checked_mode:  # a file made before (by hand, by another tool) may be open to others
                tighten(self.path, "the audit log")
                self._checked_mode = True
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path, flags, PRIVATE_MODE)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def _cut(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"
