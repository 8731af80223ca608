"""What a principal may name: ids and deployment names it sees, anything else as if absent.

Every call acts for a principal: it sees and changes only what it owns (an admin, all);
what it may not see answers NotFound, as if it did not exist.
"""

from __future__ import annotations

import re

from anneal.errors import NotFound
from anneal.types import Deployment
from cluster.server.principals import Principal
from cluster.store.store import Store

# Ids and names the service makes or accepts; anything else names nothing that exists.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")

DeploymentKey = tuple[str, str]  # (owner, name)


def deployment_key(name: str, principal: Principal) -> DeploymentKey:
    """(owner, name) of the deployment `name` (the caller's own) or `owner/name` names."""
    owner, _, plain = name.rpartition("/")
    owner = owner or principal.name
    if not ID_PATTERN.fullmatch(plain) or not ID_PATTERN.fullmatch(owner) or not principal.sees(owner):
        raise NotFound(f"no deployment {name!r}")
    return owner, plain


def stored_deployment(store: Store, key: DeploymentKey, name: str) -> Deployment:
    """The stored deployment of `key`; NotFound names it as the caller did."""
    owner, plain = key
    try:
        return store.get_deployment(plain, owner)
    except NotFound:
        raise NotFound(f"no deployment {name!r}") from None
