"""The plots of a study, drawn from Study objects made by hand: each PNG decodes to a picture of
a sane size, the one HTML page holds each figure (and plotly.js once), and a plot the trials
cannot make is left out with its reason, never raised."""

from __future__ import annotations

import io
import random
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import pytest

from anneal.plots import HTML_FILE, WrittenPlots, optuna_study, plan_plots, write_plots
from anneal.spec import StudySpec
from anneal.types import Study, StudyState, Trial, TrialState

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPACE = {
    "lr": {"float": {"low": 1e-3, "high": 1e-1, "log": True}},
    "hidden_size": {"int": {"low": 8, "high": 64}},
    "optimizer": {"categorical": ["adam", "sgd"]},
}


def make_study(trials: list[Trial], **changes: Any) -> Study:
    spec: dict[str, Any] = {
        "name": "plots",
        "trainer": "mlp_classifier",
        "dataset": {"name": "digits"},
        "params": {"epochs": 4},
        "search_space": SPACE,
        "objective": {"metric": "val_accuracy", "mode": "max"},
        **changes,
    }
    return Study(
        study_id="s-plots",
        name="plots",
        spec=StudySpec.parse(spec),
        state=StudyState.SUCCEEDED,
        created_at=NOW,
        updated_at=NOW,
        trials=trials,
    )


def sampled(count: int, metrics: dict[str, tuple[float, float]], conditional: bool = False) -> list[Trial]:
    """`count` completed trials over SPACE (with the fixed epochs in their config, as the store
    has them), each metric drawn from its range; a stopped and a failed trial after them."""
    draw = random.Random(0)
    trials = []
    for number in range(count):
        config: dict[str, Any] = {
            "epochs": 4,
            "lr": 10 ** draw.uniform(-3, -1),
            "hidden_size": draw.randint(8, 64),
            "optimizer": draw.choice(["adam", "sgd"]),
        }
        if conditional and config["optimizer"] == "sgd":
            config["momentum"] = draw.uniform(0.5, 0.99)
        values = {name: draw.uniform(low, high) for name, (low, high) in metrics.items()}
        trials.append(Trial(trial_id=f"t{number}", state=TrialState.COMPLETED, config=config, metrics=values, epochs=4))
    trials.append(Trial(trial_id="stopped", state=TrialState.STOPPED_EARLY, config=trials[0].config, epochs=1))
    trials.append(Trial(trial_id="failed", state=TrialState.ERROR, config=trials[0].config, error="boom"))
    return trials


def check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.is_file() and path.stat().st_size > 5_000, path
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert 200 <= width <= 4000 and 200 <= height <= 4000, (path.name, pixels.shape)
    assert pixels.std() > 0.01, f"{path.name} is blank"


def check_html(written: WrittenPlots, titles: list[str]) -> None:
    assert written.html is not None and written.html.name == HTML_FILE
    page = written.html.read_text(encoding="utf-8")
    for title in titles:
        assert title in page
    # One figure per PNG, and plotly.js once: the page opens offline and stays one file.
    assert page.count("Plotly.newPlot(") == len(written.pngs)
    assert page.count("plotly.js v") == 1


def names(written: WrittenPlots) -> set[str]:
    return {path.stem for path in written.pngs}


def test_one_objective_draws_history_importances_and_parallel_coordinates(tmp_path: Path) -> None:
    study = make_study(sampled(8, {"val_accuracy": (0.5, 0.95)}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's experimental-feature warnings stay quiet
        written = write_plots(study, tmp_path / "out")
    assert names(written) == {"history", "importances", "parallel"}
    assert written.skipped == {}
    for png in written.pngs:
        check_png(png)
    check_html(written, ["Optimisation history of val_accuracy (max)", "Parameter importances", "Parallel coordinates"])
    assert set(written.paths) == {*written.pngs, written.html}


def test_two_objectives_draw_each_objective_and_the_pareto_front(tmp_path: Path) -> None:
    goals = [{"metric": "val_accuracy", "mode": "max"}, {"metric": "val_loss", "mode": "min"}]
    study = make_study(
        sampled(10, {"val_accuracy": (0.5, 0.95), "val_loss": (0.1, 1.5)}), objective=None, objectives=goals
    )
    written = write_plots(study, tmp_path)
    kinds = ("history", "importances", "parallel")
    assert names(written) == {f"{kind}-{metric}" for kind in kinds for metric in ("val_accuracy", "val_loss")} | {
        "pareto-front"
    }
    for png in written.pngs:
        check_png(png)
    check_html(written, ["Pareto front of val_accuracy and val_loss", "Optimisation history of val_loss (min)"])


def test_a_conditional_space_gives_each_trial_only_its_own_parameters(tmp_path: Path) -> None:
    space = {**SPACE, "momentum": {"float": {"low": 0.5, "high": 0.99}, "when": {"optimizer": ["sgd"]}}}
    study = make_study(sampled(10, {"val_accuracy": (0.5, 0.95)}, conditional=True), search_space=space)
    trials = optuna_study(study).trials
    assert [t.user_attrs["trial_id"] for t in trials] == [t.trial_id for t in study.trials]  # numbers are the study's
    for trial in trials:
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd")
        assert set(trial.distributions) == set(trial.params)  # the fixed epochs are no parameter
    assert [t.state.name for t in trials[-2:]] == ["PRUNED", "FAIL"]
    written = write_plots(study, tmp_path)
    assert names(written) == {"history", "importances", "parallel"}
    for png in written.pngs:
        check_png(png)


def test_too_few_trials_leave_importances_out_with_the_reason(tmp_path: Path) -> None:
    written = write_plots(make_study(sampled(1, {"val_accuracy": (0.5, 0.95)})), tmp_path)
    assert names(written) == {"history", "parallel"}
    assert "needs 2 completed trial(s)" in written.skipped["importances"]
    check_html(written, ["Not drawn", "importances"])


def test_a_single_tuned_parameter_has_no_importances_to_rank(tmp_path: Path) -> None:
    lr_only = {"lr": SPACE["lr"]}
    written = write_plots(make_study(sampled(5, {"val_accuracy": (0.5, 0.95)}), search_space=lr_only), tmp_path)
    assert "only one parameter" in written.skipped["importances"]
    assert names(written) == {"history", "parallel"}


def test_no_completed_trial_writes_nothing_and_raises_nothing(tmp_path: Path) -> None:
    nan = [
        Trial(trial_id="t0", state=TrialState.COMPLETED, config={"lr": 0.01}, metrics={"val_accuracy": float("nan")})
    ]
    written = write_plots(make_study(nan), tmp_path / "none")
    assert written.paths == [] and not (tmp_path / "none").exists()
    assert "needs 1 completed trial(s)" in written.skipped["history"]


def test_four_objectives_leave_the_pareto_front_out() -> None:
    metrics = ["val_accuracy", "val_loss", "train_loss", "epoch_s"]
    goals = [{"metric": m, "mode": "max" if m == "val_accuracy" else "min"} for m in metrics]
    study = make_study(sampled(6, dict.fromkeys(metrics, (0.1, 0.9))), objective=None, objectives=goals)
    plots, skipped = plan_plots(study, optuna_study(study))
    assert "2 or 3 objectives" in skipped["pareto-front"]
    assert len(plots) == 12  # history, importances and parallel coordinates of each


@pytest.mark.parametrize("mode", ["max", "min"])
def test_importances_rank_what_makes_an_objective_better_not_worse(mode: str) -> None:
    """Optuna's PED-ANOVA ranks what makes a target low, so a target to maximise is negated.
    Here lr decides the best trials and hidden_size the worst: lr must rank first either way."""
    draw = random.Random(1)
    trials = []
    for number in range(60):
        lr, hidden_size = 10 ** draw.uniform(-3, -1), draw.randint(8, 64)
        score = (1.0 if 0.01 < lr < 0.03 else 0.5) - (0.4 if hidden_size < 14 else 0.0) + draw.uniform(0, 0.01)
        config: dict[str, Any] = {"lr": lr, "hidden_size": hidden_size, "optimizer": "adam"}
        metrics = {"val_accuracy": score if mode == "max" else -score, "val_loss": draw.uniform(0.1, 1.0)}
        trials.append(Trial(trial_id=f"t{number}", state=TrialState.COMPLETED, config=config, metrics=metrics))
    goals = [{"metric": "val_accuracy", "mode": mode}, {"metric": "val_loss", "mode": "min"}]
    study = make_study(trials, objective=None, objectives=goals)
    optuna_trials = optuna_study(study)
    plots, _ = plan_plots(study, optuna_trials)
    (importances,) = [p for p in plots if p.name == "importances-val_accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = optuna.importance.get_param_importances(optuna_trials, target=importances.options["target"])
    assert next(iter(ranked)) == "lr", ranked


def test_anneal_plot_writes_into_anneal_plots_of_the_study_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from anneal import cli

    class OneStudy:
        def __enter__(self) -> OneStudy:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def get_study(self, study_id: str) -> Study:
            return make_study(sampled(4, {"val_accuracy": (0.5, 0.95)}))

    printed = io.StringIO()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_client", lambda args: OneStudy())
    monkeypatch.setattr(cli, "out", Console(file=printed, width=20))  # narrow: paths still print whole
    assert cli.main(["plot", "s-plots"]) == 0
    expected = {Path("anneal-plots/s-plots") / f"{name}.png" for name in ("history", "importances", "parallel")}
    assert set(map(Path, printed.getvalue().split())) == expected | {Path("anneal-plots/s-plots") / HTML_FILE}


def test_the_driver_logs_the_plots_under_the_open_parent_run_and_a_failure_changes_nothing(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from anneal.types import EventKind
    from cluster.driver.run import PLOTS_ARTIFACT_PATH, log_plots
    from cluster.store.store import Store
    from cluster.tracking.tracker import MlflowTracker

    hand = make_study(sampled(4, {"val_accuracy": (0.5, 0.95)}))
    store = Store(f"sqlite:///{tmp_path}/anneal.db")
    study = store.create_study(hand.spec)
    store.record_trials(study.study_id, [(t, EventKind.TRIAL_ENDED, NOW) for t in hand.trials])
    tracker = MlflowTracker(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "mlartifacts"))
    tracker.start_study(study.study_id, hand.spec.name, hand.spec.to_yaml(), {})
    log_plots(SimpleNamespace(store=store, tracker=tracker, study_id=study.study_id))  # type: ignore[arg-type]
    logged = tracker.client.list_artifacts(tracker.parent_run_id, PLOTS_ARTIFACT_PATH)
    assert {Path(a.path).name for a in logged} == {"history.png", "importances.png", "parallel.png", HTML_FILE}
    assert tracker.client.get_run(tracker.parent_run_id).info.status == "RUNNING"  # its end is the study's

    class Unreachable:
        def get_study(self, study_id: str) -> Study:
            raise ConnectionError("the store went away")

    log_plots(SimpleNamespace(store=Unreachable(), tracker=tracker, study_id=study.study_id))  # type: ignore[arg-type]
