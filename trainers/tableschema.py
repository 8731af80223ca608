"""A table dataset's columns, checked at the door: `dataset: {path, format, label, features}`.

Only the schema is read (a Parquet file's footer, a CSV file's header and first block, whose
values give the column types), so CreateStudy answers at once, whatever the table's size, and
a missing label or a non-numeric feature is INVALID_ARGUMENT naming the field instead of a
study that fails in its driver. The same check runs again where the table is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from anneal.errors import FieldError, InvalidSpec
from anneal.spec import DatasetSpec
from anneal.types import Task
from trainers.dataroots import FIELD, open_regular_file, resolve_table_files

if TYPE_CHECKING:
    import pyarrow as pa

# What the header and types of a CSV file are read from: its first block.
CSV_SCHEMA_BYTES = 1 << 20


@dataclass(frozen=True)
class TableColumns:
    """The columns a table dataset is read by, as checked."""

    files: tuple[Path, ...]
    format: str
    label: str
    features: tuple[str, ...]
    width: int  # numbers in one example: the features' count, or the array column's size
    array_column: bool  # the features are one fixed-size array column (a tensor per row)


def check_table(
    dataset: DatasetSpec, task: Task, input_shape: tuple[int, ...], roots: Sequence[str | Path]
) -> TableColumns:
    """The table's columns for a trainer of `task` and `input_shape`, or InvalidSpec naming
    every field at fault."""
    if dataset.format is None:
        raise ValueError("not a table dataset")
    files = resolve_table_files(dataset.path, roots, folder_allowed=dataset.format == "parquet")
    schema = read_schema(files[0], dataset.format)
    names = list(schema.names)
    errors: list[FieldError] = []
    if dataset.label not in names:
        errors.append(FieldError("dataset.label", f"no column {dataset.label!r} in the table; it has {_listed(names)}"))
    elif not _label_type_ok(schema.field(dataset.label).type, task):
        kind = "integer class indices" if task is Task.CLASSIFICATION else "numbers"
        label_type = schema.field(dataset.label).type
        errors.append(FieldError("dataset.label", f"column {dataset.label!r} is {label_type}; it must hold {kind}"))
    features = dataset.features or [n for n in names if n != dataset.label]
    named = bool(dataset.features)
    widths = [_feature_width(schema, name, index, named, errors) for index, name in enumerate(features)]
    if not features:
        errors.append(FieldError("dataset.features", "the table has no column besides the label"))
    if errors:
        raise InvalidSpec(errors)
    array_column = any(_is_array(schema.field(name).type) for name in features)
    return _shaped(dataset, files, features, [w or 0 for w in widths], array_column, input_shape)


def _shaped(
    dataset: DatasetSpec,
    files: list[Path],
    features: list[str],
    widths: list[int],
    array_column: bool,
    input_shape: tuple[int, ...],
) -> TableColumns:
    """The columns, if they make the example the trainer's input takes: numbers (a row of
    any width), or a tensor of `input_shape` from one array column or as many number columns."""
    field = "dataset.features"
    if array_column and len(features) > 1:
        raise InvalidSpec.field(field, "an array column must be the only feature: it holds the whole example")
    if array_column and not input_shape:
        raise InvalidSpec.field(field, f"{features[0]!r} is an array column; this trainer takes rows of numbers")
    width = sum(widths)
    if input_shape and width != math.prod(input_shape):
        shape = "×".join(map(str, input_shape))
        needed = math.prod(input_shape)
        raise InvalidSpec.field(field, f"the features hold {width} numbers per row; the {shape} input needs {needed}")
    assert dataset.format is not None
    return TableColumns(tuple(files), dataset.format, dataset.label, tuple(features), width, array_column)


def read_schema(path: Path, table_format: str) -> pa.Schema:
    """The column names and types of one file: a Parquet footer, or a CSV header with the types
    its first block shows. InvalidSpec naming `dataset.path` when the file is not such a table."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    with open_regular_file(path, max_bytes=None) as handle:
        try:
            if table_format == "parquet":
                return pq.read_schema(handle)
            options = pa_csv.ReadOptions(block_size=CSV_SCHEMA_BYTES)
            return pa_csv.open_csv(handle, read_options=options).schema
        except (pa.ArrowException, OSError, ValueError) as error:
            reason = str(error).split("\n")[0][:200]
            raise InvalidSpec.field(FIELD, f"the file is not a readable {table_format} table: {reason}") from None


def _feature_width(schema: pa.Schema, name: str, index: int, named: bool, errors: list[FieldError]) -> int | None:
    """How many numbers the column holds per row; None (and an error) when it is not numeric."""
    field = f"dataset.features.{index}" if named else "dataset.features"
    if name not in schema.names:
        errors.append(FieldError(field, f"no column {name!r} in the table; it has {_listed(schema.names)}"))
        return None
    column_type = schema.field(name).type
    if _is_number(column_type):
        return 1
    size = _array_size(column_type)
    if size is None:
        wanted = "numbers, or one fixed-size array of numbers"
        errors.append(FieldError(field, f"column {name!r} is {column_type}; features must be {wanted}"))
    return size


def _is_number(column_type: pa.DataType) -> bool:
    import pyarrow as pa

    types = pa.types
    return bool(types.is_integer(column_type) or types.is_floating(column_type) or types.is_boolean(column_type))


def _label_type_ok(column_type: pa.DataType, task: Task) -> bool:
    import pyarrow as pa

    if task is Task.CLASSIFICATION:
        return bool(pa.types.is_integer(column_type) or pa.types.is_boolean(column_type))
    return _is_number(column_type)


def _is_array(column_type: pa.DataType) -> bool:
    return _array_size(column_type) is not None


def _array_size(column_type: pa.DataType) -> int | None:
    """The numbers per row of a fixed-size array column: Arrow's fixed-size list, its canonical
    fixed-shape tensor, or Ray Data's tensor column; None for anything else."""
    import pyarrow as pa

    shape = getattr(column_type, "shape", None)
    if isinstance(column_type, pa.ExtensionType) and shape is not None:
        value_type = getattr(column_type, "value_type", None) or getattr(column_type.storage_type, "value_type", None)
        return math.prod(shape) if value_type is not None and _is_number(value_type) else None
    if pa.types.is_fixed_size_list(column_type) and _is_number(column_type.value_type):
        return int(column_type.list_size)
    return None


def _listed(names: list[str], most: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "") if names else "no columns"
