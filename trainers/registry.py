"""The trainer registry, and the checks of a spec against it.

Built-in trainers are listed in `trainers.builtins`; packages add more through the
`anneal.trainers` entry-point group, whose objects are `TrainerInfo`s. Over gRPC
only registered names are accepted: the API never imports a module a caller
names. `allow_import_paths=True` (used by `anneal run` on the cluster) also
accepts `package.module:function` returning a `TrainerInfo`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from anneal.errors import FieldError, InvalidSpec
from anneal.spec import Objective, StudySpec
from anneal.types import TrainerDescription, TrainerParameter
from trainers.builtins import BUILT_INS
from trainers.contract import TrainerInfo, import_target
from trainers.dataroots import resolve_data_path
from trainers.tableschema import check_table

ENTRY_POINT_GROUP = "anneal.trainers"
BUILT_IN = "built-in"
# A trainer's name goes into specs, logs and listings.
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

log = logging.getLogger("anneal.trainers")


@dataclass(frozen=True)
class Unavailable:
    """A trainer package's entry point that could not be registered, and why."""

    name: str  # the entry point's name
    source: str
    error: str


@dataclass(frozen=True)
class Catalog:
    """Every trainer this process can run, by name, and the packages that failed to load."""

    trainers: Mapping[str, TrainerInfo]
    sources: Mapping[str, str]  # name -> "built-in", or the distribution and entry point
    unavailable: tuple[Unavailable, ...]


@functools.lru_cache(maxsize=1)
def catalog() -> Catalog:
    """Built-ins plus the `anneal.trainers` entry points. A package that fails to import, names
    something other than a TrainerInfo, or takes a name already registered is logged and kept
    as unavailable: one broken package never hides the others or stops the process."""
    found: dict[str, TrainerInfo] = dict(BUILT_INS)
    sources = dict.fromkeys(BUILT_INS, BUILT_IN)
    unavailable: list[Unavailable] = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        source = _source_of(entry)
        try:
            info = _load_entry(entry)
            if info.name in found:
                raise TrainerLoadError(f"the name {info.name!r} is already registered by {sources[info.name]}")
        except Exception as error:  # whatever a package's import raises
            message = f"{type(error).__name__}: {error}" if not isinstance(error, TrainerLoadError) else str(error)
            log.warning("trainer package %s (%s) is unavailable: %s", entry.name, source, message)
            unavailable.append(Unavailable(entry.name, source, message))
            continue
        found[info.name] = info
        sources[info.name] = source
    return Catalog(found, sources, tuple(unavailable))


class TrainerLoadError(Exception):
    """An entry point that loaded but cannot be registered."""


def _load_entry(entry: EntryPoint) -> TrainerInfo:
    try:
        info = entry.load()
    except SystemExit as exit_:  # a package that exits on import must not end the server
        raise TrainerLoadError(f"importing {entry.value} called exit({exit_.code})") from None
    if not isinstance(info, TrainerInfo):
        raise TrainerLoadError(f"{entry.value} is a {type(info).__name__}, not a trainers.TrainerInfo")
    if not NAME.fullmatch(info.name):
        raise TrainerLoadError(f"its name {info.name!r} must be lower-case letters, digits, _ and -")
    return info


def _source_of(entry: EntryPoint) -> str:
    dist = entry.dist
    package = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"{package}, entry point {entry.name} = {entry.value}"


def registered() -> Mapping[str, TrainerInfo]:
    """The trainers this process can run, by name."""
    return catalog().trainers


def describe() -> list[TrainerDescription]:
    """Every trainer of the catalog as ListTrainers answers it, by name; then the unavailable ones."""
    known = catalog()
    listed = [_description(info, known.sources[name]) for name, info in sorted(known.trainers.items())]
    return listed + [
        TrainerDescription(name=u.name, available=False, error=u.error, source=u.source) for u in known.unavailable
    ]


def _description(info: TrainerInfo, source: str) -> TrainerDescription:
    return TrainerDescription(
        name=info.name,
        description=info.description,
        task=info.task,
        input_shape=info.input_shape,
        parameters=[
            TrainerParameter(
                name=name,
                default=param.default if isinstance(param.default, bool | int | float | str) else None,
                description=param.description,
            )
            for name, param in info.params.items()
        ],
        metrics=sorted(info.metrics),
        datasets=sorted(info.datasets),
        epochs_parameter=info.epochs_param or "",
        source=source,
    )


def resolve(name: str, *, allow_import_paths: bool = False) -> TrainerInfo:
    """The trainer a spec names, or InvalidSpec naming the `trainer` field."""
    known = registered()
    if name in known:
        return known[name]
    broken = next((u for u in catalog().unavailable if u.name == name), None)
    if broken is not None:
        raise InvalidSpec.field("trainer", f"trainer {name!r} is unavailable on the server: {broken.error}")
    if allow_import_paths and ":" in name:
        try:
            info = import_target(name)()
        except Exception as error:  # any failure to import is the user's field error
            raise InvalidSpec.field("trainer", f"cannot load {name!r}: {error}") from None
        if not isinstance(info, TrainerInfo):
            raise InvalidSpec.field("trainer", f"{name!r} did not return a TrainerInfo")
        return info
    raise InvalidSpec.field("trainer", f"unknown trainer {name!r}; registered: {', '.join(sorted(known))}")


def _objective_fields(spec: StudySpec) -> list[tuple[str, Objective]]:
    """Each objective with the field that names its metric."""
    if spec.objectives:
        return [(f"objectives.{index}.metric", goal) for index, goal in enumerate(spec.objectives)]
    return [("objective.metric", spec.first_goal)]


def check_spec(spec: StudySpec, *, allow_import_paths: bool = False, data_roots: Sequence[str] = ()) -> TrainerInfo:
    """Checks what only the registry, and the server's filesystem, know; returns the
    trainer's entry or raises InvalidSpec. A dataset path must lie under `data_roots`."""
    info = resolve(spec.trainer, allow_import_paths=allow_import_paths)
    errors = dataset_errors(spec, info, data_roots)
    for where, goal in _objective_fields(spec):
        if goal.metric not in info.metrics:
            errors.append(
                FieldError(
                    where,
                    f"{info.name} does not report {goal.metric!r}; it reports {', '.join(sorted(info.metrics))}",
                )
            )
    if info.params:
        for section, names in (("params", spec.params), ("search_space", spec.search_space)):
            for name in names:
                if name not in info.params:
                    errors.append(FieldError(f"{section}.{name}", f"not a parameter of {info.name}"))
    if errors:
        raise InvalidSpec(errors)
    return info


def dataset_errors(spec: StudySpec, info: TrainerInfo, data_roots: Sequence[str]) -> list[FieldError]:
    """With a path, the file must be one the data roots allow (the name is then only a
    label); without, the name must be a dataset the trainer knows."""
    dataset = spec.dataset
    if dataset.format is not None:
        try:
            check_table(dataset, info.task, info.input_shape, data_roots)
        except InvalidSpec as error:
            return list(error.errors)
        return []
    if dataset.path:
        try:
            resolve_data_path(dataset.path, data_roots)
        except InvalidSpec as error:
            return list(error.errors)
        return []
    if dataset.name not in info.datasets:
        known = ", ".join(sorted(info.datasets))
        return [FieldError("dataset.name", f"unknown dataset {dataset.name!r}; {info.name} knows {known}")]
    return []
