"""The checked-in gRPC code in anneal/v1/ is what `make protos` generates from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.helpers import ROOT

PROTOS = sorted((ROOT / "protos" / "anneal" / "v1").glob("*.proto"))
GENERATED = [
    f"anneal/v1/{proto.stem}{suffix}" for proto in PROTOS for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("protos")
    # The flags of the Makefile's `protos` target, writing to `out` instead of the repository.
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "protos",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(ROOT)) for p in PROTOS),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    return out


def test_there_are_protos() -> None:
    assert PROTOS, "no .proto files under protos/anneal/v1"


@pytest.mark.parametrize("name", GENERATED)
def test_checked_in_code_is_current(generated: Path, name: str) -> None:
    fresh = generated / name
    assert fresh.is_file(), f"protoc did not write {name}"
    checked_in = ROOT / name
    assert checked_in.is_file(), f"{name} is missing: run `make protos` and commit the result"
    assert checked_in.read_text() == fresh.read_text(), f"{name} is stale: run `make protos` and commit the result"


def test_nothing_else_is_generated(generated: Path) -> None:
    written = sorted(str(p.relative_to(generated)) for p in generated.rglob("*") if p.is_file())
    assert written == sorted(GENERATED)
