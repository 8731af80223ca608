"""The control plane on the Ray cluster: gRPC server, store, study driver, Tune/Optuna
wiring, MLflow tracking and Serve deployments.

Ray reads RAY_AUTH_MODE once, when it is first imported. The clusters anneal talks
to keep token authentication on, so the mode is set here, before any module of
this package imports ray.

Tune's automatic CSV, JSON and TensorBoard loggers write every result again on the
driver's event loop (a third of its time in a profile of short trials); anneal
records results in MLflow and the store, so they are off.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
