"""Where a spec's `dataset.path` may point: regular files under the server's data roots.

A spec can come from a remote caller over gRPC, so the path is untrusted. Containment is
decided on the real path (symlinks followed) before existence is looked at, so that the
answer to a path outside the roots says nothing about what exists there.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from anneal.errors import InvalidSpec

FIELD = "dataset.path"
MAX_DATA_FILE_BYTES = 256 * 1024 * 1024

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_SEPARATORS = re.compile(r"[\\/]")


def _refuse(message: str) -> InvalidSpec:
    return InvalidSpec.field(FIELD, message)


def resolve_data_path(path: str, roots: Sequence[str | Path]) -> Path:
    """The real path of the regular file `path` names under one of `roots`, or InvalidSpec
    naming `dataset.path`. A relative path is looked up under each root in order."""
    real, real_roots = _resolve(path, roots)
    _check_regular_file(_stat(real, path), repr(path), MAX_DATA_FILE_BYTES)
    return real


def resolve_table_files(path: str, roots: Sequence[str | Path], *, folder_allowed: bool) -> list[Path]:
    """The real paths of the files of a table `path` names under one of `roots`: the file
    itself, or with `folder_allowed` every `*.parquet` file in the folder and below it, in
    order, each of them under the roots too (a symlink inside may not lead out). Streamed,
    so no size limit; InvalidSpec naming `dataset.path` otherwise."""
    real, real_roots = _resolve(path, roots)
    info = _stat(real, path)
    if not stat.S_ISDIR(info.st_mode):
        _check_regular_file(info, repr(path), max_bytes=None)
        return [real]
    if not folder_allowed:
        raise _refuse(f"{path!r} is a folder; only a Parquet dataset may be a folder of files")
    files: dict[Path, None] = {}  # in order; two links to one file: its rows once
    for found in sorted(real.rglob("*.parquet")):
        inside = _contained(found, path, real_roots)
        if inside is None:
            raise _refuse(f"a file in {path!r} cannot be read")
        _check_regular_file(_stat(inside, path), f"a file in {path!r}", max_bytes=None)
        files[inside] = None
    if not files:
        raise _refuse(f"the folder {path!r} holds no .parquet files")
    return list(files)


def _resolve(path: str, roots: Sequence[str | Path]) -> tuple[Path, list[Path]]:
    """The real path `path` names under the roots, and the roots' real paths."""
    real_roots = [Path(os.path.realpath(root)) for root in roots if str(root)]
    if not real_roots:
        raise _refuse("no data roots are configured on the server")
    local = _local_path(path)
    if os.path.isabs(local):
        real = _contained(Path(local), path, real_roots)
    else:
        real = _first_under_roots(local, path, [Path(root) for root in roots if str(root)], real_roots)
    if real is None:
        raise _refuse(f"{path!r}: no such file under the data roots")
    return real, real_roots


def _stat(real: Path, given: str) -> os.stat_result:
    try:
        return os.stat(real)
    except OSError:
        raise _refuse(f"{given!r} cannot be read") from None


def _local_path(path: str) -> str:
    """The filesystem path a spec's path stands for: a `file:` URL unwrapped, any other
    scheme refused; then refused outright if it could climb out with `..`."""
    match = _SCHEME.match(path)
    local = _file_url_path(path, match.group(1).lower()) if match else path
    if not local:
        raise _refuse("the path is empty")
    if "\x00" in local:
        raise _refuse("the path contains a NUL byte")
    if ".." in _SEPARATORS.split(local):
        raise _refuse(f"{path!r}: '..' is not allowed in a data path")
    return local


def _file_url_path(url: str, scheme: str) -> str:
    if scheme != "file":
        raise _refuse(f"the {scheme!r} scheme is not allowed; only files under the server's data roots are")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _refuse("not a valid file URL (file:///path/to/file.csv)") from None
    if parts.netloc not in ("", "localhost"):
        raise _refuse(f"file URL host {parts.netloc!r} is not allowed; only local files under the data roots are")
    if parts.query or parts.fragment or not parts.path.startswith("/"):
        raise _refuse(f"{url!r} is not a file URL of an absolute path (file:///path/to/file.csv)")
    return unquote(parts.path)


def _first_under_roots(relative: str, given: str, roots: list[Path], real_roots: list[Path]) -> Path | None:
    for root in roots:
        real = _contained(root / relative, given, real_roots)
        if real is not None:
            return real
    return None


def _contained(candidate: Path, given: str, real_roots: list[Path]) -> Path | None:
    """The candidate's real path when it exists, None when it does not; refused when it
    lies outside every root, whether or not it exists there."""
    real = Path(os.path.realpath(candidate))
    if not any(real.is_relative_to(root) for root in real_roots):
        raise _refuse(f"{given!r} resolves outside the data roots")
    return real if os.path.exists(real) else None


def _check_regular_file(info: os.stat_result, name: str, max_bytes: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(f"{name} is not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise _refuse(f"{name} is larger than {max_bytes // (1024 * 1024)} MiB")


@contextmanager
def open_regular_file(real: Path, *, max_bytes: int | None) -> Iterator[BinaryIO]:
    """A file `resolve_data_path` returned, opened for reading and checked again on the open
    descriptor: the last component must not have become a symlink since (O_NOFOLLOW) nor a
    FIFO that would block the open (O_NONBLOCK), and it must still be a regular file within
    `max_bytes` (None: a streamed table's file, any size). Messages name no path: this one is the server's real path."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise _refuse("the file cannot be opened") from None
    with os.fdopen(fd, "rb") as handle:
        _check_regular_file(os.fstat(fd), "the file", max_bytes)
        # O_NOFOLLOW guards the last component only: a directory above it swapped for a symlink
        # since the check shows here, as a different path behind the descriptor (Linux).
        proc = f"/proc/self/fd/{fd}"
        if os.path.exists(proc) and os.readlink(proc) != str(real):
            raise _refuse("the file moved while it was opened")
        yield handle
