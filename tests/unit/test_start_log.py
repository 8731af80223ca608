"""A process `up` starts that exits during start-up is reported with the lines it wrote in
this start, not those of earlier starts appended to the same log."""

from __future__ import annotations

from pathlib import Path

from cluster.local.cluster import TAIL_LINES, StartLog


def test_the_error_quotes_the_end_of_what_this_start_wrote(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("an earlier start's last words\n")
    started = StartLog.before_start(log)
    with open(log, "a") as written:
        written.writelines(f"line {n}\n" for n in range(TAIL_LINES + 5))
        written.write("OSError: [Errno 98] Address already in use\n")
    message = str(started.exited("the anneal server"))
    assert message.startswith(f"the anneal server exited during start-up; the end of {log}:")
    assert message.endswith("OSError: [Errno 98] Address already in use")
    assert "earlier start" not in message and "line 5\n" not in message
    assert len(message.splitlines()) == 1 + TAIL_LINES


def test_a_process_that_wrote_nothing_says_so(tmp_path: Path) -> None:
    started = StartLog.before_start(tmp_path / "ray.log")  # no file yet
    assert str(started.exited("the Ray head")).endswith("(it wrote nothing)")
