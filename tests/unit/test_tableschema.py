"""Table datasets checked at the door from their schema alone: what is taken, and every refusal
naming its field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneal.errors import InvalidSpec
from anneal.spec import DatasetSpec
from anneal.types import Task
from trainers.tableschema import TableColumns, check_table

ROWS = 12


@pytest.fixture
def root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "a": rng.standard_normal(ROWS).astype(np.float32),
            "b": rng.integers(0, 5, ROWS),
            "flag": rng.integers(0, 2, ROWS).astype(bool),
            "y": rng.integers(0, 3, ROWS),
            "target": rng.standard_normal(ROWS),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "parts" / "day=1").mkdir(parents=True)
    pq.write_table(table, tmp_path / "parts" / "day=1" / "0.parquet")
    pq.write_table(table, tmp_path / "parts" / "1.parquet")
    pq.write_table(table.append_column("name", pa.array(["x"] * ROWS)), tmp_path / "named.parquet")
    pixels = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(ROWS * 64, dtype=np.float32)), 64)
    pq.write_table(pa.table({"image": pixels, "y": table["y"]}), tmp_path / "images.parquet")
    (tmp_path / "t.csv").write_text("a,b,y\n" + "".join(f"{i / 2},{i},{i % 3}\n" for i in range(ROWS)))
    (tmp_path / "words.csv").write_text("a,word,y\n" + "".join(f"{i},w{i},{i % 3}\n" for i in range(ROWS)))
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all" * 10)
    return tmp_path


def dataset(**fields: object) -> DatasetSpec:
    return DatasetSpec.model_validate({"name": "t", "path": "t.parquet", "format": "parquet", "label": "y", **fields})


def check(root: Path, task: Task = Task.CLASSIFICATION, shape: tuple[int, ...] = (), **fields: object) -> TableColumns:
    return check_table(dataset(**fields), task, shape, [str(root)])


def refusal(root: Path, task: Task = Task.CLASSIFICATION, shape: tuple[int, ...] = (), **fields: object) -> list[str]:
    with pytest.raises(InvalidSpec) as caught:
        check(root, task, shape, **fields)
    return [f"{e.path}: {e.message}" for e in caught.value.errors]


def test_features_default_to_every_column_but_the_label(root: Path) -> None:
    columns = check(root)
    assert columns.features == ("a", "b", "flag", "target") and columns.width == 4 and not columns.array_column
    assert columns.files == ((root / "t.parquet").resolve(),)


def test_named_features_and_a_regression_target(root: Path) -> None:
    columns = check(root, Task.REGRESSION, label="target", features=["b", "a"])
    assert columns.features == ("b", "a") and columns.label == "target"


def test_a_folder_of_parquet_files_is_read_in_order(root: Path) -> None:
    columns = check(root, path="parts")
    assert [p.relative_to(root.resolve()).as_posix() for p in columns.files] == [
        "parts/1.parquet",
        "parts/day=1/0.parquet",
    ]


def test_a_csv_file_is_typed_from_its_first_block(root: Path) -> None:
    columns = check(root, path="t.csv", format="csv")
    assert columns.features == ("a", "b") and columns.format == "csv"


def test_an_array_column_makes_a_tensor_of_the_trainers_shape(root: Path) -> None:
    columns = check(root, shape=(1, 8, 8), path="images.parquet")
    assert columns.features == ("image",) and columns.width == 64 and columns.array_column


def test_number_columns_make_a_tensor_when_they_are_as_many(root: Path) -> None:
    assert check(root, shape=(2, 2), features=["a", "b", "flag", "target"]).width == 4


@pytest.mark.parametrize(
    ("fields", "task", "shape", "expected"),
    [
        ({"label": "label"}, Task.CLASSIFICATION, (), "dataset.label: no column 'label' in the table; it has 'a'"),
        (
            {"label": "target"},
            Task.CLASSIFICATION,
            (),
            "dataset.label: column 'target' is double; it must hold integer",
        ),
        ({"features": ["a", "nope"]}, Task.CLASSIFICATION, (), "dataset.features.1: no column 'nope'"),
        (
            {"path": "named.parquet"},
            Task.CLASSIFICATION,
            (),
            "dataset.features: column 'name' is string; features must",
        ),
        (
            {"path": "named.parquet", "features": ["a", "name"]},
            Task.CLASSIFICATION,
            (),
            "dataset.features.1: column 'name' is string",
        ),
        ({"path": "words.csv", "format": "csv"}, Task.CLASSIFICATION, (), "dataset.features: column 'word' is string"),
        (
            {"path": "garbage.parquet"},
            Task.CLASSIFICATION,
            (),
            "dataset.path: the file is not a readable parquet table",
        ),
        ({"path": "missing.parquet"}, Task.CLASSIFICATION, (), "dataset.path: 'missing.parquet': no such file"),
        (
            {"path": "/etc/passwd"},
            Task.CLASSIFICATION,
            (),
            "dataset.path: '/etc/passwd' resolves outside the data roots",
        ),
        (
            {"path": "parts", "format": "csv"},
            Task.CLASSIFICATION,
            (),
            "dataset.path: 'parts' is a folder; only a Parquet",
        ),
        ({"path": "images.parquet"}, Task.CLASSIFICATION, (), "dataset.features: 'image' is an array column; this"),
        ({}, Task.CLASSIFICATION, (1, 8, 8), "dataset.features: the features hold 4 numbers per row; the 1×8×8 input"),
    ],
    ids=[
        "missing label",
        "float class label",
        "missing feature",
        "non-numeric default feature",
        "non-numeric named feature",
        "non-numeric csv column",
        "unreadable file",
        "no such file",
        "outside the roots",
        "csv folder",
        "array column for rows",
        "too few numbers for the shape",
    ],
)
def test_refused_naming_the_field(
    root: Path, fields: dict[str, object], task: Task, shape: tuple[int, ...], expected: str
) -> None:
    errors = refusal(root, task, shape, **fields)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_every_column_fault_is_reported_at_once(root: Path) -> None:
    errors = refusal(root, path="named.parquet", label="nope", features=["a", "name", "gone"])
    assert [e.split(":")[0] for e in errors] == ["dataset.label", "dataset.features.1", "dataset.features.2"]


def test_an_empty_parquet_folder_is_refused(root: Path) -> None:
    (root / "empty").mkdir()
    assert refusal(root, path="empty") == ["dataset.path: the folder 'empty' holds no .parquet files"]


def test_a_symlink_in_a_folder_may_not_lead_out(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    pq.write_table(pa.table({"a": [1.0], "y": [1]}), outside / "secret.parquet")
    (root / "parts" / "link.parquet").symlink_to(outside / "secret.parquet")
    assert refusal(root, path="parts")[0].endswith("resolves outside the data roots")
