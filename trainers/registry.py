"""The trainer registry, and the checks of a spec against it.

Built-in trainers are listed in `trainers.builtins`; packages add more through the
`anneal.trainers` entry-point group, whose objects are `TrainerInfo`s. Over gRPC
only registered names are accepted: the API never imports a module a caller
names. `allow_import_paths=True` (used by `anneal run` on the cluster) also
accepts `package.module:function` returning a `TrainerInfo`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points

from anneal.errors import FieldError, InvalidSpec
from anneal.spec import StudySpec
from trainers.builtins import BUILT_INS
from trainers.contract import TrainerInfo, import_target
from trainers.dataroots import resolve_data_path

ENTRY_POINT_GROUP = "anneal.trainers"


@functools.lru_cache(maxsize=1)
def registered() -> Mapping[str, TrainerInfo]:
    """Built-ins plus the `anneal.trainers` entry points, by name."""
    found = dict(BUILT_INS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        info = entry.load()
        if isinstance(info, TrainerInfo):
            found[info.name] = info
    return found


def resolve(name: str, *, allow_import_paths: bool = False) -> TrainerInfo:
    """The trainer a spec names, or InvalidSpec naming the `trainer` field."""
    known = registered()
    if name in known:
        return known[name]
    if allow_import_paths and ":" in name:
        try:
            info = import_target(name)()
        except Exception as error:  # any failure to import is the user's field error
            raise InvalidSpec.field("trainer", f"cannot load {name!r}: {error}") from None
        if not isinstance(info, TrainerInfo):
            raise InvalidSpec.field("trainer", f"{name!r} did not return a TrainerInfo")
        return info
    raise InvalidSpec.field("trainer", f"unknown trainer {name!r}; registered: {', '.join(sorted(known))}")


def check_spec(spec: StudySpec, *, allow_import_paths: bool = False, data_roots: Sequence[str] = ()) -> TrainerInfo:
    """Checks what only the registry, and the server's filesystem, know; returns the
    trainer's entry or raises InvalidSpec. A dataset path must lie under `data_roots`."""
    info = resolve(spec.trainer, allow_import_paths=allow_import_paths)
    errors = dataset_errors(spec, info, data_roots)
    if spec.objective.metric not in info.metrics:
        errors.append(
            FieldError(
                "objective.metric",
                f"{info.name} does not report {spec.objective.metric!r}; it reports {', '.join(sorted(info.metrics))}",
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
