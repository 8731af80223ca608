"""Each benchmark runs end to end at tiny sizes, so none of them can rot. No timing is
asserted, so the benchmarks' waits for a quiet machine and a warmed-up standby are skipped."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import bookkeeping, common, data_parallel, lifecycle, serving, streaming, study_overhead
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_waiting_for_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    def skip(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(common, "settle", skip)
    for module in (bookkeeping, serving, study_overhead):
        monkeypatch.setattr(module, "wait_for_next_standby", skip)


def test_study_overhead_runs(stack: Stack) -> None:
    result = study_overhead.run(stack, trials=2, epochs=1, rounds=1)  # type: ignore[arg-type]
    assert set(result["variants"]) == {
        "a plain loop", "b Ray Tune, docs way", "c Ray Tune, hand-tuned", "d anneal end to end"
    }  # fmt: skip
    assert all(v["over_limit"] > 0 for v in result["variants"].values())


def test_bookkeeping_runs(stack: Stack) -> None:
    result = bookkeeping.run(stack, trials=4, rounds=1, suggestion_points=[5])  # type: ignore[arg-type]
    assert result["anneal_over_bare"]["median"] > 0
    assert result["suggestion_s"][5] > 0


def test_serving_runs(stack: Stack) -> None:
    result = serving.run(stack, requests=5, rounds=1, seconds=0.3, concurrency=[1, 2])  # type: ignore[arg-type]
    assert set(result["latency"]) == {
        "raw forward (in process)", "Serve handle", "Serve handle, direct gRPC", "Serve HTTP", "anneal gRPC Predict"
    }  # fmt: skip
    assert result["time_to_deploy_s"] > 0
    assert result["throughput"]["batching on"][2]["requests_per_s"] > 0


def test_data_parallel_runs(stack: Stack) -> None:
    size = data_parallel.SMOKE
    # The shared cluster's other processes may keep it from ever being quiet: a short wait.
    result = data_parallel.run(stack, size["params"], size["train_rows"], rounds=1, quiet_timeout_s=3)  # type: ignore[arg-type]
    variants = result["variants"]
    assert set(variants) == {data_parallel.A1, data_parallel.A, data_parallel.B, data_parallel.C}
    assert all(v["samples_per_s"]["median"] > 0 and v["startup_s"]["median"] > 0 for v in variants.values())
    assert result["ratios"]["c/a"]["median"] > 0


def test_streaming_runs(stack: Stack) -> None:
    result = streaming.run(stack, rows=20_000, rounds=1)  # type: ignore[arg-type]
    assert set(result["variants"]) == {"a plain loop", "b anneal"}
    assert result["anneal_over_plain"]["median"] > 0 and result["prepare_s"] > 0


def test_lifecycle_runs(stack: Stack) -> None:
    result = lifecycle.run(stack, rounds=1, steady_s=0.5, seconds=0.5, max_replicas=2)  # type: ignore[arg-type]
    assert result["rollout"]["failed_calls"] == 0 and result["rollout"]["rounds"][0]["calls_during_rollout"] > 0
    assert result["autoscaling"]["to_added_replica_s"] > 0 and result["autoscaling"]["rps_32_minimum"] > 0


def test_search_runs(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import search

    monkeypatch.setattr(search, "wait_for_standby_running", lambda *_, **__: None)
    # At the smoke size the target is 0: every arm stops at its first report.
    result = search.run(stack, search.SMOKE, seeds=[0], quiet_timeout_s=0)  # type: ignore[arg-type]
    arms = result["arms"]
    assert set(arms) == {search.RANDOM, search.TPE_ASHA, search.BY_HAND, search.COLD, search.WARM}
    assert all(arm["reached"] == 1 and arm["epochs"]["median"] >= 1 for arm in arms.values())
    assert set(result["targets"]) and result["workload"]["epoch_s_alone"] > 0
