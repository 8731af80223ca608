"""A study warm-started from an earlier one: its sampler learns the earlier completed trials,
which are counted on the study and not run again; another principal cannot name that study."""

from __future__ import annotations

import pytest

from anneal.errors import NotFound
from anneal.types import StudyState, TrialState
from tests.integration.conftest import Stack, small_spec

pytestmark = pytest.mark.integration


def test_a_warm_started_study_learns_the_earlier_trials_without_running_them(stack: Stack) -> None:
    with stack.client() as client:
        earlier = client.wait_for_study(client.create_study(small_spec("it-warm-earlier")).study_id, timeout_s=300)
        assert earlier.state is StudyState.SUCCEEDED, earlier.error
        completed = [t for t in earlier.trials if t.state is TrialState.COMPLETED]
        spec = small_spec("it-warm", search={"sampler": "tpe", "seed": 1, "warm_start": [earlier.study_id]})
        warmed = client.wait_for_study(client.create_study(spec).study_id, timeout_s=300)
    assert warmed.state is StudyState.SUCCEEDED, warmed.error
    assert warmed.spec.search.warm_start == [earlier.study_id]
    assert warmed.warm_start_trials == len(completed) == 4
    assert len(warmed.trials) == spec.budget.max_trials  # its own trials only
    assert not {t.trial_id for t in warmed.trials} & {t.trial_id for t in earlier.trials}
    with stack.client("bob") as bob, pytest.raises(NotFound, match=f"no study '{earlier.study_id}'"):
        bob.create_study(small_spec("it-warm-bob", search={"warm_start": [earlier.study_id]}))
