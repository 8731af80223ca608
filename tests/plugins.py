"""Trainer packages made on the fly: a distribution's metadata with `anneal.trainers` entry
points, and its modules, written into a folder that goes on `sys.path`. This is what `pip
install` leaves in site-packages, so `importlib.metadata` finds them as installed."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from trainers.registry import ENTRY_POINT_GROUP, catalog

BROKEN_MODULE = "raise ImportError('this trainer needs the package no_such_dependency')\n"


def write_distribution(site: Path, name: str, entries: Mapping[str, str], modules: Mapping[str, str]) -> None:
    """Installs distribution `name` 0.1 into `site`: entry point name -> `module:attribute`,
    and module name -> its source."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{entry} = {target}" for entry, target in entries.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


def write_broken_package(site: Path) -> None:
    """A trainer package whose module fails to import, as one missing a dependency does."""
    module = "anneal_broken_trainer"
    write_distribution(site, module, {"broken": f"{module}:INFO"}, {module: BROKEN_MODULE})


@contextmanager
def installed(site: Path) -> Iterator[None]:
    """`site` importable, and the trainer catalog read again with it (and again after)."""
    sys.path.insert(0, str(site))
    catalog.cache_clear()
    try:
        yield
    finally:
        sys.path.remove(str(site))
        for name in [m for m, module in sys.modules.items() if str(site) in str(getattr(module, "__file__", ""))]:
            del sys.modules[name]
        catalog.cache_clear()
