"""The trainer guide's code blocks: quoted files hold them word for word, its Python runs, its
specs are valid, and each of its commands is one the package's integration test runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from anneal.spec import StudySpec
from tests.guide import EXAMPLE_PACKAGE, GUIDE, ROOT, Block, blocks, shell_commands

# What tests/integration/test_trainer_package.py does with each command, by its start.
RUN_BY_THE_PACKAGE_TEST = (
    "pip install ",
    "anneal trainers ",
    "anneal submit ",
    "anneal predict ",
    "RAY_AUTH_MODE=token ray job submit ",
)


def test_the_readme_links_the_guide() -> None:
    assert "docs/trainers.md" in (ROOT / "README.md").read_text()


def test_every_block_is_checked_one_way() -> None:
    for block in blocks():
        checked = block.quoted_file is not None or block.language in ("python", "sh")
        assert checked, f"{GUIDE.name}:{block.line}: a {block.language or 'bare'} block no test checks"


@pytest.mark.parametrize("block", [b for b in blocks() if b.quoted_file], ids=lambda b: f"line {b.line}")
def test_a_quoted_block_is_in_its_file_word_for_word(block: Block) -> None:
    assert block.quoted_file is not None and block.quoted_file.is_file(), f"line {block.line}: no {block.quoted_file}"
    assert block.body in block.quoted_file.read_text(), f"line {block.line} differs from {block.quoted_file}"


@pytest.mark.parametrize(
    "block", [b for b in blocks() if b.language == "python" and not b.quoted_file], ids=lambda b: f"line {b.line}"
)
def test_a_python_block_runs(block: Block, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGE))
    monkeypatch.chdir(tmp_path)  # where a block writes its files
    try:
        exec(compile(block.text, f"{GUIDE}:{block.line}", "exec"), {})
    finally:
        for name in [m for m in sys.modules if m == "anneal_cnn" or m.startswith("anneal_cnn.")]:
            del sys.modules[name]


@pytest.mark.parametrize("path", sorted(EXAMPLE_PACKAGE.glob("*.yaml")), ids=lambda p: p.name)
def test_the_packages_specs_are_valid(path: Path) -> None:
    StudySpec.load(path)


def test_each_command_is_one_the_package_test_runs() -> None:
    commands = shell_commands()
    assert commands
    for command in commands:
        assert command.startswith(RUN_BY_THE_PACKAGE_TEST), f"no test runs {command!r}"
