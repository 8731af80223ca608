"""Workloads anneal tunes: the trainer contract, the registry and built-in trainers."""

from trainers.contract import DataShape, ParamInfo, Splits, TrainContext, Trainer, TrainerInfo

__all__ = ["DataShape", "ParamInfo", "Splits", "TrainContext", "Trainer", "TrainerInfo"]
