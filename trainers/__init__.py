"""Workloads anneal tunes: the trainer contract, the registry and built-in trainers."""

from anneal.types import Task
from trainers.contract import DataInfo, DataShape, ParamInfo, Splits, TrainContext, Trainer, TrainerInfo

__all__ = ["DataInfo", "DataShape", "ParamInfo", "Splits", "Task", "TrainContext", "Trainer", "TrainerInfo"]
