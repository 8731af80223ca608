"""A spec's dataset.path reads only regular files under the data roots, and a CSV there
becomes the same kind of splits as a bundled dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anneal.errors import InvalidSpec
from anneal.spec import DatasetSpec, StudySpec
from trainers import dataroots
from trainers.contract import Task
from trainers.dataroots import resolve_data_path
from trainers.datasets import load_dataset, load_splits
from trainers.registry import check_spec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root holding data.csv and sub/nested.csv, beside a directory outside it."""
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "data.csv").write_text("a,label\n1,0\n")
    (tmp_path / "root" / "sub" / "nested.csv").write_text("a,label\n1,0\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.csv").write_text("a,label\n1,0\n")
    return tmp_path / "root"


def refusal(path: str, roots: list[Path] | list[str]) -> str:
    """The message resolve_data_path refuses `path` with; it must name dataset.path."""
    with pytest.raises(InvalidSpec) as caught:
        resolve_data_path(path, roots)
    assert [e.path for e in caught.value.errors] == ["dataset.path"]
    return caught.value.errors[0].message


def test_relative_absolute_and_file_url_paths_are_accepted(root: Path) -> None:
    real = (root / "sub" / "nested.csv").resolve()
    assert resolve_data_path("sub/nested.csv", [root]) == real
    assert resolve_data_path("./sub/nested.csv", [str(root)]) == real
    assert resolve_data_path(str(root / "sub" / "nested.csv"), [root]) == real
    assert resolve_data_path(f"file://{root}/sub/nested.csv", [root]) == real
    assert resolve_data_path(f"file://localhost{root}/sub/nested.csv", [root]) == real
    assert resolve_data_path(f"FILE:{root}/sub/nested.csv", [root]) == real


def test_a_relative_path_is_looked_up_under_each_root_in_order(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "only-here.csv").write_text("a,label\n")
    (other / "data.csv").write_text("a,label\n")
    assert resolve_data_path("only-here.csv", [root, other]) == (other / "only-here.csv").resolve()
    assert resolve_data_path("data.csv", [root, other]) == (root / "data.csv").resolve()


@pytest.mark.parametrize("path", ["../outside/secret.csv", "sub/../data.csv", "sub/..", "..\\outside\\secret.csv"])
def test_dot_dot_is_refused_before_anything_is_looked_up(root: Path, path: str) -> None:
    assert "'..' is not allowed" in refusal(path, [root])
    assert "'..' is not allowed" in refusal(f"{root}/{path}", [root])
    assert "'..' is not allowed" in refusal(f"file://{root}/{path.replace('..', '%2e%2e')}", [root])


@pytest.mark.parametrize(
    ("path", "scheme"),
    [
        ("http://example.com/data.csv", "http"),
        ("s3://bucket/data.csv", "s3"),
        ("gs://bucket/data.csv", "gs"),
        ("data:text/csv,1,2", "data"),
        ("C:/data.csv", "c"),
    ],
)
def test_other_url_schemes_are_refused(root: Path, path: str, scheme: str) -> None:
    message = refusal(path, [root])
    assert f"the {scheme!r} scheme is not allowed" in message
    assert "data roots" in message


def test_a_file_url_on_another_host_is_refused(root: Path) -> None:
    assert "'evil-host' is not allowed" in refusal(f"file://evil-host{root}/data.csv", [root])


@pytest.mark.parametrize("url", ["file://[::1/x.csv", "file://\uff03x/y.csv"])
def test_a_file_url_that_does_not_parse_is_refused(root: Path, url: str) -> None:
    assert "not a valid file URL" in refusal(url, [root])


def test_a_nul_byte_is_refused(root: Path) -> None:
    assert "NUL" in refusal("data.csv\x00.txt", [root])
    assert "NUL" in refusal(f"file://{root}/data.csv%00", [root])


def test_a_symlink_out_of_a_root_is_refused_without_naming_its_target(root: Path, tmp_path: Path) -> None:
    (root / "link.csv").symlink_to(tmp_path / "outside" / "secret.csv")
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    for path in ("link.csv", "escape/secret.csv", str(root / "escape" / "secret.csv")):
        message = refusal(path, [root])
        assert "resolves outside the data roots" in message
        assert "outside/" not in message and str(tmp_path) not in message.replace(str(root), "")


def test_whether_a_file_outside_exists_is_not_revealed(root: Path, tmp_path: Path) -> None:
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    there, absent = tmp_path / "outside" / "secret.csv", tmp_path / "outside" / "absent.csv"
    assert refusal(str(absent), [root]).replace("absent", "secret") == refusal(str(there), [root])
    assert refusal("escape/absent.csv", [root]).replace("absent", "secret") == refusal("escape/secret.csv", [root])


def test_a_symlink_to_another_root_is_accepted(root: Path, tmp_path: Path) -> None:
    (root / "shared.csv").symlink_to(tmp_path / "outside" / "secret.csv")
    assert resolve_data_path("shared.csv", [root, tmp_path / "outside"]) == (tmp_path / "outside" / "secret.csv")


def test_only_existing_regular_files_are_accepted(root: Path) -> None:
    assert "is not a regular file" in refusal("sub", [root])
    assert "is not a regular file" in refusal(".", [root])
    os.mkfifo(root / "pipe.csv")
    assert "is not a regular file" in refusal("pipe.csv", [root])
    message = refusal("missing.csv", [root])
    assert message == "'missing.csv': no such file under the data roots"


def test_a_file_over_the_size_limit_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dataroots, "MAX_DATA_FILE_BYTES", 4)
    assert "is larger than" in refusal("data.csv", [root])


def test_without_data_roots_nothing_is_read(root: Path) -> None:
    assert "no data roots are configured" in refusal("data.csv", [])
    assert "no data roots are configured" in refusal(str(root / "data.csv"), [""])


# -- CSV files


CLASSIFICATION = Task.CLASSIFICATION


def write_csv(path: Path, rows: int = 60, classes: int = 3, features: int = 4) -> np.ndarray:
    """A CSV with a header, `features` float columns and a label cycling over `classes`."""
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.normal(size=(rows, features)).round(3), np.arange(rows) % classes])
    header = ",".join([f"f{i}" for i in range(features)] + ["label"])
    lines = [header] + [",".join(str(v) for v in row[:-1]) + f",{int(row[-1])}" for row in table]
    path.write_text("\n".join(lines) + "\n")
    return table


def csv_spec(path: str, **fractions: Any) -> DatasetSpec:
    return DatasetSpec(name="mine", path=path, **fractions)


def test_a_csv_file_loads_as_stratified_splits(root: Path) -> None:
    table = write_csv(root / "mine.csv")
    data = load_dataset(csv_spec("mine.csv"), [str(root)], CLASSIFICATION)
    assert (data.shape.n_features, data.shape.n_outputs) == (4, 3)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 60
    assert len(data.y_val) == 12 and len(data.y_test) == 12
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    loaded = np.concatenate([data.x_train, data.x_val, data.x_test])
    assert sorted(map(tuple, loaded.tolist())) == sorted(map(tuple, table[:, :-1].astype(np.float32).tolist()))
    again = load_dataset(csv_spec("mine.csv"), [str(root)], CLASSIFICATION)
    assert np.array_equal(again.y_val, data.y_val)


def test_a_csv_file_for_a_regressor_keeps_its_numeric_target(root: Path) -> None:
    rows = "\n".join(f"{i},{i % 7},{i * 1.5 + 0.25}" for i in range(50))
    (root / "prices.csv").write_text("size,rooms,price\n" + rows + "\n")
    data = load_dataset(csv_spec("prices.csv"), [str(root)], Task.REGRESSION)
    assert (data.shape.n_features, data.shape.n_outputs) == (2, 1)
    assert data.y_train.dtype == np.float32 and len(data.y_train) + len(data.y_val) + len(data.y_test) == 50
    assert sorted(np.concatenate([data.y_train, data.y_val, data.y_test]).tolist()) == [
        i * 1.5 + 0.25 for i in range(50)
    ]


def test_a_regression_target_must_be_finite(root: Path) -> None:
    rows = "\n".join(f"{i},{i}" for i in range(20))
    (root / "bad.csv").write_text("a,target\n" + rows + "\n1,nan\n")
    with pytest.raises(InvalidSpec, match="regression target"):
        load_dataset(csv_spec("bad.csv"), [str(root)], Task.REGRESSION)


def test_a_changed_file_is_read_again(root: Path) -> None:
    write_csv(root / "mine.csv", rows=60)
    assert load_dataset(csv_spec("mine.csv"), [str(root)], CLASSIFICATION).shape.n_outputs == 3
    write_csv(root / "mine.csv", rows=40, classes=2)
    data = load_dataset(csv_spec("mine.csv"), [str(root)], CLASSIFICATION)
    assert data.shape.n_outputs == 2 and len(data.y_train) + len(data.y_val) + len(data.y_test) == 40


def test_a_bundled_dataset_loads_as_before() -> None:
    spec = DatasetSpec(name="iris", validation_fraction=0.25, test_fraction=0.1, split_seed=3)
    assert load_dataset(spec, [], CLASSIFICATION) is load_splits("iris", 0.25, 0.1, 3)


def test_the_path_is_checked_again_where_it_is_read(root: Path, tmp_path: Path) -> None:
    write_csv(tmp_path / "outside" / "mine.csv")
    with pytest.raises(InvalidSpec) as caught:
        load_dataset(csv_spec(str(tmp_path / "outside" / "mine.csv")), [str(root)], CLASSIFICATION)
    assert caught.value.errors[0].path == "dataset.path"


GOOD_ROWS = "".join(f"{i},{i % 2}\n" for i in range(12))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a,label\n" + GOOD_ROWS + "secret,1\n", "is not a number"),
        ("a,label\n" + GOOD_ROWS + "1,\n", "is not a number"),
        ("a,label\n" + GOOD_ROWS + "1,2,0\n", "different numbers of columns"),
        ("label\n" + "".join(f"{i % 2}\n" for i in range(12)), "at least 2 columns"),
        ("a,label\n" + GOOD_ROWS + "1,-1\n", "integers >= 0"),
        ("a,label\n" + GOOD_ROWS + "1,0.5\n", "integers >= 0"),
        ("a,label\n" + GOOD_ROWS + "1,nan\n", "integers >= 0"),
        ("a,label\n" + GOOD_ROWS + "nan,1\n", "not finite"),
        ("a,label\n" + GOOD_ROWS + "1e300,1\n", "not finite"),
        ("a,label\n" + GOOD_ROWS + "1,100000\n", "below 1000"),
        ("a,label\n" + GOOD_ROWS + "1,2\n", "class 2 has a single row"),
        ("a,label\n1,0\n2,1\n3,0\n", "has 3 rows after the header"),
        ("a,label\n", "has 0 rows"),
        ("", "has 0 rows"),
        ("a,label\n" + "".join(f"{i},{i // 2}\n" for i in range(12)), "too few rows per class"),
        ("a,label\n\xff\xfe,1\n" + GOOD_ROWS, "is not a number"),
    ],
)
def test_a_malformed_csv_is_an_invalid_spec_naming_dataset_path(root: Path, text: str, reason: str) -> None:
    (root / "bad.csv").write_text(text, encoding="latin-1")
    with pytest.raises(InvalidSpec) as caught:
        load_dataset(csv_spec("bad.csv"), [str(root)], CLASSIFICATION)
    [error] = caught.value.errors
    assert error.path == "dataset.path"
    assert reason in error.message
    assert "secret" not in error.message


def test_a_file_that_grows_past_the_limit_while_read_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_csv(root / "mine.csv")
    monkeypatch.setattr("trainers.datasets.MAX_DATA_FILE_BYTES", 100)
    with pytest.raises(InvalidSpec, match="larger than"):
        load_dataset(csv_spec("mine.csv"), [str(root)], CLASSIFICATION)


# -- the spec check at the door


def spec_with(minimal_data: dict[str, Any], **dataset: Any) -> StudySpec:
    return StudySpec.model_validate({**minimal_data, "dataset": dataset})


def test_check_spec_accepts_a_path_under_a_root_whatever_its_name(root: Path, minimal_data: dict[str, Any]) -> None:
    spec = spec_with(minimal_data, name="my-table", path="data.csv")
    assert check_spec(spec, data_roots=[str(root)]).name == "mlp_classifier"


def test_check_spec_refuses_a_path_outside_the_roots_with_the_other_errors(
    root: Path, tmp_path: Path, minimal_data: dict[str, Any]
) -> None:
    spec = spec_with(
        {**minimal_data, "objective": {"metric": "nope", "mode": "max"}},
        name="my-table",
        path=str(tmp_path / "outside" / "secret.csv"),
    )
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec, data_roots=[str(root)])
    assert [e.path for e in caught.value.errors] == ["dataset.path", "objective.metric"]
    with pytest.raises(InvalidSpec, match="dataset.path: no data roots"):
        check_spec(spec_with(minimal_data, name="iris", path="data.csv"))


def test_check_spec_of_a_bundled_dataset_is_unchanged(minimal_data: dict[str, Any]) -> None:
    assert check_spec(spec_with(minimal_data, name="iris")).name == "mlp_classifier"
    with pytest.raises(InvalidSpec) as caught:
        check_spec(spec_with(minimal_data, name="mine"), data_roots=["/"])
    assert [e.path for e in caught.value.errors] == ["dataset.name"]
