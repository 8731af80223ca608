"""The code blocks of the trainer guide (docs/trainers.md), for the tests that check each one:
a block whose first line names a file (`# examples/...`) is quoted from it word for word,
other Python blocks run as they are, and the shell commands run against a real cluster."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "trainers.md"
EXAMPLE_PACKAGE = ROOT / "examples" / "anneal-cnn"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_QUOTED = re.compile(r"^# ((?:examples/|ray-cluster\.yaml)\S*)$")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # where it starts in the guide

    @property
    def quoted_file(self) -> Path | None:
        """The file the block quotes, named on its first line."""
        match = _QUOTED.match(self.text.splitlines()[0]) if self.text else None
        return ROOT / match.group(1) if match else None

    @property
    def body(self) -> str:
        """The block without the line naming its file."""
        return self.text.split("\n", 1)[1] if self.quoted_file else self.text


def blocks() -> list[Block]:
    text = GUIDE.read_text()
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


def shell_commands() -> list[str]:
    """Every command of the guide's shell blocks, in order."""
    return [line for b in blocks() if b.language == "sh" for line in b.text.splitlines() if line.strip()]
