"""Table datasets (Parquet or CSV under the data roots), prepared once per study and streamed.

`prepare_table` reads the user's table once, in batches, and writes three Parquet files under
the study's storage, one per split: each row's features as one float32 array column `x` and
its label `y`, in row groups of a fixed number of rows. A row's split is a seeded hash of its
position in the table (files in order, rows in order), so it is the same on every run and no
test row ever reaches a trial. The same pass gathers what a model needs without reading the
rows again: the training rows' feature means and deviations, the classes or the target's
scale. A manifest written last says the files are whole.

Trials read only their shard of the prepared files, row group by row group (`table_batches`),
through the runtime's group reader (Ray Data on a cluster, pyarrow here).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anneal.errors import InvalidSpec
from anneal.spec import DatasetSpec
from anneal.types import Task
from trainers.contract import DataInfo, DataShape
from trainers.dataroots import open_regular_file
from trainers.tableschema import TableColumns

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

log = logging.getLogger("anneal.data")

MANIFEST = "manifest.json"
# How prepared files are laid out; another layout's files are prepared again.
LAYOUT = "x: float32 little-endian bytes, y: label; v1"
SPLITS = ("train", "val", "test")
# A prepared row group: the unit a worker reads and shuffles within; about this many bytes.
GROUP_BYTES = 16 * 1024 * 1024
MAX_GROUP_ROWS = 131_072
MIN_GROUP_ROWS = 256
MAX_CLASSES = 1000  # a class label sizes the model's output layer
# What the driver reads of the user's table at once: rows, and about this many bytes of features.
READ_BATCH_ROWS = 65_536
READ_BATCH_BYTES = 64 * 1024 * 1024
PROGRESS_S = 10.0
FIELD = "dataset"

# A slice of one row group: (group, first row, row after the last).
Piece = tuple[int, int, int]
# Reads pieces of one prepared split: (file, pieces) -> each piece's (x, y), in any order.
GroupReader = Callable[[str, Sequence[Piece]], Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class PreparedSplit:
    path: str  # the split's Parquet file
    group_rows: tuple[int, ...]  # rows of each row group, in order

    @property
    def rows(self) -> int:
        return sum(self.group_rows)


@dataclass(frozen=True)
class PreparedTable:
    """A study's table, split and written once; what trials, scoring and serving read."""

    directory: str
    source: str  # what it was prepared from: files, their sizes and times, columns, split
    train: PreparedSplit
    val: PreparedSplit
    test: PreparedSplit
    info: DataInfo

    def split(self, name: str) -> PreparedSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_json(self) -> str:
        info = self.info
        data: dict[str, Any] = {
            "source": self.source,
            "splits": {
                name: {"file": os.path.basename(self.split(name).path), "group_rows": list(self.split(name).group_rows)}
                for name in SPLITS
            },
            "shape": asdict(info.shape),
            "feature_mean": info.feature_mean.tolist(),
            "feature_std": info.feature_std.tolist(),
            "target_mean": None if info.target_mean is None else info.target_mean.tolist(),
            "target_std": None if info.target_std is None else info.target_std.tolist(),
        }
        return json.dumps(data)

    @classmethod
    def from_json(cls, directory: str, text: str) -> PreparedTable:
        data = json.loads(text)
        splits = {
            name: PreparedSplit(os.path.join(directory, value["file"]), tuple(value["group_rows"]))
            for name, value in data["splits"].items()
        }

        def vector(key: str) -> np.ndarray | None:
            return None if data[key] is None else np.asarray(data[key], dtype=np.float32)

        info = DataInfo(
            shape=DataShape(**data["shape"]),
            train_rows=splits["train"].rows,
            val_rows=splits["val"].rows,
            feature_mean=np.asarray(data["feature_mean"], dtype=np.float32),
            feature_std=np.asarray(data["feature_std"], dtype=np.float32),
            target_mean=vector("target_mean"),
            target_std=vector("target_std"),
        )
        return cls(directory, data["source"], splits["train"], splits["val"], splits["test"], info)


def source_of(dataset: DatasetSpec, columns: TableColumns) -> str:
    """What a prepared table was made from: a change to any of it prepares the table again."""
    files = []
    for path in columns.files:
        info = os.stat(path)
        files.append([str(path), info.st_size, info.st_mtime_ns])
    split = [dataset.validation_fraction, dataset.test_fraction, dataset.split_seed]
    features = list(columns.features)
    return json.dumps({"layout": LAYOUT, "files": files, "label": columns.label, "features": features, "split": split})


def load_prepared(directory: str) -> PreparedTable | None:
    """The table prepared in `directory`, when its manifest says it is whole and of this layout."""
    try:
        text = Path(directory, MANIFEST).read_text()
    except FileNotFoundError:
        return None
    prepared = PreparedTable.from_json(directory, text)
    return prepared if json.loads(prepared.source).get("layout") == LAYOUT else None


def prepare_table(dataset: DatasetSpec, columns: TableColumns, task: Task, directory: str) -> PreparedTable:
    """The table split and written under `directory`, or the one a study prepared there before:
    a study keeps the rows it prepared to its end (a resumed driver, its final scoring), even
    when the files change meanwhile; splitting them again would move rows its trials trained
    on into its test rows."""
    source = source_of(dataset, columns)
    found = load_prepared(directory)
    if found is not None:
        if found.source != source:
            log.warning("the table's files changed since the study prepared it; the study keeps its prepared rows")
        return found
    os.makedirs(directory, exist_ok=True)
    Path(directory, MANIFEST).unlink(missing_ok=True)
    group_rows = _group_rows(columns)
    writers = {
        name: _SplitWriter(os.path.join(directory, f"{name}.parquet"), columns.width, task, group_rows)
        for name in SPLITS
    }
    features, targets = _Moments(columns.width), _Moments(1)
    classes = 0
    position = 0
    started = last_log = time.monotonic()
    try:
        for x, y in read_table(columns, task):
            which = split_of(dataset, position, len(y))
            position += len(y)
            train = which == 0
            features.add(x[train])
            if task is Task.CLASSIFICATION:
                classes = max(classes, int(y.max()) + 1 if len(y) else 0)
            else:
                targets.add(y[train].reshape(-1, 1))
            for index, name in enumerate(SPLITS):
                rows = which == index
                writers[name].add(x[rows], y[rows])
            if time.monotonic() - last_log > PROGRESS_S:
                last_log = time.monotonic()
                log.info("preparing the table: %s rows read in %.0f s", f"{position:,}", last_log - started)
    finally:
        groups = {name: writer.close() for name, writer in writers.items()}
    splits = {name: PreparedSplit(writers[name].path, tuple(groups[name])) for name in SPLITS}
    _check_split_sizes(dataset, splits, task, classes)
    outputs = classes if task is Task.CLASSIFICATION else 1
    info = DataInfo(
        shape=DataShape(n_features=columns.width, n_outputs=outputs),
        train_rows=splits["train"].rows,
        val_rows=splits["val"].rows,
        feature_mean=features.mean(),
        feature_std=features.std(),
        target_mean=None if task is Task.CLASSIFICATION else targets.mean(),
        target_std=None if task is Task.CLASSIFICATION else targets.std(),
    )
    prepared = PreparedTable(directory, source, splits["train"], splits["val"], splits["test"], info)
    _write_atomically(Path(directory, MANIFEST), prepared.to_json())
    counts = ", ".join(f"{n} {splits[n].rows:,}" for n in SPLITS)
    log.info("prepared the table in %.1f s: %s rows (%s)", time.monotonic() - started, f"{position:,}", counts)
    return prepared


def split_of(dataset: DatasetSpec, first: int, count: int) -> np.ndarray:
    """0 (train), 1 (validation) or 2 (test) for rows `first`..`first + count - 1` of the table:
    a seeded hash of the row's position, uniform in [0, 1), against the fractions."""
    u = _uniform(dataset.split_seed, np.arange(first, first + count, dtype=np.uint64))
    which = np.zeros(count, dtype=np.int8)
    which[u < dataset.test_fraction + dataset.validation_fraction] = 1
    which[u < dataset.test_fraction] = 2
    return which


def _uniform(seed: int, positions: np.ndarray) -> np.ndarray:
    """SplitMix64 of each position, offset by the seed, as a float in [0, 1)."""
    with np.errstate(over="ignore"):
        z = positions + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _group_rows(columns: TableColumns) -> int:
    """Rows per prepared row group: about GROUP_BYTES each, and about 64 groups for a table of
    fewer rows, so that a trial's workers each get several."""
    by_bytes = max(1, GROUP_BYTES // (4 * columns.width + 8))  # wide rows: fewer, never bigger groups
    rows = _estimated_rows(columns)
    by_count = max(MIN_GROUP_ROWS, math.ceil(rows / 64)) if rows else MAX_GROUP_ROWS
    return min(MAX_GROUP_ROWS, by_bytes, by_count)


def _read_batch_rows(columns: TableColumns) -> int:
    return max(1, min(READ_BATCH_ROWS, READ_BATCH_BYTES // (4 * columns.width)))


def _estimated_rows(columns: TableColumns) -> int:
    import pyarrow.parquet as pq

    if columns.format != "parquet":
        return 0
    total = 0
    for path in columns.files:
        with open_regular_file(path, max_bytes=None) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


class _Moments:
    """Running mean and sample deviation of each column (Chan et al.'s pairwise update)."""

    def __init__(self, width: int) -> None:
        self.count = 0
        self._mean = np.zeros(width)
        self._m2 = np.zeros(width)

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        # A batch's own sums in float32 through BLAS (fast, and exact enough within one batch);
        # batches are combined in float64.
        ones = np.ones(len(values), dtype=np.float32)
        count = len(values)
        mean = (ones @ values).astype(np.float64) / count
        centred = values - mean.astype(np.float32)
        m2 = (ones @ (centred * centred)).astype(np.float64)
        total = self.count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * count / total
        self._m2 = self._m2 + m2 + delta**2 * self.count * count / total
        self.count = total

    def mean(self) -> np.ndarray:
        return self._mean.astype(np.float32)

    def std(self) -> np.ndarray:
        return np.sqrt(self._m2 / max(1, self.count - 1)).astype(np.float32)


class _SplitWriter:
    """One split's Parquet file, written a row group of `group_rows` rows at a time."""

    def __init__(self, path: str, width: int, task: Task, group_rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        self.width = width
        self.group_rows = group_rows
        label = pa.int64() if task is Task.CLASSIFICATION else pa.float32()
        # Each row's features as one fixed-size run of little-endian float32 bytes: Parquet reads
        # it back as a copy, several times faster than a list column, whose every value carries
        # a repetition level.
        self.schema = pa.schema([pa.field("x", pa.binary(4 * width)), pa.field("y", label)])
        # Read back at full speed: no compression, no dictionary (features are rarely repeated).
        self._writer = pq.ParquetWriter(
            path, self.schema, compression="none", use_dictionary=False, write_statistics=False
        )
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._held = 0
        self.groups: list[int] = []

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x.append(x)
        self._y.append(y)
        self._held += len(y)
        while self._held >= self.group_rows:
            self._flush(self.group_rows)

    def close(self) -> list[int]:
        if self._held:
            self._flush(self._held)
        self._writer.close()
        return self.groups

    def _flush(self, rows: int) -> None:
        import pyarrow as pa

        x, y = np.concatenate(self._x), np.concatenate(self._y)
        self._x, self._y = [x[rows:]], [y[rows:]]
        self._held -= rows
        features = pa.py_buffer(np.ascontiguousarray(x[:rows], dtype="<f4"))
        packed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * self.width), rows, [None, features])
        table = pa.table({"x": packed, "y": y[:rows]}, schema=self.schema)
        self._writer.write_table(table, row_group_size=rows)
        self.groups.append(rows)


def _check_split_sizes(dataset: DatasetSpec, splits: dict[str, PreparedSplit], task: Task, classes: int) -> None:
    needed = [("train", True), ("val", True), ("test", dataset.test_fraction > 0)]
    for name, wanted in needed:
        if wanted and not splits[name].rows:
            raise InvalidSpec.field(FIELD, f"the table has too few rows to hold out {name} rows")
    if task is Task.CLASSIFICATION and classes < 2:
        raise InvalidSpec.field("dataset.label", "the label column holds a single class; classification needs two")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


# ------------------------------------------------------------------ reading the user's table


def read_table(columns: TableColumns, task: Task) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The table's rows in order, in batches: float32 features (rows, width), and int64 class
    labels or float32 targets; InvalidSpec naming the field at the first bad value."""
    first: dict[str, Any] | None = None
    for path in columns.files:
        with open_regular_file(path, max_bytes=None) as handle:
            for batch in _batches(handle, columns, task):
                types = {name: batch.schema.field(name).type for name in (*columns.features, columns.label)}
                first = first or types
                if types != first:  # the door checked the first file's columns; the others must match
                    differ = next(name for name in types if types[name] != first[name])
                    message = f"the table's files differ: column {differ!r} is {types[differ]} in {path.name}"
                    raise InvalidSpec.field("dataset.path", f"{message}, {first[differ]} in the first file")
                yield _features_of(batch, columns), _labels_of(batch.column(columns.label), task)


def _batches(handle: Any, columns: TableColumns, task: Task) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    wanted = [*columns.features, columns.label]
    try:
        if columns.format == "parquet":
            # pre_buffer off: on, pyarrow keeps every row group it has read in memory.
            rows = _read_batch_rows(columns)
            reader: Any = pq.ParquetFile(handle, pre_buffer=False).iter_batches(rows, columns=wanted)
        else:
            types = {name: pa.float32() for name in columns.features}
            convert = pa_csv.ConvertOptions(include_columns=wanted, column_types=types)
            reader = pa_csv.open_csv(
                handle, read_options=pa_csv.ReadOptions(block_size=8 << 20), convert_options=convert
            )
        yield from reader
    except pa.ArrowInvalid as error:
        reason = "a value is not a number" if "conversion" in str(error).lower() else str(error).split("\n")[0][:200]
        raise InvalidSpec.field("dataset.path", f"the {columns.format} table cannot be read: {reason}") from None


def _features_of(batch: pa.RecordBatch, columns: TableColumns) -> np.ndarray:
    if columns.array_column:
        column = batch.column(columns.features[0])
        storage = getattr(column, "storage", column)  # a fixed-shape tensor is its fixed-size list
        _no_nulls(column, columns.features[0])
        values = storage.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        x = values.reshape(len(column), columns.width)
    else:
        parts = []
        for name in columns.features:
            column = batch.column(name)
            _no_nulls(column, name)
            parts.append(column.to_numpy(zero_copy_only=False).astype(np.float32, copy=False))
        x = np.stack(parts, axis=1)
    if not np.isfinite(x).all():
        raise InvalidSpec.field("dataset.features", "a feature is not finite (nan, inf, or too large for float32)")
    return x


def _labels_of(column: pa.Array, task: Task) -> np.ndarray:
    _no_nulls(column, "the label")
    values = column.to_numpy(zero_copy_only=False)
    if task is Task.REGRESSION:
        y = values.astype(np.float32)
        if not np.isfinite(y).all():
            raise InvalidSpec.field("dataset.label", "a target is not finite")
        return y
    y = values.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise InvalidSpec.field("dataset.label", f"class labels must be integers from 0 to {MAX_CLASSES - 1}")
    return y


def _no_nulls(column: pa.Array, name: str) -> None:
    if column.null_count:
        raise InvalidSpec.field("dataset", f"column {name!r} has empty values; every row needs every column")


# ------------------------------------------------------------------ reading a prepared split


def read_groups(path: str, pieces: Sequence[Piece]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pieces of row groups of a prepared split, read here with pyarrow: (x (rows, width), y) each."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path, pre_buffer=False)
    for piece in pieces:
        yield group_arrays(read_piece(reader, piece))


def read_piece(reader: pq.ParquetFile, piece: Piece) -> pa.Table:
    """One piece of a row group, from an open prepared file (a slice: no copy)."""
    group, start, stop = piece
    return reader.read_row_group(int(group)).slice(int(start), int(stop) - int(start))


def group_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """A prepared table's `x` (float32 bytes, a fixed number a row) and `y` as numpy, without
    copying `x`."""
    x = table.column("x").combine_chunks()
    row_bytes = x.type.byte_width
    values = np.frombuffer(x.buffers()[1], dtype="<f4", count=len(x) * row_bytes // 4, offset=x.offset * row_bytes)
    return values.reshape(len(x), row_bytes // 4), table.column("y").to_numpy()


def shard(split: PreparedSplit, rank: int, world_size: int, order: Sequence[int], equal: bool) -> list[Piece]:
    """Worker `rank`'s rows: the split's groups laid end to end in `order` and cut into
    `world_size` runs of rows, as pieces of groups. With `equal`, every run holds the same
    number of rows (up to world_size - 1 rows sit out), so data-parallel workers take the
    same number of steps; without, the last run takes the rest and every row is in one run."""
    total = split.rows
    size = total // world_size
    first = rank * size
    last = first + size if equal or rank < world_size - 1 else total
    pieces: list[Piece] = []
    offset = 0
    for group in order:
        rows = split.group_rows[int(group)]
        start, stop = max(first - offset, 0), min(last - offset, rows)
        if start < stop:
            pieces.append((int(group), start, stop))
        offset += rows
    return pieces


def split_batches(
    prepared: PreparedTable,
    name: str,
    reader: GroupReader,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    shuffle_seed: Sequence[int] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass over this worker's shard of split `name`, in batches of `batch_size` rows (the
    last may be smaller). With `shuffle_seed` (training), the groups are laid out in a seeded
    order and rows shuffled within each piece read, and every worker yields the same number
    of batches; without (validation, scoring), the groups keep their order and every row is
    some worker's."""
    split = prepared.split(name)
    groups = np.arange(len(split.group_rows))
    rng = np.random.default_rng(list(shuffle_seed)) if shuffle_seed is not None else None
    order = rng.permutation(groups) if rng is not None else groups
    pieces = shard(split, rank, world_size, [int(g) for g in order], equal=rng is not None)
    yield from _rebatched(reader(split.path, pieces), batch_size, rng)


def _rebatched(
    blocks: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int, rng: np.random.Generator | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every row of `blocks` in batches of `batch_size` across block boundaries, the last
    batch the rest: workers given as many rows get as many batches."""
    held_x: list[np.ndarray] = []
    held_y: list[np.ndarray] = []
    held = 0
    try:
        for x, y in blocks:
            if rng is not None:
                order = rng.permutation(len(y))
                x, y = x[order], y[order]
            held_x.append(x)
            held_y.append(y)
            held += len(y)
            while held >= batch_size:
                batch, held_x, held_y = _take(held_x, held_y, batch_size)
                held -= batch_size
                yield batch
        if held:
            batch, _, _ = _take(held_x, held_y, held)
            yield batch
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # a trainer that stops early releases the reader


def _take(
    xs: list[np.ndarray], ys: list[np.ndarray], size: int
) -> tuple[tuple[np.ndarray, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The first `size` rows held, and what remains."""
    if len(xs[0]) >= size:
        first_x, first_y = xs[0], ys[0]
        rest_x = [first_x[size:], *xs[1:]] if len(first_x) > size else xs[1:]
        rest_y = [first_y[size:], *ys[1:]] if len(first_y) > size else ys[1:]
        return (first_x[:size], first_y[:size]), rest_x, rest_y
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x[:size], y[:size]), [x[size:]], [y[size:]]
