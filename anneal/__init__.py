"""anneal: distributed training and hyperparameter tuning as a service.

This package is the light client side: it never imports ray, torch or mlflow.
"""

from anneal.client import Client
from anneal.errors import (
    AnnealError,
    ConfigurationError,
    Conflict,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    InvalidSpec,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from anneal.spec import StudySpec
from anneal.types import Deployment, Prediction, Study, StudyEvent, StudyState, Trial, TrialState

__all__ = [
    "AnnealError",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Deployment",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "InvalidSpec",
    "NotFound",
    "Prediction",
    "ResourceExhausted",
    "Study",
    "StudyEvent",
    "StudySpec",
    "StudyState",
    "Trial",
    "TrialState",
    "Unauthenticated",
    "Unavailable",
]
