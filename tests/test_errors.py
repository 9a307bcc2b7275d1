"""The error tree: its shape, pickling, body excerpts and readable text."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

import acquire_async
from acquire_async import errors
from acquire_async.errors import (
    AcquireError,
    AlreadyJoinedError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidCaseIdError,
    InvalidPayloadError,
    InvalidSignatureError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ThrottleUnavailableError,
    UnprocessableEntityError,
    UnsupportedContentTypeError,
    WebhookError,
)

URL = "https://acme.acquire.io/api/v1/crm/messenger/chat/join"

# (class, direct parent), as drawn in the errors.py docstring.
TREE = [
    (AcquireError, Exception),
    (APIError, AcquireError),
    (APIConnectionError, APIError),
    (APITimeoutError, APIConnectionError),
    (APITLSError, APIConnectionError),
    (APIStatusError, APIError),
    (BadRequestError, APIStatusError),
    (AuthenticationError, APIStatusError),
    (PermissionDeniedError, APIStatusError),
    (NotFoundError, APIStatusError),
    (ConflictError, APIStatusError),
    (AlreadyJoinedError, ConflictError),
    (UnprocessableEntityError, APIStatusError),
    (RateLimitError, APIStatusError),
    (InternalServerError, APIStatusError),
    (ResponseDecodeError, APIError),
    (InvalidCaseIdError, AcquireError),
    (ThrottleUnavailableError, AcquireError),
    (WebhookError, AcquireError),
    (InvalidSignatureError, WebhookError),
    (InvalidPayloadError, WebhookError),
    (PayloadTooLargeError, InvalidPayloadError),
    (UnsupportedContentTypeError, InvalidPayloadError),
]
ALL_ERRORS = [cls for cls, _ in TREE]
STATUS_ERRORS = [cls for cls in ALL_ERRORS if issubclass(cls, APIStatusError)]
CONNECTION_ERRORS = [cls for cls in ALL_ERRORS if issubclass(cls, APIConnectionError)]


@pytest.mark.parametrize(("cls", "parent"), TREE, ids=[c.__name__ for c, _ in TREE])
def test_tree_direct_parent(cls: type[Exception], parent: type[Exception]) -> None:
    assert cls.__bases__[0] is parent
    # Only InvalidCaseIdError has a second base: it is a ValueError too.
    assert cls.__bases__[1:] == ((ValueError,) if cls is InvalidCaseIdError else ())


def test_tree_relations() -> None:
    assert issubclass(AlreadyJoinedError, ConflictError)
    assert issubclass(AlreadyJoinedError, APIStatusError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APITLSError, APIConnectionError)
    assert all(issubclass(cls, AcquireError) for cls in ALL_ERRORS)
    # Branches that must not overlap.
    assert not issubclass(APITimeoutError, APIStatusError)
    assert not issubclass(ResponseDecodeError, APIStatusError)
    assert not issubclass(ResponseDecodeError, APIConnectionError)
    assert not issubclass(APIStatusError, APIConnectionError)
    assert not issubclass(NotFoundError, BadRequestError)
    assert not issubclass(RateLimitError, InternalServerError)
    assert not issubclass(WebhookError, APIError)  # a delivery is not a call
    # Misuse is not an AcquireError.
    assert not issubclass(AcquireError, (TypeError, ValueError, RuntimeError))


def test_every_error_is_exported() -> None:
    names = {cls.__name__ for cls in ALL_ERRORS}
    assert names <= set(acquire_async.__all__)
    assert names == set(errors.__all__)
    for name in names:
        assert getattr(acquire_async, name) is getattr(errors, name)


# --------------------------------------------------------------------------- pickling


def _status_error(cls: type[APIStatusError]) -> APIStatusError:
    return cls(
        "You have already joined this chat.",
        status=409,
        code="CHAT_ALREADY_JOINED",
        request_id="req-42",
        method="POST",
        url=URL,
        body=b'{"error":{"code":"CHAT_ALREADY_JOINED"}}',
        retry_after=2.5,
        attempts=3,
    )


def _instances() -> list[AcquireError]:
    made: list[AcquireError] = [AcquireError("plain", attempts=2)]
    made.append(APIError("call", method="POST", url=URL, request_id="r-1", attempts=2))
    made += [_status_error(cls) for cls in STATUS_ERRORS]
    made += [
        cls("connection reset", method="GET", url=URL, request_sent=False, attempts=4)
        for cls in CONNECTION_ERRORS
    ]
    made.append(
        ResponseDecodeError(
            "cannot decode",
            status=200,
            path="$.data.users[0].id",
            body=b'{"data":{"users":[{"id":"x"}]}}',
            method="POST",
            url=URL,
            attempts=5,
        )
    )
    made.append(InvalidCaseIdError("case_id must be an int, not str", attempts=0))
    made.append(ThrottleUnavailableError("Redis at 127.0.0.1:6379 has been unreachable for 10.0 s"))
    made.append(WebhookError("a delivery"))
    made.append(InvalidSignatureError("x-acquire-signature does not match the body"))
    made.append(InvalidPayloadError("data.caseId: expected an id", path="data.caseId"))
    made.append(PayloadTooLargeError("the body is over 1048576 bytes"))
    made.append(UnsupportedContentTypeError("expected application/json, got 'text/xml'"))
    return made


def test_a_webhook_error_says_what_a_receiver_answers() -> None:
    statuses = {
        WebhookError: 400,
        InvalidSignatureError: 401,
        InvalidPayloadError: 400,
        PayloadTooLargeError: 413,
        UnsupportedContentTypeError: 415,
    }
    for cls, status in statuses.items():
        assert cls("x").http_status == status
        assert cls("x").attempts == 0
    assert InvalidPayloadError("x", path="data.caseId").path == "data.caseId"


INSTANCES = _instances()
ATTRIBUTES = (
    "status",
    "code",
    "message",
    "request_id",
    "method",
    "url",
    "body",
    "retry_after",
    "attempts",
    "path",
    "request_sent",
    "operation",
)


def _attributes(error: AcquireError) -> dict[str, Any]:
    return {name: getattr(error, name) for name in ATTRIBUTES if hasattr(error, name)}


def test_instances_cover_every_class() -> None:
    assert {type(e) for e in INSTANCES} == set(ALL_ERRORS)


@pytest.mark.parametrize("error", INSTANCES, ids=[type(e).__name__ for e in INSTANCES])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(error: AcquireError, protocol: int) -> None:
    restored = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert type(restored) is type(error)
    assert _attributes(restored) == _attributes(error)
    assert vars(restored) == vars(error)
    assert restored.args == error.args
    assert str(restored) == str(error)
    assert repr(restored) == repr(error)


def test_pickle_keeps_every_documented_attribute() -> None:
    status = pickle.loads(pickle.dumps(_status_error(RateLimitError)))
    assert (status.status, status.code, status.message, status.request_id) == (
        409,
        "CHAT_ALREADY_JOINED",
        "You have already joined this chat.",
        "req-42",
    )
    assert (status.method, status.url, status.retry_after, status.attempts) == (
        "POST",
        URL,
        2.5,
        3,
    )
    assert status.body == b'{"error":{"code":"CHAT_ALREADY_JOINED"}}'
    connection = pickle.loads(
        pickle.dumps(APITimeoutError("t", method="GET", url=URL, request_sent=False, attempts=4))
    )
    assert (connection.method, connection.url, connection.request_sent, connection.attempts) == (
        "GET",
        URL,
        False,
        4,
    )
    decode = pickle.loads(pickle.dumps(ResponseDecodeError("d", status=200, path="$.data.id")))
    assert (decode.status, decode.path, decode.message) == (200, "$.data.id", "d")


def test_pickle_keeps_attributes_changed_after_construction() -> None:
    error = _status_error(InternalServerError)
    error.attempts = 7  # the client sets it after the retry loop
    restored = pickle.loads(pickle.dumps(error))
    assert restored.attempts == 7


@pytest.mark.parametrize("error", INSTANCES, ids=[type(e).__name__ for e in INSTANCES])
def test_copy(error: AcquireError) -> None:
    assert vars(copy.copy(error)) == vars(error)
    assert vars(copy.deepcopy(error)) == vars(error)


def test_defaults() -> None:
    status = APIStatusError("m", status=500)
    assert (status.code, status.request_id, status.method, status.url) == (None, None, "", "")
    assert (status.body, status.retry_after, status.attempts) == (b"", None, 1)
    connection = APIConnectionError("m")
    assert (connection.method, connection.url, connection.request_sent) == ("", "", True)
    assert connection.attempts == 1
    decode = ResponseDecodeError("m")
    assert (decode.status, decode.path, decode.body) == (0, None, b"")


# --------------------------------------------------------------------------- body excerpt


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 100_000])
def test_status_error_body_is_at_most_one_kib(size: int) -> None:
    body = bytes(range(256)) * (size // 256 + 1)
    body = body[:size]
    error = APIStatusError("m", status=500, body=body)
    assert error.body == body[:1024]
    assert len(error.body) == min(size, 1024)


@pytest.mark.parametrize("size", [0, 1024, 1025, 100_000])
def test_decode_error_body_is_at_most_one_kib(size: int) -> None:
    body = b"z" * size
    error = ResponseDecodeError("m", body=body)
    assert error.body == body[:1024]
    assert len(pickle.loads(pickle.dumps(error)).body) == min(size, 1024)


# --------------------------------------------------------------------------- text


def test_status_error_str_and_repr() -> None:
    error = NotFoundError(
        "Record not found",
        status=400,
        code="ERROR_RECORD_NOT_FOUND",
        method="POST",
        url=URL,
    )
    assert str(error) == f"HTTP 400 ERROR_RECORD_NOT_FOUND: Record not found (POST {URL})"
    assert repr(error) == (
        "NotFoundError(status=400, code='ERROR_RECORD_NOT_FOUND', message='Record not found')"
    )
    assert error.message == "Record not found"
    assert error.args == ("Record not found",)


def test_status_error_str_without_code_or_url() -> None:
    assert str(InternalServerError("bad gateway", status=502)) == "HTTP 502: bad gateway"
    assert str(RateLimitError("too many requests", status=429)) == "HTTP 429: too many requests"


def test_other_errors_str_is_the_message() -> None:
    assert str(APITimeoutError("timed out waiting for the server")) == (
        "timed out waiting for the server"
    )
    assert str(ResponseDecodeError("cannot decode", path="$.data")) == "cannot decode"
    assert AcquireError("x").message == "x"


def test_str_holds_no_body_bytes() -> None:
    error = InternalServerError("oops", status=500, body=b"<html>SECRET-PAGE</html>")
    assert "SECRET-PAGE" not in str(error)
    assert "SECRET-PAGE" not in repr(error)


def test_invalid_case_id_error_is_also_a_value_error_and_pickles() -> None:
    error = InvalidCaseIdError("case_id must be an int, not str", attempts=0)
    assert isinstance(error, ValueError)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is InvalidCaseIdError
    assert (again.message, again.attempts) == (error.message, 0)
