"""Pareto fronts over several objectives: which points no other point dominates, and the
ranking by non-dominated fronts that multi-objective early stopping keeps trials by.

A point holds one value per objective, each oriented so that larger is better (`oriented`
negates the objectives to minimise), so one rule serves every mix of modes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from anneal.spec import Objective

Point = tuple[float, ...]


def oriented(metrics: Mapping[str, float], goals: Sequence[Objective]) -> Point | None:
    """The metrics as a point to maximise on every axis; None when one is missing or not finite."""
    values = []
    for goal in goals:
        value = metrics.get(goal.metric)
        if value is None or not math.isfinite(value):
            return None
        values.append(value if goal.mode == "max" else -value)
    return tuple(values)


def dominates(a: Point, b: Point) -> bool:
    """a is at least as good as b on every objective and better on one."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def non_dominated(points: Sequence[Point]) -> list[int]:
    """The indices of the points no other point dominates, best first by the first objective,
    then the next (equal points are all kept)."""
    order = sorted(range(len(points)), key=lambda i: points[i], reverse=True)
    front: list[int] = []
    for index in order:
        # Sorted best first, a point can only be dominated by one before it, and one that is
        # dominated is dominated by a member of the front already found.
        if not any(dominates(points[kept], points[index]) for kept in front):
            front.append(index)
    return front


def fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the front, then the front of what is left, and so on."""
    left = list(range(len(points)))
    found = []
    while left:
        front = [left[i] for i in non_dominated([points[j] for j in left])]
        found.append(front)
        chosen = set(front)
        left = [i for i in left if i not in chosen]
    return found


def crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each point of one front: how much room lies around it
    along every objective (the ends of each axis get infinity), so spread-out points rank first."""
    distance = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for axis in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][axis])
        low, high = points[ordered[0]][axis], points[ordered[-1]][axis]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for before, index, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            distance[index] += (points[after][axis] - points[before][axis]) / (high - low)
    return distance


def ranked(points: Sequence[Point]) -> list[int]:
    """Every index, best first: by front, and within a front by crowding distance (larger first)."""
    order: list[int] = []
    for front in fronts(points):
        room = crowding(points, front)
        order.extend(sorted(front, key=lambda i: -room[i]))
    return order
