"""The error classes of anneal, and their one mapping to and from gRPC status codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import grpc


class AnnealError(Exception):
    """Root of every error anneal raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a spec, named by its dotted path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# Between the field errors of one InvalidArgument, in its message and on the wire; messages
# themselves may contain "; " but never a newline.
FIELD_ERROR_SEPARATOR = "\n"


Invalid = TypeVar("Invalid", bound="InvalidArgument")


class InvalidArgument(AnnealError):
    """A request is malformed (Predict's rows, Deploy's replicas); every message names its field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, errors: list[FieldError] | str) -> None:
        self.errors = [FieldError("", errors)] if isinstance(errors, str) else list(errors)
        super().__init__(FIELD_ERROR_SEPARATOR.join(str(e) for e in self.errors))

    @classmethod
    def field(cls: type[Invalid], path: str, message: str) -> Invalid:
        return cls([FieldError(path, message)])


class InvalidSpec(InvalidArgument):
    """A study spec is malformed; every message names its field (`search_space.lr.float.low`)."""


class NotFound(AnnealError):
    code = grpc.StatusCode.NOT_FOUND


class Conflict(AnnealError):
    """The thing to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(AnnealError):
    """The request is valid but the object is not in a state that allows it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ConfigurationError(FailedPrecondition):
    """This process's own configuration is at fault (a tokens file, TLS files, data roots), not
    the request: it names the setting. A call that meets one answers FAILED_PRECONDITION."""


class Unavailable(AnnealError):
    """A component anneal depends on (Ray, Serve, the store) cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(AnnealError):
    """No valid bearer token came with the call."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(AnnealError):
    """A quota or limit of the caller is used up: a study, trial or stream too many."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Internal(AnnealError):
    """An unexpected failure on the server; the message carries an id to find its log."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[AnnealError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Conflict,
        FailedPrecondition,
        Unavailable,
        Unauthenticated,
        ResourceExhausted,
        Internal,
    )
}


def error_from_status(
    code: grpc.StatusCode, details: str, invalid: type[InvalidArgument] = InvalidArgument
) -> AnnealError:
    """The client side of the mapping: a gRPC status back to the class the server raised.
    INVALID_ARGUMENT becomes `invalid`: InvalidSpec for a call that sends a spec."""
    cls = _BY_CODE.get(code, AnnealError)
    if cls is InvalidArgument:
        return invalid([_parse_field_error(part) for part in details.split(FIELD_ERROR_SEPARATOR)])
    error = cls(details)
    error.code = code
    return error


def _parse_field_error(text: str) -> FieldError:
    path, sep, message = text.partition(": ")
    if sep and " " not in path:
        return FieldError(path, message)
    return FieldError("", text)
