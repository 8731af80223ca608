"""Plots of a study for people to look at: how its objectives improved trial by trial, which
parameters mattered, how parameter values map to results and, with several objectives, their
Pareto front.

A study's trials become an in-memory Optuna study, which Optuna's own plots read. Each plot is
written as a PNG (Optuna's matplotlib back-end) and all of them together as one HTML page of
interactive figures (its plotly back-end): one file that carries plotly.js once, so it opens
offline (an air-gapped cluster's MLflow included) and is one download. The driver logs them
under `plots/` of the study's MLflow parent run; `anneal plot` writes them on a client.

Optuna, plotly and matplotlib come with the server's extra. Optuna is imported here, the other
two only while plotting: importing this module loads neither.
"""

from __future__ import annotations

import html
import logging
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, create_trial
from optuna.trial import TrialState as OptunaState

from anneal.optunaspace import optuna_space
from anneal.spec import Objective
from anneal.types import Study, Trial, TrialState

log = logging.getLogger("anneal.plots")

HTML_FILE = "plots.html"
PNG_DPI = 110
# Optuna's Pareto front plot draws two or three objectives; a study may have up to four.
PARETO_OBJECTIVES = (2, 3)

# How Optuna holds each of anneal's ended trials: one stopped early as pruned, a failed or
# cancelled one as failed (so trial numbers in the plots are the study's own).
_OPTUNA_STATES = {
    TrialState.COMPLETED: OptunaState.COMPLETE,
    TrialState.STOPPED_EARLY: OptunaState.PRUNED,
    TrialState.ERROR: OptunaState.FAIL,
    TrialState.CANCELLED: OptunaState.FAIL,
}


@dataclass(frozen=True)
class Plot:
    """One figure, drawn by both of Optuna's back-ends: they share each function's name and arguments."""

    name: str  # the PNG's file name without `.png`, e.g. "history" or "importances-val_loss"
    title: str  # its heading on the HTML page
    function: str  # e.g. "plot_optimization_history"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WrittenPlots:
    """What `write_plots` wrote, and why each plot it left out was left out."""

    html: Path | None
    pngs: list[Path]
    skipped: dict[str, str]  # plot name -> reason

    @property
    def paths(self) -> list[Path]:
        return [*self.pngs, *([self.html] if self.html is not None else [])]


def write_plots(study: Study, directory: Path) -> WrittenPlots:
    """Writes the study's plots into `directory` (made if missing): a PNG per plot and one HTML
    page of them all. A plot that cannot be drawn is left out with its reason (logged and
    returned), never raised; nothing is written when no plot can be drawn."""
    with _quiet():
        trials = optuna_study(study)
        plots, skipped = plan_plots(study, trials)
        for name, reason in skipped.items():
            log.info("study %s: plot %s not drawn: %s", study.study_id, name, reason)
        drawn, pngs = _draw(study, plots, trials, directory, skipped)
    if not drawn:
        return WrittenPlots(None, [], skipped)
    page = directory / HTML_FILE
    page.write_text(_html_page(study, drawn, skipped), encoding="utf-8")
    return WrittenPlots(page, pngs, skipped)


# ---------------------------------------------------------------- the study as Optuna's


def optuna_study(study: Study) -> optuna.Study:
    """An in-memory Optuna study holding the study's ended trials, in their order, with their
    tuned parameters (each trial only those it has: a conditional space leaves some out) and,
    for a completed trial that reported every objective, its values."""
    goals = study.spec.goals
    directions = [StudyDirection.MAXIMIZE if goal.mode == "max" else StudyDirection.MINIMIZE for goal in goals]
    trials = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=0))
    space = optuna_space(study.spec)
    for trial in study.trials:
        frozen = _frozen_trial(trial, goals, space)
        if frozen is not None:
            trials.add_trial(frozen)
    return trials


def _frozen_trial(trial: Trial, goals: Sequence[Objective], space: dict[str, BaseDistribution]) -> FrozenTrial | None:
    state = _OPTUNA_STATES.get(trial.state)
    if state is None:  # still running: nothing to show yet
        return None
    values = _objective_values(trial, goals) if state is OptunaState.COMPLETE else None
    if state is OptunaState.COMPLETE and values is None:
        state = OptunaState.FAIL  # as Optuna itself holds a trial without a finite objective
    params = {name: value for name, value in trial.config.items() if name in space}
    try:
        return create_trial(
            params=params,
            distributions={name: space[name] for name in params},
            values=values,
            state=state,
            user_attrs={"trial_id": trial.trial_id},
        )
    except ValueError as error:  # e.g. a value outside its domain: the other trials still plot
        log.warning("trial %s left out of the plots: %s", trial.trial_id, error)
        return None


def _objective_values(trial: Trial, goals: Sequence[Objective]) -> list[float] | None:
    values = [trial.metrics.get(goal.metric, math.nan) for goal in goals]
    return values if all(math.isfinite(value) for value in values) else None


# ---------------------------------------------------------------- which plots


def plan_plots(study: Study, trials: optuna.Study) -> tuple[list[Plot], dict[str, str]]:
    """The plots these trials make, and the reason for each one they cannot: with several
    objectives, history, importances and parallel coordinates for each, and the Pareto front."""
    goals = study.spec.goals
    several = len(goals) > 1
    completed = trials.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
    tuned = {name for trial in completed for name in trial.params}
    plots: list[Plot] = []
    skipped: dict[str, str] = {}
    for index, goal in enumerate(goals):
        suffix = f"-{_file_part(goal.metric)}" if several else ""
        of = f" of {goal.metric} ({goal.mode})"
        value = {"target": _Value(index), "target_name": goal.metric} if several else {"target_name": goal.metric}
        # PED-ANOVA, Optuna's importance evaluator, ranks what makes a given target low.
        low = {"target": _Value(index, negate=goal.mode == "max"), "target_name": goal.metric} if several else value
        candidates = [
            (Plot(f"history{suffix}", "Optimisation history" + of, "plot_optimization_history", value), 1),
            (Plot(f"importances{suffix}", "Parameter importances" + of, "plot_param_importances", low), 2),
            (Plot(f"parallel{suffix}", "Parallel coordinates" + of, "plot_parallel_coordinate", value), 1),
        ]
        for plot, least in candidates:
            reason = _why_not(plot, len(completed), len(tuned), least)
            if reason:
                skipped[plot.name] = reason
            else:
                plots.append(plot)
    if several:
        names = [goal.metric for goal in goals]
        title = "Pareto front of " + " and ".join(names)
        pareto = Plot("pareto-front", title, "plot_pareto_front", {"target_names": names})
        reason = _why_not(pareto, len(completed), len(tuned), 1)
        if not reason and len(goals) not in PARETO_OBJECTIVES:
            reason = f"Optuna draws the Pareto front of 2 or 3 objectives; this study has {len(goals)}"
        if reason:
            skipped[pareto.name] = reason
        else:
            plots.append(pareto)
    return plots, skipped


def _why_not(plot: Plot, completed: int, tuned: int, least: int) -> str:
    if completed < least:
        return f"it needs {least} completed trial(s) with every objective's value; the study has {completed}"
    if plot.function == "plot_param_importances" and tuned < 2:
        return "only one parameter was tuned: all the importance is its own"
    return ""


@dataclass(frozen=True)
class _Value:
    """One objective's value of a trial, as the plots' `target` (a class, not a lambda, so the
    index is bound and the negation named)."""

    index: int
    negate: bool = False

    def __call__(self, trial: FrozenTrial) -> float:
        value = trial.values[self.index]
        return -value if self.negate else value


def _file_part(name: str) -> str:
    """A metric's name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


# ---------------------------------------------------------------- drawing


def _draw(
    study: Study, plots: list[Plot], trials: optuna.Study, directory: Path, skipped: dict[str, str]
) -> tuple[list[tuple[Plot, Any]], list[Path]]:
    """Each plot's interactive figure and PNG; one Optuna cannot draw joins `skipped`."""
    drawn: list[tuple[Plot, Any]] = []
    pngs: list[Path] = []
    if not plots:
        return drawn, pngs
    directory.mkdir(parents=True, exist_ok=True)
    pyplot = _pyplot()
    for plot in plots:
        try:
            figure = _interactive(plot, trials)
            pngs.append(_save_png(plot, trials, directory, pyplot))
        except Exception as error:  # these trials are beyond that plot: the others are still drawn
            log.warning("study %s: Optuna could not draw plot %s", study.study_id, plot.name, exc_info=True)
            skipped[plot.name] = f"Optuna could not draw it: {error!r}"
            continue
        drawn.append((plot, figure))
    return drawn, pngs


def _interactive(plot: Plot, trials: optuna.Study) -> Any:
    import optuna.visualization as interactive  # plotly

    return getattr(interactive, plot.function)(trials, **plot.options)


def _save_png(plot: Plot, trials: optuna.Study, directory: Path, pyplot: Any) -> Path:
    import optuna.visualization.matplotlib as static

    path = directory / f"{plot.name}.png"
    # Optuna's matplotlib plots set a style globally; the context gives this process its own back.
    with pyplot.rc_context():
        axes = getattr(static, plot.function)(trials, **plot.options)
        try:
            axes.figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
        finally:
            pyplot.close(axes.figure)
    return path


def _pyplot() -> Any:
    """matplotlib's pyplot, on the Agg back-end unless this process chose one (a notebook's, say):
    the plots go to files, and a driver has no display to open a window on."""
    import matplotlib
    import matplotlib.pyplot as pyplot

    # pyplot's own (private) test: None until a back-end is set or the first figure resolves one.
    chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", lambda: None)()
    if chosen is None:
        matplotlib.use("Agg")
    return pyplot


def _html_page(study: Study, drawn: list[tuple[Plot, Any]], skipped: dict[str, str]) -> str:
    sections = []
    for index, (plot, figure) in enumerate(drawn):
        # plotly.js goes in once, with the first figure: the page is one file that opens offline.
        div = figure.to_html(full_html=False, include_plotlyjs=index == 0)
        sections.append(f"<h2>{html.escape(plot.title)}</h2>\n{div}")
    if skipped:
        items = "".join(f"<li>{html.escape(name)}: {html.escape(why)}</li>" for name, why in skipped.items())
        sections.append(f"<h2>Not drawn</h2>\n<ul>{items}</ul>")
    title = html.escape(f"{study.name} ({study.study_id})")
    completed = sum(1 for trial in study.trials if trial.state is TrialState.COMPLETED)
    goals = html.escape(", ".join(f"{goal.metric} ({goal.mode})" for goal in study.spec.goals))
    # No state: a driver draws the page before it records the study's end.
    summary = f"{completed} of {len(study.trials)} trials completed; objectives {goals}"
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n</head>\n'
        f"<body>\n<h1>{title}</h1>\n<p>{summary}</p>\n{body}\n</body>\n</html>\n"
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Notes that say nothing to someone reading plots: that Optuna's matplotlib plots are
    experimental, that PED-ANOVA ranks what makes a target low (the targets here are oriented
    so), that a study was created, and matplotlib's that an axis every trial shares a value on
    (one trial's, say) is widened."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes", category=UserWarning)
            warnings.filterwarnings("ignore", message="Attempting to set identical low and high", category=UserWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)
