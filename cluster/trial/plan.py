"""A trial's layout: one worker, or a data-parallel group."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerPlan:
    """How a trial's workers are laid out, and where a data-parallel trial keeps its Train run."""

    workers: int
    cpu: float  # per worker
    gpu: float  # per worker
    storage_path: str

    @property
    def threads(self) -> int:
        """Torch threads per worker: its whole CPUs, at least one."""
        return max(1, int(self.cpu))
