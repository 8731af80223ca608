"""MLflow: one experiment per study, a parent run for it, a child run per trial, the best
model's artifacts and its registered versions (`tracker`).

A library that a study's driver and its trial writer process run to write, and that the
server runs to open the tracking store at start-up.
"""
