"""What runs inside each trial's Ray actor, a worker process of the study driver's Ray job.

The function Tune runs per trial (`function`), the trainer's context in it (`context`), and
the set-up that warms a worker before it takes a trial (`warm`). Only torch, Ray Tune and
the trainer are imported here: Optuna, MLflow and the store stay in the driver.
"""
