"""The PEM files TLS settings name, read for a client's channel and for the server's credentials."""

from __future__ import annotations

from pathlib import Path

from anneal.errors import ConfigurationError


def read_pem(path: str, what: str) -> bytes:
    """A certificate or key file; ConfigurationError naming `what` and the path when unreadable."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read the {what} {path}: {error.strerror}") from None
