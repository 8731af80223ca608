"""Errors map to gRPC status codes and back, so a client raises the class the server raised."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from anneal.errors import (
    AnnealError,
    ConfigurationError,
    Conflict,
    FailedPrecondition,
    FieldError,
    Internal,
    InvalidArgument,
    InvalidSpec,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    error_from_status,
)
from anneal.spec import StudySpec
from trainers.registry import check_spec

CODES: list[tuple[type[AnnealError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Internal, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("cls", "code"), CODES, ids=[c.__name__ for c, _ in CODES])
def test_each_class_has_its_code(cls: type[AnnealError], code: grpc.StatusCode) -> None:
    assert cls.code == code


@pytest.mark.parametrize(("cls", "code"), CODES, ids=[c.__name__ for c, _ in CODES])
def test_status_maps_back_to_the_same_class(cls: type[AnnealError], code: grpc.StatusCode) -> None:
    raised = cls("study 'x' is busy")
    error = error_from_status(raised.code, str(raised))
    assert type(error) is cls
    assert error.code == code
    assert str(error) == "study 'x' is busy"


def test_codes_are_distinct() -> None:
    assert len({code for _, code in CODES}) == len(CODES)


def test_unknown_code_gives_the_base_class_with_that_code() -> None:
    error = error_from_status(grpc.StatusCode.DATA_LOSS, "lost")
    assert type(error) is AnnealError
    assert error.code == grpc.StatusCode.DATA_LOSS
    assert str(error) == "lost"


def test_every_error_is_an_anneal_error() -> None:
    for cls, _ in CODES:
        assert issubclass(cls, AnnealError)


def through_status(error: InvalidSpec) -> InvalidSpec:
    """The error as a client raises it from CreateStudy's status (a call that sends a spec)."""
    back = error_from_status(error.code, str(error), invalid=InvalidSpec)
    assert type(back) is InvalidSpec
    return back


def test_a_spec_is_an_argument_and_other_arguments_are_not_specs() -> None:
    assert issubclass(InvalidSpec, InvalidArgument) and InvalidSpec.code == InvalidArgument.code
    rows = InvalidArgument.field("rows[1]", "holds a NaN or an infinite value")
    back = error_from_status(rows.code, str(rows))  # Predict, Deploy: not a spec
    assert type(back) is InvalidArgument
    assert back.errors == rows.errors


def test_a_configuration_fault_is_a_failed_precondition() -> None:
    error = ConfigurationError("cannot read the TLS key key.pem: No such file or directory")
    assert isinstance(error, FailedPrecondition) and error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert type(error_from_status(error.code, str(error))) is FailedPrecondition


def test_field_errors_survive_the_string_form(example_data: dict[str, Any]) -> None:
    example_data["name"] = "Not Valid"
    example_data["search"]["sampler"] = "grid"
    example_data["search_space"]["lr"] = {"float": {"low": 0, "high": 1, "log": True}}
    example_data["budget"]["time_budget_s"] = -1
    with pytest.raises(InvalidSpec) as caught:
        StudySpec.parse(example_data)
    assert len(caught.value.errors) == 4
    assert through_status(caught.value).errors == caught.value.errors


def test_hand_made_field_errors_survive() -> None:
    errors = [
        FieldError("search_space.lr.float.low", "must be > 0 when log is true"),
        FieldError("params.epochs", "not a parameter of mlp_classifier"),
        FieldError("budget.max_trials", "Input should be greater than or equal to 1"),
    ]
    assert through_status(InvalidSpec(errors)).errors == errors


@pytest.mark.parametrize("message", ["a study spec must be a mapping", "not valid YAML: mapping values: line 2"])
def test_message_without_field_survives(message: str) -> None:
    assert through_status(InvalidSpec(message)).errors == [FieldError("", message)]


def test_field_constructor() -> None:
    error = InvalidSpec.field("trainer", "unknown")
    assert error.errors == [FieldError("trainer", "unknown")]
    assert str(error) == "trainer: unknown"


@pytest.mark.parametrize(
    ("key", "value"),
    [("trainer", "xgboost"), ("dataset", {"name": "mnist"})],
    ids=["unknown-trainer", "unknown-dataset"],
)
def test_registry_field_errors_survive(example_data: dict[str, Any], key: str, value: Any) -> None:
    example_data[key] = value
    with pytest.raises(InvalidSpec) as caught:
        check_spec(StudySpec.parse(example_data))
    assert through_status(caught.value).errors == caught.value.errors


def test_status_messages_are_cut_to_fit_a_header() -> None:
    from cluster.server.servicer import MAX_MESSAGE_BYTES, _fitting

    assert _fitting("no study 'st-1'") == "no study 'st-1'"
    for echoed in ("x" * 70_000, "\U0001f600" * 5_000):
        cut = _fitting(f"no study {echoed!r}")
        assert len(cut.encode()) <= MAX_MESSAGE_BYTES + len(" …".encode())
        assert cut.startswith("no study '") and cut.endswith(" …")


class Aborted(Exception):
    """What a gRPC context's abort raises, with the status it was given."""


class AbortingContext:
    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("cannot read the tokens file /x: Permission denied"), grpc.StatusCode.FAILED_PRECONDITION),
        (InvalidArgument.field("rows", "send at least one row"), grpc.StatusCode.INVALID_ARGUMENT),
        (AnnealError("raised without a class of its own"), grpc.StatusCode.INTERNAL),
        (KeyError("boom"), grpc.StatusCode.INTERNAL),
    ],
    ids=["configuration", "argument", "bare", "unexpected"],
)
def test_the_servicer_answers_a_documented_code_never_unknown(error: Exception, code: grpc.StatusCode) -> None:
    from cluster.server.servicer import _abort

    with pytest.raises(Aborted) as aborted:
        _abort(AbortingContext(), error)  # type: ignore[arg-type]
    answered, details = aborted.value.args
    assert answered == code
    if code is grpc.StatusCode.INTERNAL:
        assert "incident" in details and "boom" not in details  # the traceback stays in the server log
