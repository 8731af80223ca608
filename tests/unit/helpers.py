"""Small helpers shared by the unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits.yaml"


def typed(value: Any) -> Any:
    """Scalars paired with their type, so that 1, 1.0, True and "1" compare different."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def principal(name: str, *, admin: bool = False, **quotas: int) -> Any:
    """A principal with a token of its own name (tests only; real tokens are random)."""
    from cluster.server.principals import Principal, hash_token

    return Principal(name=name, token_sha256=hash_token(f"token-of-{name}"), admin=admin, **quotas)
