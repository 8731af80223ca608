import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_PARQUET: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CSV: _ClassVar[DatasetFormat]

class ObjectiveMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECTIVE_MODE_UNSPECIFIED: _ClassVar[ObjectiveMode]
    OBJECTIVE_MODE_MAX: _ClassVar[ObjectiveMode]
    OBJECTIVE_MODE_MIN: _ClassVar[ObjectiveMode]

class Sampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLER_UNSPECIFIED: _ClassVar[Sampler]
    SAMPLER_TPE: _ClassVar[Sampler]
    SAMPLER_RANDOM: _ClassVar[Sampler]
    SAMPLER_GP: _ClassVar[Sampler]
    SAMPLER_CMAES: _ClassVar[Sampler]
    SAMPLER_NSGA2: _ClassVar[Sampler]

class AshaType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASHA_TYPE_UNSPECIFIED: _ClassVar[AshaType]
    ASHA_TYPE_STOPPING: _ClassVar[AshaType]
    ASHA_TYPE_PROMOTION: _ClassVar[AshaType]

class StudyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STUDY_STATE_UNSPECIFIED: _ClassVar[StudyState]
    STUDY_STATE_PENDING: _ClassVar[StudyState]
    STUDY_STATE_RUNNING: _ClassVar[StudyState]
    STUDY_STATE_SUCCEEDED: _ClassVar[StudyState]
    STUDY_STATE_FAILED: _ClassVar[StudyState]
    STUDY_STATE_CANCELLED: _ClassVar[StudyState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETED: _ClassVar[TrialState]
    TRIAL_STATE_STOPPED_EARLY: _ClassVar[TrialState]
    TRIAL_STATE_ERROR: _ClassVar[TrialState]
    TRIAL_STATE_CANCELLED: _ClassVar[TrialState]
    TRIAL_STATE_PAUSED: _ClassVar[TrialState]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_STUDY_STARTED: _ClassVar[EventKind]
    EVENT_KIND_TRIAL_STARTED: _ClassVar[EventKind]
    EVENT_KIND_TRIAL_RESULT: _ClassVar[EventKind]
    EVENT_KIND_TRIAL_ENDED: _ClassVar[EventKind]
    EVENT_KIND_STUDY_ENDED: _ClassVar[EventKind]
    EVENT_KIND_TRIAL_PAUSED: _ClassVar[EventKind]

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DEPLOYING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_RUNNING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DELETED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_UNHEALTHY: _ClassVar[DeploymentState]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_CLASSIFICATION: _ClassVar[Task]
    TASK_REGRESSION: _ClassVar[Task]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_PARQUET: DatasetFormat
DATASET_FORMAT_CSV: DatasetFormat
OBJECTIVE_MODE_UNSPECIFIED: ObjectiveMode
OBJECTIVE_MODE_MAX: ObjectiveMode
OBJECTIVE_MODE_MIN: ObjectiveMode
SAMPLER_UNSPECIFIED: Sampler
SAMPLER_TPE: Sampler
SAMPLER_RANDOM: Sampler
SAMPLER_GP: Sampler
SAMPLER_CMAES: Sampler
SAMPLER_NSGA2: Sampler
ASHA_TYPE_UNSPECIFIED: AshaType
ASHA_TYPE_STOPPING: AshaType
ASHA_TYPE_PROMOTION: AshaType
STUDY_STATE_UNSPECIFIED: StudyState
STUDY_STATE_PENDING: StudyState
STUDY_STATE_RUNNING: StudyState
STUDY_STATE_SUCCEEDED: StudyState
STUDY_STATE_FAILED: StudyState
STUDY_STATE_CANCELLED: StudyState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETED: TrialState
TRIAL_STATE_STOPPED_EARLY: TrialState
TRIAL_STATE_ERROR: TrialState
TRIAL_STATE_CANCELLED: TrialState
TRIAL_STATE_PAUSED: TrialState
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_STUDY_STARTED: EventKind
EVENT_KIND_TRIAL_STARTED: EventKind
EVENT_KIND_TRIAL_RESULT: EventKind
EVENT_KIND_TRIAL_ENDED: EventKind
EVENT_KIND_STUDY_ENDED: EventKind
EVENT_KIND_TRIAL_PAUSED: EventKind
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_DEPLOYING: DeploymentState
DEPLOYMENT_STATE_RUNNING: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_STATE_DELETED: DeploymentState
DEPLOYMENT_STATE_UNHEALTHY: DeploymentState
TASK_UNSPECIFIED: Task
TASK_CLASSIFICATION: Task
TASK_REGRESSION: Task

class Scalar(_message.Message):
    __slots__ = ("string_value", "int_value", "float_value", "bool_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    float_value: float
    bool_value: bool
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class FloatDomain(_message.Message):
    __slots__ = ("low", "high", "log")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    log: bool
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ..., log: _Optional[bool] = ...) -> None: ...

class IntDomain(_message.Message):
    __slots__ = ("low", "high", "log")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    low: int
    high: int
    log: bool
    def __init__(self, low: _Optional[int] = ..., high: _Optional[int] = ..., log: _Optional[bool] = ...) -> None: ...

class CategoricalDomain(_message.Message):
    __slots__ = ("choices",)
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    choices: _containers.RepeatedCompositeFieldContainer[Scalar]
    def __init__(self, choices: _Optional[_Iterable[_Union[Scalar, _Mapping]]] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "float", "int", "categorical", "when")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    float: FloatDomain
    int: IntDomain
    categorical: CategoricalDomain
    when: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, name: _Optional[str] = ..., float: _Optional[_Union[FloatDomain, _Mapping]] = ..., int: _Optional[_Union[IntDomain, _Mapping]] = ..., categorical: _Optional[_Union[CategoricalDomain, _Mapping]] = ..., when: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("parent", "values")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    values: _containers.RepeatedCompositeFieldContainer[Scalar]
    def __init__(self, parent: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Scalar, _Mapping]]] = ...) -> None: ...

class DatasetSpec(_message.Message):
    __slots__ = ("name", "validation_fraction", "test_fraction", "split_seed", "path", "format", "label", "features")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    TEST_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SPLIT_SEED_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    validation_fraction: float
    test_fraction: float
    split_seed: int
    path: str
    format: DatasetFormat
    label: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., validation_fraction: _Optional[float] = ..., test_fraction: _Optional[float] = ..., split_seed: _Optional[int] = ..., path: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., label: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class Objective(_message.Message):
    __slots__ = ("metric", "mode")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    metric: str
    mode: ObjectiveMode
    def __init__(self, metric: _Optional[str] = ..., mode: _Optional[_Union[ObjectiveMode, str]] = ...) -> None: ...

class SearchSpec(_message.Message):
    __slots__ = ("sampler", "seed", "warm_start")
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WARM_START_FIELD_NUMBER: _ClassVar[int]
    sampler: Sampler
    seed: int
    warm_start: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sampler: _Optional[_Union[Sampler, str]] = ..., seed: _Optional[int] = ..., warm_start: _Optional[_Iterable[str]] = ...) -> None: ...

class AshaScheduler(_message.Message):
    __slots__ = ("grace_period", "reduction_factor", "type")
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REDUCTION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    grace_period: int
    reduction_factor: int
    type: AshaType
    def __init__(self, grace_period: _Optional[int] = ..., reduction_factor: _Optional[int] = ..., type: _Optional[_Union[AshaType, str]] = ...) -> None: ...

class MedianScheduler(_message.Message):
    __slots__ = ("grace_period", "min_samples_required")
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    grace_period: int
    min_samples_required: int
    def __init__(self, grace_period: _Optional[int] = ..., min_samples_required: _Optional[int] = ...) -> None: ...

class NoScheduler(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SchedulerSpec(_message.Message):
    __slots__ = ("asha", "median", "none")
    ASHA_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    asha: AshaScheduler
    median: MedianScheduler
    none: NoScheduler
    def __init__(self, asha: _Optional[_Union[AshaScheduler, _Mapping]] = ..., median: _Optional[_Union[MedianScheduler, _Mapping]] = ..., none: _Optional[_Union[NoScheduler, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_trials", "max_concurrent_trials", "time_budget_s")
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TRIALS_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_S_FIELD_NUMBER: _ClassVar[int]
    max_trials: int
    max_concurrent_trials: int
    time_budget_s: float
    def __init__(self, max_trials: _Optional[int] = ..., max_concurrent_trials: _Optional[int] = ..., time_budget_s: _Optional[float] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpu", "gpu", "workers")
    CPU_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    gpu: float
    workers: int
    def __init__(self, cpu: _Optional[float] = ..., gpu: _Optional[float] = ..., workers: _Optional[int] = ...) -> None: ...

class FailurePolicy(_message.Message):
    __slots__ = ("max_retries", "checkpoint_interval_s")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    checkpoint_interval_s: float
    def __init__(self, max_retries: _Optional[int] = ..., checkpoint_interval_s: _Optional[float] = ...) -> None: ...

class DeployPolicy(_message.Message):
    __slots__ = ("auto", "replicas", "max_batch_size", "min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s")
    AUTO_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ONGOING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    DOWNSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    auto: bool
    replicas: int
    max_batch_size: int
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float
    def __init__(self, auto: _Optional[bool] = ..., replicas: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_ongoing_requests: _Optional[float] = ..., upscale_delay_s: _Optional[float] = ..., downscale_delay_s: _Optional[float] = ...) -> None: ...

class StudySpec(_message.Message):
    __slots__ = ("name", "trainer", "dataset", "params", "search_space", "objective", "search", "scheduler", "budget", "resources", "failure", "deploy", "objectives")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Scalar
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRAINER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SPACE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DEPLOY_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    name: str
    trainer: str
    dataset: DatasetSpec
    params: _containers.MessageMap[str, Scalar]
    search_space: _containers.RepeatedCompositeFieldContainer[Parameter]
    objective: Objective
    search: SearchSpec
    scheduler: SchedulerSpec
    budget: Budget
    resources: Resources
    failure: FailurePolicy
    deploy: DeployPolicy
    objectives: _containers.RepeatedCompositeFieldContainer[Objective]
    def __init__(self, name: _Optional[str] = ..., trainer: _Optional[str] = ..., dataset: _Optional[_Union[DatasetSpec, _Mapping]] = ..., params: _Optional[_Mapping[str, Scalar]] = ..., search_space: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., objective: _Optional[_Union[Objective, _Mapping]] = ..., search: _Optional[_Union[SearchSpec, _Mapping]] = ..., scheduler: _Optional[_Union[SchedulerSpec, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., failure: _Optional[_Union[FailurePolicy, _Mapping]] = ..., deploy: _Optional[_Union[DeployPolicy, _Mapping]] = ..., objectives: _Optional[_Iterable[_Union[Objective, _Mapping]]] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("trial_id", "state", "config", "metrics", "epochs", "mlflow_run_id", "error")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Scalar
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    state: TrialState
    config: _containers.MessageMap[str, Scalar]
    metrics: _containers.ScalarMap[str, float]
    epochs: int
    mlflow_run_id: str
    error: str
    def __init__(self, trial_id: _Optional[str] = ..., state: _Optional[_Union[TrialState, str]] = ..., config: _Optional[_Mapping[str, Scalar]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., epochs: _Optional[int] = ..., mlflow_run_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Study(_message.Message):
    __slots__ = ("study_id", "name", "spec", "state", "ray_job_id", "created_at", "updated_at", "trials", "best_trial", "best_test_metrics", "mlflow_experiment_id", "mlflow_run_id", "registered_model", "registered_model_version", "error", "model_uri", "driver_restarts", "owner", "warm_start_trials", "pareto_front")
    class BestTestMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RAY_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_FIELD_NUMBER: _ClassVar[int]
    BEST_TEST_METRICS_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MODEL_URI_FIELD_NUMBER: _ClassVar[int]
    DRIVER_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    WARM_START_TRIALS_FIELD_NUMBER: _ClassVar[int]
    PARETO_FRONT_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    name: str
    spec: StudySpec
    state: StudyState
    ray_job_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    best_trial: Trial
    best_test_metrics: _containers.ScalarMap[str, float]
    mlflow_experiment_id: str
    mlflow_run_id: str
    registered_model: str
    registered_model_version: int
    error: str
    model_uri: str
    driver_restarts: int
    owner: str
    warm_start_trials: int
    pareto_front: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, study_id: _Optional[str] = ..., name: _Optional[str] = ..., spec: _Optional[_Union[StudySpec, _Mapping]] = ..., state: _Optional[_Union[StudyState, str]] = ..., ray_job_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., best_trial: _Optional[_Union[Trial, _Mapping]] = ..., best_test_metrics: _Optional[_Mapping[str, float]] = ..., mlflow_experiment_id: _Optional[str] = ..., mlflow_run_id: _Optional[str] = ..., registered_model: _Optional[str] = ..., registered_model_version: _Optional[int] = ..., error: _Optional[str] = ..., model_uri: _Optional[str] = ..., driver_restarts: _Optional[int] = ..., owner: _Optional[str] = ..., warm_start_trials: _Optional[int] = ..., pareto_front: _Optional[_Iterable[str]] = ...) -> None: ...

class StudyEvent(_message.Message):
    __slots__ = ("sequence", "study_id", "kind", "time", "trial", "study_state", "message", "pareto_front")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    STUDY_STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARETO_FRONT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    study_id: str
    kind: EventKind
    time: _timestamp_pb2.Timestamp
    trial: Trial
    study_state: StudyState
    message: str
    pareto_front: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sequence: _Optional[int] = ..., study_id: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trial: _Optional[_Union[Trial, _Mapping]] = ..., study_state: _Optional[_Union[StudyState, str]] = ..., message: _Optional[str] = ..., pareto_front: _Optional[_Iterable[str]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("study_id", "registered_model", "version", "model_uri", "trial_id")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_URI_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    registered_model: str
    version: int
    model_uri: str
    trial_id: str
    def __init__(self, study_id: _Optional[str] = ..., registered_model: _Optional[str] = ..., version: _Optional[int] = ..., model_uri: _Optional[str] = ..., trial_id: _Optional[str] = ...) -> None: ...

class Autoscaling(_message.Message):
    __slots__ = ("min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s")
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ONGOING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    DOWNSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float
    def __init__(self, min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_ongoing_requests: _Optional[float] = ..., upscale_delay_s: _Optional[float] = ..., downscale_delay_s: _Optional[float] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "study_id", "state", "replicas", "route", "model_uri", "updated_at", "error", "max_batch_size", "owner", "registered_model", "model_version", "previous", "autoscaling", "replicas_running", "serve_status", "serve_message", "replicas_wanted", "trial_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MODEL_URI_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    SERVE_STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_WANTED_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    study_id: str
    state: DeploymentState
    replicas: int
    route: str
    model_uri: str
    updated_at: _timestamp_pb2.Timestamp
    error: str
    max_batch_size: int
    owner: str
    registered_model: str
    model_version: int
    previous: ModelVersion
    autoscaling: Autoscaling
    replicas_running: int
    serve_status: str
    serve_message: str
    replicas_wanted: int
    trial_id: str
    def __init__(self, name: _Optional[str] = ..., study_id: _Optional[str] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., replicas: _Optional[int] = ..., route: _Optional[str] = ..., model_uri: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., owner: _Optional[str] = ..., registered_model: _Optional[str] = ..., model_version: _Optional[int] = ..., previous: _Optional[_Union[ModelVersion, _Mapping]] = ..., autoscaling: _Optional[_Union[Autoscaling, _Mapping]] = ..., replicas_running: _Optional[int] = ..., serve_status: _Optional[str] = ..., serve_message: _Optional[str] = ..., replicas_wanted: _Optional[int] = ..., trial_id: _Optional[str] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "values")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("label", "probabilities", "values")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    label: int
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, label: _Optional[int] = ..., probabilities: _Optional[_Iterable[float]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class TrainerParameter(_message.Message):
    __slots__ = ("name", "default_value", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    default_value: Scalar
    description: str
    def __init__(self, name: _Optional[str] = ..., default_value: _Optional[_Union[Scalar, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class Trainer(_message.Message):
    __slots__ = ("name", "description", "task", "input_shape", "parameters", "metrics", "datasets", "epochs_parameter", "available", "error", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_PARAMETER_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    task: Task
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    parameters: _containers.RepeatedCompositeFieldContainer[TrainerParameter]
    metrics: _containers.RepeatedScalarFieldContainer[str]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    epochs_parameter: str
    available: bool
    error: str
    source: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., input_shape: _Optional[_Iterable[int]] = ..., parameters: _Optional[_Iterable[_Union[TrainerParameter, _Mapping]]] = ..., metrics: _Optional[_Iterable[str]] = ..., datasets: _Optional[_Iterable[str]] = ..., epochs_parameter: _Optional[str] = ..., available: _Optional[bool] = ..., error: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class CreateStudyRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: StudySpec
    def __init__(self, spec: _Optional[_Union[StudySpec, _Mapping]] = ...) -> None: ...

class GetStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class ListStudiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListStudiesResponse(_message.Message):
    __slots__ = ("studies",)
    STUDIES_FIELD_NUMBER: _ClassVar[int]
    studies: _containers.RepeatedCompositeFieldContainer[Study]
    def __init__(self, studies: _Optional[_Iterable[_Union[Study, _Mapping]]] = ...) -> None: ...

class WatchStudyRequest(_message.Message):
    __slots__ = ("study_id", "after_sequence")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    after_sequence: int
    def __init__(self, study_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class CancelStudyRequest(_message.Message):
    __slots__ = ("study_id",)
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    def __init__(self, study_id: _Optional[str] = ...) -> None: ...

class DeployRequest(_message.Message):
    __slots__ = ("study_id", "replicas", "max_batch_size", "name", "model", "version", "trial_id", "min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s")
    STUDY_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ONGOING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    UPSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    DOWNSCALE_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    study_id: str
    replicas: int
    max_batch_size: int
    name: str
    model: str
    version: int
    trial_id: str
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float
    def __init__(self, study_id: _Optional[str] = ..., replicas: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., trial_id: _Optional[str] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_ongoing_requests: _Optional[float] = ..., upscale_delay_s: _Optional[float] = ..., downscale_delay_s: _Optional[float] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("deployment", "rows", "tensors")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    tensors: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, deployment: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., tensors: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class ListTrainersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTrainersResponse(_message.Message):
    __slots__ = ("trainers",)
    TRAINERS_FIELD_NUMBER: _ClassVar[int]
    trainers: _containers.RepeatedCompositeFieldContainer[Trainer]
    def __init__(self, trainers: _Optional[_Iterable[_Union[Trainer, _Mapping]]] = ...) -> None: ...
