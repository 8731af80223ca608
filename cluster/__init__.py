"""The control plane on the Ray cluster, one subpackage per process that runs the code:

- `server/`: the gRPC server (`anneal serve`): auth, the study and deployment domain, the
  driver keeper, Ray job submission, Predict routing and batching.
- `driver/`: one study's driver, a Ray job (`anneal run`): Tune and Optuna wiring, the
  standby wait and warm-up, resume, recording, and its child process, the trial writer.
- `trial/`: what runs inside each trial's Ray actor: the trial function and its context.
- `serving/`: model packages, deploying them to Ray Serve, and the Serve replica.
- `store/` and `tracking/`: the store (SQL) and MLflow, which the server, the drivers and
  the writer all read and write.
- `local/`: the embedded `up`/`down`, the demo, and the `anneal` command's server commands.

`environment.py` is the one module every process shares. ARCHITECTURE.md has the map.

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
