"""A warm trial worker's set-up: the imports a trial needs, done before it takes one.

A standby driver has Ray start worker processes for its job ahead of its study
(`cluster.driver.warm`); the jobs the server submits name `warm_worker` as their worker
set-up hook, so each such process runs it and then waits idle. Tune's trial actors are
placed on them and start in milliseconds.
"""

from __future__ import annotations

import logging

from cluster.trial.trainenv import is_control_process

log = logging.getLogger("anneal.warm")

# The worker set-up hook of the jobs the server submits (a runtime_env field).
SETUP_HOOK = "cluster.trial.warm.warm_worker"


def warm_worker() -> None:
    """Runs in each new worker process of a study driver's job before it takes work.

    Imports only: CUDA must stay uninitialised, because Ray makes a trial's GPUs visible
    (CUDA_VISIBLE_DEVICES) when it hands the worker its actor, and CUDA reads that once."""
    try:
        if is_control_process():  # what Train's controller unpickles and runs, and the channel
            import ray.train.torch.config  # noqa: F401
            import ray.train.v2._internal.execution.controller.controller  # noqa: F401
            import ray.util.queue  # noqa: F401

            import cluster.trial.announce  # noqa: F401

            return
        import torch._dynamo  # (torch.optim imports it at the first optimiser)

        import cluster.trial.function  # noqa: F401  (Ray Tune's function trainable, the trial context)
        from trainers.builtins import BUILT_INS
        from trainers.contract import import_target

        for info in BUILT_INS.values():
            import_target(info.target)
        if torch.cuda.is_initialized():
            log.warning("warming this trial worker initialised CUDA: its trial may see every GPU of the node")
    except Exception:  # a failed warm-up must not fail the worker: the trial reports the real error
        log.warning("could not warm this trial worker", exc_info=True)
