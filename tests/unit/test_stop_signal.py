"""`anneal serve` stops on SIGTERM even when the kernel hands the signal to a thread other than
the main one, as it may in a process full of gRPC's and Ray's threads."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from cluster.server.main import wait_for_stop_signal


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _signal_later(signum: int, *, from_own_thread: bool) -> threading.Thread:
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        threading.Event().wait(0.2)  # the main thread is waiting by then
        signal.pthread_kill(threading.get_ident() if from_own_thread else main, signum)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


@pytest.mark.timeout(10)
def test_a_sigterm_to_the_main_thread_ends_the_wait() -> None:
    sender = _signal_later(signal.SIGTERM, from_own_thread=False)
    assert wait_for_stop_signal() == signal.SIGTERM
    sender.join()


@pytest.mark.timeout(10)
def test_a_signal_delivered_to_another_thread_still_ends_the_wait() -> None:
    sender = _signal_later(signal.SIGINT, from_own_thread=True)
    assert wait_for_stop_signal() == signal.SIGINT
    sender.join()
