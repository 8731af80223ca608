"""A study's driver process: a Ray job (`anneal run`) that runs one study from PENDING to its end.

It owns the run of its study: the standby wait and warm-up (`standby`, `warm`,
`supervision`), the Tune and Optuna wiring (`tuning`, `fit`), resuming after a dead driver
(`resume`), what Tune says of each trial (`recording`) and the end of the study (`finish`),
all in `run`. Its child process, the trial writer (`writer`), records trials in the store
and MLflow.

This package's `__init__` stays empty: `supervision` must be importable before the slow imports.
"""
