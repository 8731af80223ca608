"""Inside a data-parallel trial's Ray Train workers: the trainer's context on each rank, and the
epochs rank 0 hands to its trial."""
