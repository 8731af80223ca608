"""Table datasets prepared once and streamed: deterministic splits that keep test rows out,
statistics of the training rows, shards of equal steps, and a trainer that learns from them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneal.errors import InvalidSpec
from anneal.spec import DatasetSpec
from anneal.types import Task
from trainers.mlp import MLPClassifierTrainer
from trainers.tables import PreparedTable, group_arrays, prepare_table, read_groups, split_batches
from trainers.tableschema import check_table
from trainers.workercontext import LocalContext, StreamedDataError

ROWS = 3000
FEATURES = 6


def make_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32) * 3 + 1
    y = (x[:, 0] + x[:, 1] > 2).astype(np.int64) + (x[:, 2] > 3).astype(np.int64)
    return x, y


@pytest.fixture
def root(tmp_path: Path) -> Path:
    x, y = make_rows()
    columns = {f"f{i}": x[:, i] for i in range(FEATURES)}
    table = pa.table({**columns, "row": np.arange(ROWS), "label": y})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=700)
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 1000), tmp_path / "parts" / "a.parquet")
    pq.write_table(table.slice(1000), tmp_path / "parts" / "b.parquet")
    lines = ["f0,f1,f2,f3,f4,f5,row,label"] + [
        ",".join([*(repr(float(v)) for v in x[i]), str(i), str(y[i])]) for i in range(ROWS)
    ]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def spec(**fields: object) -> DatasetSpec:
    data = {"name": "t", "path": "t.parquet", "format": "parquet", "label": "label", "test_fraction": 0.2}
    return DatasetSpec.model_validate({**data, **fields})


def prepare(root: Path, out: str = "prepared", task: Task = Task.CLASSIFICATION, **fields: object) -> PreparedTable:
    dataset = spec(**fields)
    columns = check_table(dataset, task, (), [str(root)])
    return prepare_table(dataset, columns, task, str(root / out))


def rows_of(prepared: PreparedTable, split: str) -> tuple[np.ndarray, np.ndarray]:
    groups = prepared.split(split).group_rows
    parts = list(read_groups(prepared.split(split).path, [(g, 0, rows) for g, rows in enumerate(groups)]))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def row_ids(prepared: PreparedTable, split: str) -> set[int]:
    x, _ = rows_of(prepared, split)
    return {int(v) for v in x[:, FEATURES]}  # the "row" column is the last feature


def test_splits_follow_the_fractions_and_keep_test_rows_apart(root: Path) -> None:
    prepared = prepare(root)
    ids = {name: row_ids(prepared, name) for name in ("train", "val", "test")}
    assert len(ids["train"]) + len(ids["val"]) + len(ids["test"]) == ROWS
    assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"]) and not (ids["train"] & ids["val"])
    assert abs(len(ids["test"]) / ROWS - 0.2) < 0.03 and abs(len(ids["val"]) / ROWS - 0.2) < 0.03
    assert prepared.info.shape.n_features == FEATURES + 1 and prepared.info.shape.n_outputs == 3


def test_the_same_rows_split_the_same_way_from_any_files(root: Path) -> None:
    first = prepare(root, "a")
    assert row_ids(prepare(root, "b", path="parts"), "test") == row_ids(first, "test")
    assert row_ids(prepare(root, "c", path="t.csv", format="csv"), "test") == row_ids(first, "test")
    assert row_ids(prepare(root, "d", split_seed=1), "test") != row_ids(first, "test")


def test_statistics_are_those_of_the_training_rows(root: Path) -> None:
    prepared = prepare(root)
    x, _ = rows_of(prepared, "train")
    np.testing.assert_allclose(prepared.info.feature_mean, x.mean(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(prepared.info.feature_std, x.std(axis=0, ddof=1), rtol=1e-4)
    assert prepared.info.train_rows == len(x)


def test_a_regression_target_keeps_its_scale(root: Path) -> None:
    prepared = prepare(root, task=Task.REGRESSION, label="f0", features=["f1", "f2"])
    _, y = rows_of(prepared, "train")
    assert y.dtype == np.float32 and prepared.info.shape.n_outputs == 1
    assert prepared.info.target_mean is not None and abs(float(prepared.info.target_mean[0]) - y.mean()) < 1e-3


def test_a_study_keeps_the_rows_it_prepared_even_when_the_files_change(root: Path) -> None:
    first = prepare(root)
    manifest = Path(first.directory, "manifest.json")
    written = manifest.stat().st_mtime_ns
    os.utime(root / "t.parquet", ns=(1, 1))  # the file changed since: splitting again would mix test rows in
    again = prepare(root)
    assert again.to_json() == first.to_json()
    assert manifest.stat().st_mtime_ns == written


def test_files_of_another_layout_are_prepared_again(root: Path) -> None:
    first = prepare(root)
    manifest = Path(first.directory, "manifest.json")
    manifest.write_text(manifest.read_text().replace("v1", "v0"))
    assert prepare(root).to_json() == first.to_json()
    assert "v1" in manifest.read_text()


def test_row_groups_stay_within_their_size(root: Path) -> None:
    prepared = prepare(root)
    groups = prepared.train.group_rows
    assert len(groups) > 1 and len(set(groups[:-1])) == 1 and groups[-1] <= groups[0]


@pytest.mark.parametrize("workers", [2, 3, 8, 13])
def test_workers_take_the_same_number_of_batches_from_disjoint_shards(root: Path, workers: int) -> None:
    prepared = prepare(root)
    shards = [
        list(split_batches(prepared, "train", read_groups, 64, rank=r, world_size=workers, shuffle_seed=(0, 3)))
        for r in range(workers)
    ]
    assert len({len(shard) for shard in shards}) == 1 and shards[0]
    seen = [[int(v) for x, _ in shard for v in x[:, FEATURES]] for shard in shards]
    assert len({len(rows) for rows in seen}) == 1
    assert sum(len(rows) for rows in seen) == len(set().union(*map(set, seen)))  # disjoint
    assert 0 <= prepared.train.rows - sum(map(len, seen)) < workers  # only the remainder sits out
    assert all(len(x) == 64 for x, _ in shards[0][:-1])


def test_a_single_group_is_shared_by_every_worker(tmp_path: Path) -> None:
    x, y = make_rows()
    pq.write_table(pa.table({"a": x[:400, 0], "b": x[:400, 1], "label": y[:400]}), tmp_path / "t.parquet")
    prepared = prepare(tmp_path)
    assert len(prepared.train.group_rows) == 1
    counts = [
        sum(
            len(b)
            for _, b in split_batches(prepared, "train", read_groups, 16, rank=r, world_size=2, shuffle_seed=(0, 0))
        )
        for r in range(2)
    ]
    assert counts[0] == counts[1] == prepared.train.rows // 2


def test_epochs_shuffle_differently_and_repeat_for_the_same_seed(root: Path) -> None:
    prepared = prepare(root)

    def first_rows(epoch: int) -> list[int]:
        batches = split_batches(prepared, "train", read_groups, 32, shuffle_seed=(0, epoch))
        x, _ = next(iter(batches))
        return [int(v) for v in x[:, FEATURES]]

    assert first_rows(1) == first_rows(1) and first_rows(1) != first_rows(2)


def test_every_validation_row_is_one_workers(root: Path) -> None:
    prepared = prepare(root)
    shares = [
        [
            int(v)
            for x, _ in split_batches(prepared, "val", read_groups, 100, rank=r, world_size=8)
            for v in x[:, FEATURES]
        ]
        for r in range(8)
    ]
    assert sorted(v for share in shares for v in share) == sorted(row_ids(prepared, "val"))


@pytest.mark.parametrize(
    ("values", "field"),
    [({"f1": np.nan}, "dataset.features"), ({"label": -1}, "dataset.label"), ({"f2": None}, "dataset")],
    ids=["nan feature", "negative class", "empty value"],
)
def test_a_bad_value_is_refused_naming_the_field(tmp_path: Path, values: dict[str, object], field: str) -> None:
    x, y = make_rows()
    columns: dict[str, list[object]] = {f"f{i}": list(x[:, i]) for i in range(FEATURES)}
    columns["label"] = list(y)
    for name, value in values.items():
        columns[name][ROWS // 2] = value
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    with pytest.raises(InvalidSpec) as caught:
        prepare(tmp_path)
    assert [e.path for e in caught.value.errors] == [field]


def test_a_folders_files_must_have_the_first_files_column_types(root: Path) -> None:
    x, y = make_rows()
    columns = {f"f{i}": x[:10, i] for i in range(FEATURES)}
    pq.write_table(
        pa.table({**columns, "row": np.arange(10), "label": y[:10].astype(np.float64)}), root / "parts" / "c.parquet"
    )
    with pytest.raises(InvalidSpec, match="column 'label' is double in c.parquet, int64 in the first file"):
        prepare(root, path="parts")


def test_two_links_to_one_file_are_read_once(root: Path) -> None:
    (root / "parts" / "again.parquet").symlink_to(root / "parts" / "a.parquet")
    assert prepare(root, path="parts").train.rows == prepare(root, "single").train.rows


def test_a_word_in_a_later_block_of_a_csv_file_is_refused(tmp_path: Path) -> None:
    lines = ["a,b,label"] + [f"{i},{i * 2},{i % 2}" for i in range(200_000)] + ["x,1,0"]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidSpec, match="a value is not a number"):
        prepare(tmp_path, path="t.csv", format="csv")


def test_group_arrays_reads_x_without_copying(root: Path) -> None:
    prepared = prepare(root)
    group = pq.ParquetFile(prepared.train.path).read_row_group(0)
    x, y = group_arrays(group)
    assert x.shape == (prepared.train.group_rows[0], FEATURES + 1) and x.dtype == np.float32 and len(y) == len(x)
    sliced, _ = group_arrays(group.slice(5, 7))  # an offset into the array
    np.testing.assert_array_equal(sliced, x[5:12])


def test_the_mlp_learns_from_a_streamed_table(root: Path) -> None:
    prepared = prepare(root, features=[f"f{i}" for i in range(FEATURES)])
    context = LocalContext({"epochs": 4, "batch_size": 64, "lr": 0.01}, prepared)
    MLPClassifierTrainer().train(context)
    assert context.reports[-1]["val_accuracy"] > 0.85
    with pytest.raises(StreamedDataError, match="train_batches"):
        _ = context.data
