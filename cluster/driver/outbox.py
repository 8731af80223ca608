"""What the driver has handed its trial writer and the writer has not yet confirmed.

The writer confirms a record once the store's transaction that holds it has committed
(MLflow is written before it). A writer process can die at any moment (the OOM killer picks
a large, idle-looking process first), taking what it had received with it; the driver keeps
every record until it is confirmed, so a replacement writer can be sent the rest again.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar


class Numbered(Protocol):
    sequence: int


RecordT = TypeVar("RecordT", bound=Numbered)


class Outbox(Generic[RecordT]):
    """Records numbered in the order they were put, kept until confirmed."""

    def __init__(self) -> None:
        self._last = 0
        self._waiting: dict[int, RecordT] = {}  # sequence -> record, in sequence order

    def add(self, record: RecordT) -> RecordT:
        """Numbers `record` (its `sequence`, from 1) and keeps it; returns it."""
        self._last += 1
        record.sequence = self._last
        self._waiting[self._last] = record
        return record

    def confirm(self, through: int) -> None:
        """Forgets every record up to and including sequence `through`."""
        for sequence in list(self._waiting):
            if sequence > through:
                break
            del self._waiting[sequence]

    def unconfirmed(self) -> list[RecordT]:
        """The records not yet confirmed, oldest first: what a replacement writer is sent."""
        return list(self._waiting.values())
