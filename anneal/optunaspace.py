"""A spec's search space as Optuna's distributions: what the driver's sampler draws from, and
what the plots of a study (`anneal.plots`) give Optuna to read its trials' parameters by.

It needs Optuna, a dependency of the server's extra: only code that runs with it imports this.
"""

from __future__ import annotations

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from anneal.spec import StudySpec


def optuna_space(spec: StudySpec) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for name, domain in spec.search_space.items():
        if domain.float_range is not None:
            r = domain.float_range
            space[name] = FloatDistribution(r.low, r.high, log=r.log)
        elif domain.int_range is not None:
            i = domain.int_range
            space[name] = IntDistribution(i.low, i.high, log=i.log)
        else:
            space[name] = CategoricalDistribution(list(domain.categorical or []))
    return space
