"""The sizes and counts a server accepts: of one spec, of a Deploy, of open WatchStudy streams."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

from anneal.errors import FieldError, InvalidArgument, InvalidSpec, ResourceExhausted
from anneal.settings import Settings
from anneal.spec import DeployPolicy, StudySpec


def check_spec_size(size_bytes: int, settings: Settings) -> None:
    if size_bytes > settings.max_spec_bytes:
        raise InvalidSpec.field("spec", f"is {size_bytes} bytes encoded; at most {settings.max_spec_bytes}")


def check_spec_limits(spec: StudySpec, settings: Settings) -> None:
    """The sizes a server accepts of one study, each named by its field."""
    errors = []
    space = spec.search_space
    if len(space) > settings.max_search_space_params:
        errors.append(
            FieldError("search_space", f"tunes {len(space)} parameters; at most {settings.max_search_space_params}")
        )
    for name, domain in space.items():
        if domain.categorical is not None and len(domain.categorical) > settings.max_categorical_choices:
            message = f"has {len(domain.categorical)} choices; at most {settings.max_categorical_choices}"
            errors.append(FieldError(f"search_space.{name}.categorical", message))
    if spec.budget.max_trials > settings.max_trials:
        errors.append(FieldError("budget.max_trials", f"is {spec.budget.max_trials}; at most {settings.max_trials}"))
    for name in ("replicas", "max_replicas"):
        value = getattr(spec.deploy, name)
        if value is not None and value > settings.max_replicas:
            errors.append(FieldError(f"deploy.{name}", f"is {value}; at most {settings.max_replicas}"))
    if errors:
        raise InvalidSpec(errors)


def check_capacity(spec: StudySpec, capacity: dict[str, float]) -> None:
    """A trial must fit in the cluster: nothing would ever place more than it holds, and a
    data-parallel trial's worker group would wait for it forever."""
    needs = spec.resources.trial_total()
    reserved = spec.reserved_cpus()
    short = [
        name for name, need in needs.items() if need + (reserved if name == "CPU" else 0) > capacity.get(name, 0.0)
    ]
    if short:
        r = spec.resources
        asks = (
            f"{r.workers} worker(s) × {r.cpu:g} CPU and {r.gpu:g} GPU = {needs['CPU']:g} CPU and {needs['GPU']:g} GPU"
        )
        if reserved:
            asks += f", beside the {reserved:g} CPU its table's read tasks keep"
        holds = f"{capacity.get('CPU', 0.0):g} CPU and {capacity.get('GPU', 0.0):g} GPU"
        raise InvalidSpec.field("resources", f"a trial needs {asks}; the cluster holds {holds} in all")


def check_deploy_policy(policy: DeployPolicy, settings: Settings) -> None:
    """The replicas a server lets one deployment have, fixed or autoscaled (Deploy's request)."""
    for name in ("replicas", "max_replicas"):
        value = getattr(policy, name)
        if value is not None and value > settings.max_replicas:
            raise InvalidArgument.field(name, f"is {value}; at most {settings.max_replicas}")


class StreamSlots:
    """Open streams per principal, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def total(self) -> int:
        """Streams open now, of every principal."""
        with self._lock:
            return sum(self._open.values())

    @contextlib.contextmanager
    def hold(self, owner: str) -> Iterator[None]:
        with self._lock:
            if self._open[owner] >= self.limit:
                raise ResourceExhausted(f"{owner} has {self.limit} WatchStudy streams open, the most allowed")
            self._open[owner] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[owner] -= 1
