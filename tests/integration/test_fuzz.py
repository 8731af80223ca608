"""Fuzzing the real gRPC server over mutual TLS.

Requests come from four sources: messages derived generically from the proto
descriptors, nearly valid requests (the example study spec, the ids of seeded studies
and deployments, each mutated a little, so validation past its first check runs), random
or mangled bytes on the raw channel, and missing or garbled bearer tokens. Every answer
must carry a status its RPC documents (never UNKNOWN, never INTERNAL), every call must
end within its deadline, and the server must stay SERVING throughout.

CreateStudy is only ever sent as `fuzz`, whose quota of 0 studies answers any spec that
passes validation RESOURCE_EXHAUSTED: the fuzz never starts Ray work.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anneal import StudySpec, convert
from anneal.settings import Settings
from anneal.types import Deployment, DeploymentState, StudyState
from anneal.v1 import anneal_pb2 as pb
from cluster.store.store import Store, now
from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration

Code = grpc.StatusCode
SERVICE = pb.DESCRIPTOR.services_by_name["AnnealService"]
RPCS: tuple[str, ...] = tuple(method.name for method in SERVICE.methods)

# What each RPC answers a well-formed request with a valid token, within the size limit.
ANSWERS: dict[str, set[grpc.StatusCode]] = {
    "CreateStudy": {Code.OK, Code.INVALID_ARGUMENT, Code.ALREADY_EXISTS, Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE},
    "GetStudy": {Code.OK, Code.NOT_FOUND},
    "ListStudies": {Code.OK},
    "WatchStudy": {Code.OK, Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED},
    "CancelStudy": {Code.OK, Code.NOT_FOUND, Code.FAILED_PRECONDITION},
    "Deploy": {Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION},
    "GetDeployment": {Code.OK, Code.NOT_FOUND},
    "Rollback": {Code.OK, Code.NOT_FOUND, Code.FAILED_PRECONDITION},
    "DeleteDeployment": {Code.OK, Code.NOT_FOUND},
    "ListDeployments": {Code.OK},
    "Predict": {Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION},
    "ListTrainers": {Code.OK},
}
# Any RPC also answers INVALID_ARGUMENT to bytes that are not its request message,
# RESOURCE_EXHAUSTED to a request over the size limit and UNAUTHENTICATED to a missing or
# garbled token. Never UNKNOWN, never INTERNAL.
_EVERY_RPC = {Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED, Code.UNAUTHENTICATED}
DOCUMENTED: dict[str, set[grpc.StatusCode]] = {rpc: answers | _EVERY_RPC for rpc, answers in ANSWERS.items()}

MIN_REQUESTS = 2000
UNARY_DEADLINE_S = 10.0  # far above any honest answer: running into it means the server hung
WATCH_DEADLINE_S = 2.0  # a watch of a study that has no newer events waits until it
HEALTH_EVERY = 250  # requests between health checks
MAX_DEPTH = 5  # of generated messages; the deepest request path (spec.search_space.categorical.choices) is 4
FUZZ = "fuzz"  # the principal whose quota of 0 studies lets no spec start
READERS = ("fuzz", "admin", "alice")  # principals of the calls that never create a study
PHASE_SETTINGS = settings(
    deadline=None,  # the server answers in milliseconds, but CI machines stall now and then
    database=None,
    derandomize=True,  # the same requests on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Values a fuzzer's dictionary holds: the names validation looks up, path and URL shapes
# the data-root checks must refuse, and strings that tend to break parsers or formats.
INTERESTING_STRINGS = (
    "",
    " ",
    "digits",
    "mlp_classifier",
    "quadratic",
    "val_accuracy",
    "lr",
    "epochs",
    "\x00",
    "nul\x00inside",
    "../../etc/passwd",
    "/etc/passwd",
    "/dev/zero",
    "data/../../secret.csv",
    "file:///etc/passwd",
    "file://localhost/tmp/x.csv",
    "file://example.com/x.csv",
    "file://[::1]/x.csv",
    "file://[::1/x.csv",
    "file://%2e%2e/x.csv",
    "file:x.csv",
    "http://127.0.0.1:1/x.csv",
    "s3://bucket/x.csv",
    "C:\\Windows\\win.ini",
    "%s%n{0}{}",
    "'; DROP TABLE studies; --",
    "ünïcødé",
    "\u202eevil",
    "😀" * 20,
    "\ufeff",
    "st-0000",
    "alice/",
    "/",
    "a/b/c",
)
URL_PREFIXES = ("file://", "file:///", "file://[", "http://", "")
# `dataset.path` is the one spec field that reaches the server's filesystem: its values get
# shapes of their own.
PATH_PREFIXES = (*URL_PREFIXES, "file://localhost/", "file://[::1]/", "/", "./", "../", "~/", "data/", "\\\\host\\")


# ---------------------------------------------------------------- values by field type

_INT_BOUNDS = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Any integer in range, with the edges and the small numbers validation compares against."""
    # 10,001 and 4,097 lie just past the defaults of max_predict_rows and deploy.max_batch_size.
    edges = [n for n in (0, 1, -1, 2, low, low + 1, high, high - 1, 10_001, 4097) if low <= n <= high]
    return st.one_of(
        st.sampled_from(edges), st.integers(-5, 300).filter(lambda n: low <= n <= high), st.integers(low, high)
    )


def floats(width: Literal[32, 64] = 64) -> st.SearchStrategy[float]:
    specials = st.sampled_from(
        [0.0, -0.0, 1.0, -1.0, 0.5, 0.9, 1e-300, 1e300, float("nan"), float("inf"), float("-inf")]
    )
    return st.one_of(specials, st.floats(width=width))


def texts() -> st.SearchStrategy[str]:
    """Unicode text (never a lone surrogate: proto strings are UTF-8), empty included."""
    plain = st.text(st.characters(codec="utf-8"), max_size=40)
    urls = st.builds(str.__add__, st.sampled_from(URL_PREFIXES), plain)
    # Past what a gRPC client takes of a status message (8 KiB of metadata, where a non-ASCII
    # byte travels as 3): echoed in a message, they would hide the status.
    long = st.sampled_from([("x", 300), ("x", 20_000), ("😀", 2_000)]).map(lambda pair: pair[0] * pair[1])
    return st.one_of(st.sampled_from(INTERESTING_STRINGS), plain, urls, long)


def scalar_values(field_: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of a non-message field, by its type; an enum also takes numbers it does not name."""
    kind = field_.cpp_type
    if kind in _INT_BOUNDS:
        return integers(*_INT_BOUNDS[kind])
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return floats()
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return floats(width=32)
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        named = [value.number for value in field_.enum_type.values]
        return st.one_of(st.sampled_from(named), integers(*_INT_BOUNDS[FieldDescriptor.CPPTYPE_INT32]))
    if field_.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    return texts()


# ---------------------------------------------------------------- messages from descriptors


def values_of(field_: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Values of one element of the field: a message one level deeper, or a scalar."""
    if field_.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return messages(field_.message_type, depth - 1)
    return scalar_values(field_)


def is_map(field_: FieldDescriptor) -> bool:
    return field_.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and field_.message_type.GetOptions().map_entry


def fill(draw: st.DrawFn, message: Message, field_: FieldDescriptor, depth: int) -> None:
    """Sets `field_` of `message` to drawn values; a message field below MAX_DEPTH stays unset."""
    if field_.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and depth <= 0:
        return
    target = getattr(message, field_.name)
    if is_map(field_):
        key, value = field_.message_type.fields_by_name["key"], field_.message_type.fields_by_name["value"]
        for k, v in draw(st.dictionaries(scalar_values(key), values_of(value, depth), max_size=3)).items():
            if value.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field_.is_repeated:
        target.extend(draw(st.lists(values_of(field_, depth), max_size=4)))
    elif field_.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        target.CopyFrom(draw(messages(field_.message_type, depth - 1)))
    else:
        setattr(message, field_.name, draw(scalar_values(field_)))


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = MAX_DEPTH) -> Message:
    """Any message of the type: each field present or not, at most one field of each oneof
    (proto3 `optional` fields are one-field oneofs, so presence is drawn the same way)."""
    message = GetMessageClass(descriptor)()
    chosen = {oneof.name: draw(st.sampled_from([None, *oneof.fields])) for oneof in descriptor.oneofs}
    for field_ in descriptor.fields:
        oneof = field_.containing_oneof
        present = chosen[oneof.name] is field_ if oneof is not None else draw(st.booleans())
        if present:
            fill(draw, message, field_, depth)
    return message


def sub_messages(message: Message) -> list[Message]:
    """The message's set sub-messages, list elements and map values included."""
    found: list[Message] = []
    for field_, value in message.ListFields():
        if field_.cpp_type != FieldDescriptor.CPPTYPE_MESSAGE:
            continue
        if is_map(field_):
            found += [v for v in value.values() if isinstance(v, Message)]
        elif field_.is_repeated:
            found += list(value)
        else:
            found.append(value)
    return found


def mutate_once(draw: st.DrawFn, message: Message) -> None:
    """Walks down to a random set sub-message and clears, replaces or extends one of its fields."""
    children = sub_messages(message)
    while children and not draw(st.booleans()):  # a coin toss: stop here or go one level down
        message = draw(st.sampled_from(children))
        children = sub_messages(message)
    if not message.DESCRIPTOR.fields:
        return  # NoScheduler: nothing to change
    field_ = draw(st.sampled_from(list(message.DESCRIPTOR.fields)))
    action = draw(st.sampled_from(["clear", "replace", "extend"] if field_.is_repeated else ["clear", "replace"]))
    if action != "extend":
        message.ClearField(field_.name)
    if action != "clear":
        fill(draw, message, field_, depth=3)


@st.composite
def mutated(draw: st.DrawFn, original: Message) -> Message:
    """A copy of `original` with one to three fields changed: it fails late in validation, if at all."""
    message = type(original)()
    message.CopyFrom(original)
    for _ in range(draw(st.integers(1, 3))):
        mutate_once(draw, message)
    return message


def request_type(rpc: str) -> Descriptor:
    return cast(Descriptor, SERVICE.methods_by_name[rpc].input_type)


def response_class(rpc: str) -> type[Message]:
    return GetMessageClass(SERVICE.methods_by_name[rpc].output_type)


# ---------------------------------------------------------------- calls and their answers


@dataclass(frozen=True)
class Call:
    rpc: str
    request: Message | bytes
    authorization: str | None  # the header's value; None sends no header
    expect: frozenset[grpc.StatusCode] = frozenset()  # narrower than DOCUMENTED, when the case says more
    may_wait: bool = False  # a watch of an existing study: its client deadline may end it

    def acceptable(self) -> set[grpc.StatusCode]:
        """The documented statuses that fit this call; a call with no `expect` has a valid token
        and a request within the size limit."""
        if self.expect:
            return set(self.expect)
        allowed = set(ANSWERS[self.rpc])
        if isinstance(self.request, bytes):
            allowed.add(Code.INVALID_ARGUMENT)  # they may not decode
        if self.may_wait:
            allowed.add(Code.DEADLINE_EXCEEDED)
        return allowed

    def describe(self) -> str:
        shown = repr(self.request)[:800]
        return f"{self.rpc}({shown}) with authorization {str(self.authorization)[:80]!r}"


@dataclass
class Tally:
    codes: dict[str, Counter[str]] = field(default_factory=lambda: {rpc: Counter() for rpc in RPCS})

    def add(self, rpc: str, code: grpc.StatusCode) -> None:
        self.codes[rpc][code.name] += 1

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for counts in self.codes.values())

    def table(self) -> str:
        lines = [f"{self.total} requests"]
        for rpc, counts in self.codes.items():
            histogram = ", ".join(f"{name} {n}" for name, n in counts.most_common())
            lines.append(f"  {rpc:<14}{sum(counts.values()):>6}  {histogram}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Seeded:
    """Records in the store that the fuzz principal owns, so that calls reach past NOT_FOUND."""

    studies: dict[str, int]  # study id -> sequence of its last event; CANCELLED and FAILED, never SUCCEEDED
    deployments: tuple[str, ...]  # FAILED, and RUNNING with no Serve application behind it


@dataclass
class Target:
    channel: grpc.Channel
    tokens: dict[str, str]
    seeded: Seeded
    base_spec: pb.StudySpec
    limits: Settings  # the server's
    tally: Tally = field(default_factory=Tally)
    checked_health_at: int = 0
    done: set[str] = field(default_factory=set)  # phases run
    started: float = field(default_factory=time.monotonic)

    def bearer(self, principal: str) -> str:
        return f"Bearer {self.tokens[principal]}"

    def send(self, calls: Sequence[Call]) -> None:
        for call in calls:
            code, details = answer(self.channel, call)
            self.tally.add(call.rpc, code)
            allowed = call.acceptable()
            assert code in allowed, f"{call.describe()} answered {code.name}: {details[:500]}"
        if self.tally.total - self.checked_health_at >= HEALTH_EVERY:
            assert_serving(self.channel)
            self.checked_health_at = self.tally.total


def answer(channel: grpc.Channel, call: Call) -> tuple[grpc.StatusCode, str]:
    """The status of one call on the raw channel; an OK answer must decode as the RPC's response."""
    data = call.request if isinstance(call.request, bytes) else call.request.SerializeToString()
    metadata = () if call.authorization is None else (("authorization", call.authorization),)
    path = f"/{SERVICE.full_name}/{call.rpc}"
    decode = response_class(call.rpc).FromString
    try:
        if call.rpc == "WatchStudy":
            stream = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            for raw in stream(data, timeout=WATCH_DEADLINE_S, metadata=metadata):
                decode(raw)
        else:
            unary = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            decode(unary(data, timeout=UNARY_DEADLINE_S, metadata=metadata))
    except grpc.RpcError as error:
        failed = cast(grpc.Call, error)
        return failed.code(), failed.details() or ""
    return Code.OK, ""


def assert_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE.full_name):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=UNARY_DEADLINE_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


# ---------------------------------------------------------------- strategies of calls


def generic_calls(target: Target) -> st.SearchStrategy[list[Call]]:
    """One call per RPC with a message drawn from the descriptors, as a principal that may read."""

    def call(rpc: str) -> st.SearchStrategy[Call]:
        principals = st.just(FUZZ) if rpc == "CreateStudy" else st.sampled_from(READERS)
        return st.builds(
            lambda message, who: Call(rpc, message, target.bearer(who)), messages(request_type(rpc)), principals
        )

    return st.tuples(*(call(rpc) for rpc in RPCS)).map(list)


def near_ids(known: Sequence[str]) -> st.SearchStrategy[str]:
    """A known id or name as it is, or a little off: a character changed, cased, padded or prefixed."""
    exact = st.sampled_from(list(known))

    def damage(text: str, index: int, char: str) -> str:
        index %= max(len(text), 1)
        return text[:index] + char + text[index + 1 :]

    off = st.one_of(
        st.builds(damage, exact, st.integers(0, 64), st.characters(codec="utf-8")),
        exact.map(str.upper),
        exact.map(lambda text: f" {text}\n"),
        st.builds(lambda owner, text: f"{owner}/{text}", st.sampled_from([*READERS, "", "bob", ".."]), exact),
        exact.map(lambda text: text + "/" + text),
    )
    return st.one_of(exact, off, texts())


def rows() -> st.SearchStrategy[list[pb.Row]]:
    """Finite rows of one width (they pass the row checks), or rows ragged, empty, with NaNs
    and infinities, or none at all."""
    odd = st.lists(st.lists(floats(), max_size=4).map(lambda values: pb.Row(values=values)), max_size=4)
    same_width = st.integers(1, 4).flatmap(
        lambda width: st.lists(st.lists(st.floats(-10, 10), min_size=width, max_size=width), min_size=1, max_size=3)
    )
    return st.one_of(same_width.map(lambda values: [pb.Row(values=v) for v in values]), odd)


def paths() -> st.SearchStrategy[str]:
    """Values of `dataset.path`: relative and absolute paths, file URLs and other schemes."""
    tail = st.one_of(st.sampled_from(INTERESTING_STRINGS), st.text(st.characters(codec="utf-8"), max_size=30))
    return st.builds(str.__add__, st.sampled_from(PATH_PREFIXES), tail)


@st.composite
def with_path(draw: st.DrawFn, spec: pb.StudySpec) -> pb.StudySpec:
    message = pb.StudySpec()
    message.CopyFrom(spec)
    message.dataset.path = draw(paths())
    return message


def watch_calls(target: Target, who: st.SearchStrategy[str]) -> st.SearchStrategy[Call]:
    """A seeded study watched from before its last event (the stream ends at once), or any id from any point."""
    seeded = list(target.seeded.studies.items())
    known = st.sampled_from(seeded).flatmap(lambda item: st.tuples(st.just(item[0]), integers(-(2**63), item[1] - 1)))
    unknown = st.tuples(near_ids(list(target.seeded.studies)), integers(-(2**63), 2**63 - 1)).filter(
        lambda pair: pair[0] not in target.seeded.studies
    )
    return st.builds(
        lambda pair, principal: Call(
            "WatchStudy", pb.WatchStudyRequest(study_id=pair[0], after_sequence=pair[1]), target.bearer(principal)
        ),
        st.one_of(known, unknown),
        who,
    )


def deploy_requests(
    ids: st.SearchStrategy[str], names: st.SearchStrategy[str], int64: st.SearchStrategy[int]
) -> st.SearchStrategy[pb.DeployRequest]:
    """A study or a registered model (fuzz's own, or another's), a deployment name, and replicas
    fixed or autoscaled, any of them missing or out of range."""
    models = st.one_of(st.just(""), names.map(lambda name: f"{FUZZ}.{name}"), names.map(lambda name: f"alice.{name}"))
    reals = st.floats(allow_nan=True, allow_infinity=True)
    maybe = st.none() | int64
    return st.builds(
        lambda fields: pb.DeployRequest(**{k: v for k, v in fields.items() if v is not None}),
        st.fixed_dictionaries(
            {
                "study_id": ids,
                "replicas": int64,
                "max_batch_size": int64,
                "name": st.just("") | names,
                "model": models,
                "version": int64,
                "min_replicas": maybe,
                "max_replicas": maybe,
                "target_ongoing_requests": st.none() | reals,
                "upscale_delay_s": st.none() | reals,
                "downscale_delay_s": st.none() | reals,
                "trial_id": st.just("") | ids,
            }
        ),
    )


def nearly_valid_calls(target: Target) -> st.SearchStrategy[list[Call]]:
    """One call per RPC that is close to one that succeeds, to exercise the checks past the first."""
    ids = near_ids(list(target.seeded.studies))
    names = near_ids(list(target.seeded.deployments))
    who = st.sampled_from(["fuzz", "admin"])  # both see the seeded records

    def as_(rpc: str, requests: st.SearchStrategy[Message], principals: st.SearchStrategy[str] = who) -> Any:
        return st.builds(lambda message, principal: Call(rpc, message, target.bearer(principal)), requests, principals)

    int64 = integers(-(2**63), 2**63 - 1)
    specs = st.one_of(mutated(target.base_spec), with_path(target.base_spec))
    by_rpc = {
        "CreateStudy": as_("CreateStudy", specs.map(lambda spec: pb.CreateStudyRequest(spec=spec)), st.just(FUZZ)),
        "GetStudy": as_("GetStudy", st.builds(pb.GetStudyRequest, study_id=ids)),
        "ListStudies": as_("ListStudies", st.just(pb.ListStudiesRequest()), st.sampled_from(READERS)),
        "WatchStudy": watch_calls(target, who),
        "CancelStudy": as_("CancelStudy", st.builds(pb.CancelStudyRequest, study_id=ids)),
        "Deploy": as_("Deploy", deploy_requests(ids, names, int64)),
        "GetDeployment": as_("GetDeployment", st.builds(pb.GetDeploymentRequest, name=names)),
        "Rollback": as_("Rollback", st.builds(pb.RollbackRequest, name=names)),
        "DeleteDeployment": as_("DeleteDeployment", st.builds(pb.DeleteDeploymentRequest, name=names)),
        "ListDeployments": as_("ListDeployments", st.just(pb.ListDeploymentsRequest()), st.sampled_from(READERS)),
        "Predict": as_("Predict", st.builds(pb.PredictRequest, deployment=names, rows=rows())),
        "ListTrainers": as_("ListTrainers", st.just(pb.ListTrainersRequest()), st.sampled_from(READERS)),
    }
    return st.tuples(*(by_rpc[rpc] for rpc in RPCS)).map(list)


def mangled(data: bytes, draw: st.DrawFn) -> bytes:
    """Encoded bytes truncated, bit-flipped or with junk spliced in: framing errors deep in a message."""
    if not data:
        return draw(st.binary(min_size=1, max_size=32))
    at = draw(st.integers(0, len(data) - 1))
    how = draw(st.sampled_from(["truncate", "flip", "splice"]))
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def byte_calls(target: Target) -> st.SearchStrategy[list[Call]]:
    """One call per RPC whose body is random bytes, or an encoded request mangled."""

    @st.composite
    def body(draw: st.DrawFn, rpc: str) -> bytes:
        if draw(st.booleans()):
            return draw(st.binary(max_size=256))
        if rpc == "CreateStudy":
            message: Message = pb.CreateStudyRequest(spec=draw(mutated(target.base_spec)))
        else:
            message = draw(messages(request_type(rpc)))
        return mangled(message.SerializeToString(), draw)

    def call(rpc: str) -> st.SearchStrategy[Call]:
        return body(rpc).map(lambda data: Call(rpc, data, target.bearer(FUZZ)))

    return st.tuples(*(call(rpc) for rpc in RPCS)).map(list)


def bad_authorizations(target: Target) -> st.SearchStrategy[str | None]:
    """No header, another scheme, `Bearer` with junk, or a real token cut short or lengthened."""
    junk = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=600)
    real = st.sampled_from(sorted(target.tokens.values()))
    return st.one_of(
        st.none(),
        st.sampled_from(
            ["", "Bearer", "Bearer ", "bearer", "Basic dXNlcjpwYXNz", "Bearer null", "Bearer " + "A" * 513]
        ),
        junk.map(lambda text: f"Bearer {text}"),
        junk,
        real.map(lambda token: f"Bearer {token[:-1]}"),
        real.map(lambda token: f"Bearer {token}x"),
        real.map(lambda token: f"Bearer {token.swapcase()}"),
        real,  # the token without its scheme
    )


def unauthenticated_calls(target: Target) -> st.SearchStrategy[list[Call]]:
    """One call per RPC with a drawn request and a bad or missing token: UNAUTHENTICATED, nothing else."""
    only = frozenset({Code.UNAUTHENTICATED})

    def call(rpc: str) -> st.SearchStrategy[Call]:
        requests = st.one_of(messages(request_type(rpc), depth=2), st.binary(max_size=64))
        return st.builds(lambda request, auth: Call(rpc, request, auth, only), requests, bad_authorizations(target))

    return st.tuples(*(call(rpc) for rpc in RPCS)).map(list)


def limit_calls(target: Target) -> list[Call]:
    """Fixed calls at the server's limits: over the request size, over the spec size, too many
    rows, a very long id, and a watch of a study with no newer events (it waits for its deadline)."""
    limits = target.limits
    too_big = b"\x0a" * (limits.max_request_bytes + 1)
    calls = [Call(rpc, too_big, target.bearer(FUZZ), frozenset({Code.RESOURCE_EXHAUSTED})) for rpc in RPCS]
    big_spec = pb.StudySpec()
    big_spec.CopyFrom(target.base_spec)
    big_spec.trainer = "t" * (limits.max_spec_bytes + 1)
    invalid = frozenset({Code.INVALID_ARGUMENT})
    calls.append(Call("CreateStudy", pb.CreateStudyRequest(spec=big_spec), target.bearer(FUZZ), invalid))
    many = [pb.Row(values=[1.0])] * (limits.max_predict_rows + 1)
    name = target.seeded.deployments[0]
    calls.append(Call("Predict", pb.PredictRequest(deployment=name, rows=many), target.bearer(FUZZ), invalid))
    long_id = "s" * 1_000_000
    for rpc, message in (
        ("GetStudy", pb.GetStudyRequest(study_id=long_id)),
        ("CancelStudy", pb.CancelStudyRequest(study_id=long_id)),
        ("WatchStudy", pb.WatchStudyRequest(study_id=long_id)),
        ("Deploy", pb.DeployRequest(study_id=long_id)),
        ("GetDeployment", pb.GetDeploymentRequest(name=long_id)),
        ("Rollback", pb.RollbackRequest(name=long_id)),
        ("DeleteDeployment", pb.DeleteDeploymentRequest(name=long_id)),
        ("Deploy", pb.DeployRequest(model=long_id, version=1)),
        ("Predict", pb.PredictRequest(deployment=long_id, rows=[pb.Row(values=[1.0])])),
    ):
        calls.append(Call(rpc, message, target.bearer("admin")))
    study_id, last = next(iter(target.seeded.studies.items()))
    waiting = pb.WatchStudyRequest(study_id=study_id, after_sequence=last)
    calls.append(Call("WatchStudy", waiting, target.bearer(FUZZ), may_wait=True))
    return calls


# ---------------------------------------------------------------- the run


def run_phase(target: Target, calls: st.SearchStrategy[list[Call]], examples: int) -> None:
    """Sends the calls of `examples` drawn batches; a failing batch is shrunk and reported by Hypothesis."""

    @settings(PHASE_SETTINGS, max_examples=examples)
    @given(batch=calls)
    def phase(batch: list[Call]) -> None:
        target.send(batch)

    phase()


# name -> (the calls of one example, examples): about 2,400 requests in all, a fair share each RPC
PHASES: dict[str, tuple[Callable[[Target], st.SearchStrategy[list[Call]]], int]] = {
    "generic": (generic_calls, 100),
    "nearly valid": (nearly_valid_calls, 120),
    "bytes": (byte_calls, 50),
    "tokens": (unauthenticated_calls, 40),
}


def run_once(target: Target, name: str) -> None:
    """Runs a phase unless it ran already: the last test runs what a selection of tests left out."""
    if name in target.done:
        return
    target.done.add(name)
    if name == "limits":
        target.send(limit_calls(target))
    else:
        strategy, examples = PHASES[name]
        run_phase(target, strategy(target), examples)


def seed(stack: Stack) -> Seeded:
    """Ended studies (one SUCCEEDED whose model is nowhere, so Deploy starts nothing) and
    deployments of `fuzz`."""
    store = Store(stack.settings.store_url)
    base = StudySpec.load(REPO / "examples" / "digits.yaml")
    try:
        studies: dict[str, int] = {}
        for state in (StudyState.CANCELLED, StudyState.FAILED, StudyState.SUCCEEDED):
            spec = base.model_copy(update={"name": f"fuzz-{state.value.lower()}"})
            study = store.create_study(spec, owner=FUZZ)
            if state is StudyState.SUCCEEDED:  # with a model that is not there: Deploy's checks all run
                store.transition(study.study_id, [StudyState.PENDING], StudyState.RUNNING)
                store.transition(study.study_id, [StudyState.RUNNING], state, model_uri="/nowhere/model")
            else:
                store.transition(study.study_id, [StudyState.PENDING], state, message="seeded by the fuzz test")
            studies[study.study_id] = store.events_after(study.study_id, 0)[-1].sequence
        names = []
        for deployment_state in (DeploymentState.FAILED, DeploymentState.RUNNING):
            name = f"fuzz-{deployment_state.value.lower()}"
            deployment = Deployment(
                owner=FUZZ,
                name=name,
                study_id=next(iter(studies)),
                state=deployment_state,
                replicas=1,
                route=f"/models/{FUZZ}/{name}",
                model_uri="",
                updated_at=now(),
            )
            store.put_deployment(deployment)
            names.append(name)
    finally:
        store.close()
    return Seeded(studies, tuple(names))


@pytest.fixture(scope="module")
def target(stack: Stack) -> Iterator[Target]:
    base_spec = convert.spec_to_pb(StudySpec.load(REPO / "examples" / "digits.yaml"))
    with stack.channel() as channel:
        assert_serving(channel)
        yield Target(channel, stack.tokens, seed(stack), base_spec, stack.settings)


def test_requests_at_the_limits_get_documented_statuses(target: Target) -> None:
    run_once(target, "limits")


def test_messages_derived_from_the_protos_get_documented_statuses(target: Target) -> None:
    run_once(target, "generic")


def test_nearly_valid_requests_get_documented_statuses(target: Target) -> None:
    run_once(target, "nearly valid")


def test_random_and_mangled_bytes_get_documented_statuses(target: Target) -> None:
    run_once(target, "bytes")


def test_missing_or_garbled_tokens_are_unauthenticated(target: Target) -> None:
    run_once(target, "tokens")


def test_every_rpc_was_fuzzed_and_the_server_keeps_serving(stack: Stack, target: Target) -> None:
    for name in ("limits", *PHASES):
        run_once(target, name)
    tally = target.tally
    print(f"\nfuzz: {tally.table()}\nin {time.monotonic() - target.started:.1f} s")
    assert_serving(target.channel)
    with stack.client("alice") as client:
        client.list_studies()  # the server, which is this process, still answers a plain call
    assert tally.total >= MIN_REQUESTS
    for rpc, counts in tally.codes.items():
        assert sum(counts.values()) >= tally.total // (2 * len(RPCS)), f"{rpc} got less than half its share"
