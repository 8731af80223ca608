"""Table datasets on the real cluster: a Parquet study end to end, its columns refused at
CreateStudy from the schema alone, and a table several times the object store streamed to a
data-parallel trial whose workers stay within a memory bound."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anneal import InvalidSpec, StudySpec, StudyState
from tests.integration.conftest import OBJECT_STORE_MB, Stack
from trainers.datasets import load_arrays

pytestmark = pytest.mark.integration


def data_root(stack: Stack) -> Path:
    root = Path(stack.settings.data_roots[0])
    root.mkdir(parents=True, exist_ok=True)
    return root


def table_spec(name: str, dataset: dict[str, object], **changes: object) -> StudySpec:
    data: dict[str, object] = {
        "name": name,
        "trainer": "mlp_classifier",
        "dataset": {"name": name, "format": "parquet", "label": "digit", **dataset},
        "params": {"epochs": 4, "batch_size": 64},
        "search_space": {"lr": {"float": {"low": 3e-3, "high": 3e-2, "log": True}}},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "budget": {"max_trials": 2, "max_concurrent_trials": 2},
    }
    data.update(changes)
    return StudySpec.parse(data)


@pytest.fixture(scope="module")
def digits_parquet(stack: Stack) -> str:
    x, y = load_arrays("digits")
    table = pa.table({**{f"pixel{i}": x[:, i] for i in range(x.shape[1])}, "digit": y, "note": ["n"] * len(y)})
    pq.write_table(table, data_root(stack) / "digits.parquet")
    return "digits.parquet"


def test_a_parquet_study_trains_deploys_and_predicts(stack: Stack, digits_parquet: str, serve_apps: list[str]) -> None:
    features = [f"pixel{i}" for i in range(64)]
    spec = table_spec("it-parquet", {"path": digits_parquet, "features": features})
    with stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
        assert study.state is StudyState.SUCCEEDED, study.error
        assert len(study.trials) == 2 and all(t.epochs == 4 for t in study.trials)
        assert study.best_test_metrics["test_accuracy"] > 0.8
        serve_apps.append(spec.name)
        client.deploy(study.study_id)
        x, y = load_arrays("digits")
        predictions = client.predict(spec.name, x[:50].tolist())
    assert np.mean([p.label == label for p, label in zip(predictions, y[:50], strict=True)]) > 0.8
    prepared = Path(stack.settings.tune_storage, study.study_id, "data")
    assert sorted(p.name for p in prepared.iterdir()) == [
        "manifest.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]


@pytest.mark.parametrize(
    ("dataset", "field", "fragment"),
    [
        ({"label": "label", "features": ["pixel0"]}, "dataset.label", "no column 'label'"),
        ({}, "dataset.features", "column 'note' is string"),
        ({"features": ["pixel0", "note"]}, "dataset.features.1", "column 'note' is string"),
        ({"path": "unreadable.parquet"}, "dataset.path", "not a readable parquet table"),
        ({"path": "/etc/hostname"}, "dataset.path", "resolves outside the data roots"),
    ],
    ids=["missing label", "non-numeric feature", "non-numeric named feature", "unreadable file", "outside the roots"],
)
def test_a_table_schema_error_is_refused_at_create_study(
    stack: Stack, digits_parquet: str, dataset: dict[str, object], field: str, fragment: str
) -> None:
    (data_root(stack) / "unreadable.parquet").write_bytes(b"PAR1 but not really")
    spec = table_spec("it-bad-table", {"path": digits_parquet, **dataset})
    with stack.client() as client, pytest.raises(InvalidSpec) as caught:
        client.create_study(spec)
    assert [e.path for e in caught.value.errors] == [field]
    assert fragment in caught.value.errors[0].message


LARGE_FEATURES = 256
LARGE_FILES = 5


class PeakMemory:
    """The peak resident and private memory of each Ray worker process whose title names one
    of `kinds`, sampled from /proc every 0.1 s while it runs."""

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds
        self.titles: dict[str, str] = {}  # pid -> its first title
        self.rss: dict[str, int] = {}
        self.private: dict[str, int] = {}
        self.first_private: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                    if not title.startswith("ray::") or not any(kind in title for kind in self.kinds):
                        continue
                    rss, private = _memory_of(pid)
                except OSError:
                    continue
                self.titles.setdefault(pid, title[:60])
                self.first_private.setdefault(pid, private)
                self.rss[pid] = max(self.rss.get(pid, 0), rss)
                self.private[pid] = max(self.private.get(pid, 0), private)


def _memory_of(pid: str) -> tuple[int, int]:
    """(resident, private) bytes: private leaves out the object store's shared pages."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) * 1024
    return fields["Rss"], fields["Private_Clean"] + fields["Private_Dirty"]


@pytest.fixture(scope="module")
def large_table(stack: Stack) -> Iterator[tuple[str, int]]:
    """A Parquet folder of LARGE_FILES files, 4× the object store: 256 float32 features a row."""
    folder = data_root(stack) / "large"
    folder.mkdir()
    rows = OBJECT_STORE_MB * 1024 * 1024 * 4 // (4 * LARGE_FEATURES + 8) // LARGE_FILES
    rng = np.random.default_rng(0)
    for index in range(LARGE_FILES):
        x = rng.standard_normal((rows, LARGE_FEATURES), dtype=np.float32)
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
        columns = {f"f{i}": x[:, i] for i in range(LARGE_FEATURES)}
        table = pa.table({**columns, "digit": y})
        pq.write_table(table, folder / f"part-{index}.parquet", compression="none", use_dictionary=False)
        del x, columns, table
    size = sum(p.stat().st_size for p in folder.iterdir())
    yield "large", size
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def test_a_table_larger_than_the_object_store_streams_within_a_memory_bound(
    stack: Stack, large_table: tuple[str, int]
) -> None:
    path, size = large_table
    assert size >= 3 * OBJECT_STORE_MB * 1024 * 1024
    spec = table_spec(
        "it-large-table",
        {"path": path},
        params={"epochs": 1, "batch_size": 2048, "hidden_size": 16},
        budget={"max_trials": 1, "max_concurrent_trials": 1},
        resources={"workers": 2, "cpu": 0.75},
    )
    started = time.monotonic()
    with PeakMemory(("RayTrainWorker", "ImplicitFunc", "MapBatches")) as peaks, stack.client() as client:
        study = client.wait_for_study(client.create_study(spec).study_id, timeout_s=600)
    elapsed = time.monotonic() - started
    assert study.state is StudyState.SUCCEEDED, study.error
    assert study.best_test_metrics["test_accuracy"] > 0.9
    mib = 1024 * 1024
    print(f"\ntable {size / mib:.0f} MiB, object store {OBJECT_STORE_MB} MiB, study {elapsed:.0f} s")
    for pid in sorted(peaks.rss):
        rss, private, first = (peaks.rss[pid] / mib, peaks.private[pid] / mib, peaks.first_private[pid] / mib)
        print(f"  {peaks.titles[pid]} ({pid}): peak RSS {rss:.0f} MiB, private {private:.0f} MiB (from {first:.0f})")
    workers = [pid for pid, title in peaks.titles.items() if "RayTrainWorker" in title]
    assert len(workers) == 2
    # The bound: a worker's own memory (the object store's shared pages left out) rises by at
    # most a fifth of the table while it streams it (a few row groups ahead: 16 MiB each), and
    # peaks under half the table, torch and Ray's worker (about 300 MiB) included.
    for pid in workers:
        growth = peaks.private[pid] - peaks.first_private[pid]
        assert growth < size / 5, f"worker {pid} grew by {growth / mib:.0f} MiB"
        assert peaks.private[pid] < size / 2, f"worker {pid} held {peaks.private[pid] / mib:.0f} MiB"
