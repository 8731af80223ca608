"""The control plane on the Ray cluster: gRPC server, store, study driver, Tune/Optuna
wiring, MLflow tracking and Serve deployments.

Ray reads RAY_AUTH_MODE once, when it is first imported. The clusters anneal talks
to keep token authentication on, so the mode is set here, before any module of
this package imports ray.
"""

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")
