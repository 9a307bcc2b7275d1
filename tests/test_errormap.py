"""Error mapping (``_errormap``): envelopes and statuses to exceptions, request ids, Retry-After."""

from __future__ import annotations

import doctest
import json
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from multidict import CIMultiDict
from payloads import ALREADY_JOINED

import acquire_async._errormap
from acquire_async import (
    AlreadyJoinedError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from acquire_async._errormap import BASE_CODES, JOIN_CODES, error_for, parse_retry_after
from acquire_async._protocol import decode_case, decode_close, decode_message


def _raises(status: int, body: bytes, headers: Any = None, **kwargs: Any) -> Any:
    """What ``decode_case`` raises for this answer, with the join's codes unless told."""
    kwargs.setdefault("codes", JOIN_CODES)
    with pytest.raises(Exception) as info:
        decode_case(status, headers if headers is not None else {}, body, **kwargs)
    return info.value


# --------------------------------------------------------------------------- error envelopes


def test_already_joined_fixture_under_200() -> None:
    exc = _raises(200, ALREADY_JOINED, {"X-Request-Id": "req-1"})
    assert type(exc) is AlreadyJoinedError
    assert isinstance(exc, ConflictError)
    assert exc.status == 200
    assert exc.code == "CHAT_ALREADY_JOINED"
    assert exc.message == "You have already joined this chat."
    assert exc.request_id == "req-1"
    # The codec knows no request: the engine attaches method and URL (then str() shows them).
    assert exc.method == ""
    assert exc.url == ""
    assert exc.body == ALREADY_JOINED
    assert exc.retry_after is None
    assert str(exc) == ("HTTP 200 CHAT_ALREADY_JOINED: You have already joined this chat.")


def test_error_wins_over_data() -> None:
    body = b'{"data":{"id":1},"error":{"code":"ERROR_INVALID_INPUT","message":"bad"}}'
    exc = _raises(200, body)
    assert type(exc) is BadRequestError
    assert (exc.status, exc.code, exc.message) == (200, "ERROR_INVALID_INPUT", "bad")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("CHAT_ALREADY_JOINED", 200, AlreadyJoinedError),
        ("CHAT_ALREADY_JOINED", 400, AlreadyJoinedError),
        ("CHAT_ALREADY_JOINED", 409, AlreadyJoinedError),
        ("ERROR_DUPLICATE_RECORD_FOUND", 400, AlreadyJoinedError),
        ("ERROR_DUPLICATE_RECORD_FOUND", 200, AlreadyJoinedError),
        ("ERROR_RECORD_NOT_FOUND", 400, NotFoundError),
        ("ERROR_RECORD_NOT_FOUND", 200, NotFoundError),
        ("ERROR_INVALID_INPUT", 400, BadRequestError),
        ("ERROR_INVALID_INPUT", 422, BadRequestError),
        ("ERROR_UNAUTHORIZED", 401, AuthenticationError),
        ("ERROR_UNAUTHORIZED", 400, AuthenticationError),
        ("ERROR_UNAUTHORIZED_ACCESS", 403, PermissionDeniedError),
        ("ERROR_UNAUTHORIZED_ACCESS", 400, PermissionDeniedError),
        ("ERROR_SERVER_ERROR", 500, InternalServerError),
        ("ERROR_SERVER_ERROR", 200, InternalServerError),
        ("ERROR_SERVER_ERROR", 400, InternalServerError),
        # An unknown code falls back to the status.
        ("ERROR_SOMETHING_NEW", 403, PermissionDeniedError),
        ("ERROR_SOMETHING_NEW", 200, APIStatusError),
        ("ERROR_SOMETHING_NEW", 503, InternalServerError),
    ],
)
def test_code_first_mapping(code: str, status: int, expected: type[APIStatusError]) -> None:
    body = json.dumps({"error": {"code": code, "message": "msg from server", "data": None}})
    exc = _raises(status, body.encode())
    assert type(exc) is expected
    assert exc.status == status
    assert exc.code == code
    assert exc.message == "msg from server"


STATUS_CLASSES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (422, UnprocessableEntityError),
    (429, RateLimitError),
    (500, InternalServerError),
    (502, InternalServerError),
    (503, InternalServerError),
    (504, InternalServerError),
    (599, InternalServerError),
    (405, APIStatusError),
    (418, APIStatusError),
]


@pytest.mark.parametrize(("status", "expected"), STATUS_CLASSES)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"error":{"code":"ERROR_NOT_DOCUMENTED"}}',
        b"<html><body><h1>Bad Gateway</h1></body></html>",
        b"{not json",
        b"[]",
        b'{"error":null}',
    ],
)
def test_status_mapping_without_a_known_code(
    status: int, expected: type[APIStatusError], body: bytes
) -> None:
    exc = _raises(status, body)
    assert type(exc) is expected
    assert exc.status == status
    assert exc.body == body
    assert exc.message  # never empty


def test_status_message_defaults_to_the_reason() -> None:
    assert _raises(404, b"").message == "not found"
    assert _raises(503, b"").message == "service unavailable"
    assert _raises(418, b"").message == "error"


def test_error_as_a_plain_string_code() -> None:
    exc = _raises(400, b'{"error":"ERROR_RECORD_NOT_FOUND"}')
    assert type(exc) is NotFoundError
    assert exc.code == "ERROR_RECORD_NOT_FOUND"


def test_error_as_a_plain_string_message() -> None:
    exc = _raises(400, b'{"error":"Case 12 does not exist"}')
    assert type(exc) is BadRequestError
    assert exc.code is None
    assert exc.message == "Case 12 does not exist"


def test_error_string_under_200_is_an_error() -> None:
    exc = _raises(200, b'{"error":"CHAT_ALREADY_JOINED"}')
    assert type(exc) is AlreadyJoinedError
    assert exc.status == 200


def test_top_level_message() -> None:
    exc = _raises(429, b'{"message":"Slow down"}')
    assert type(exc) is RateLimitError
    assert exc.message == "Slow down"
    assert exc.code is None


def test_top_level_message_with_a_code_only_error() -> None:
    exc = _raises(400, b'{"error":{"code":"ERROR_INVALID_INPUT"},"message":"caseId missing"}')
    assert type(exc) is BadRequestError
    assert (exc.code, exc.message) == ("ERROR_INVALID_INPUT", "caseId missing")


def test_inner_message_wins_over_top_level() -> None:
    body = b'{"error":{"code":"ERROR_INVALID_INPUT","message":"inner"},"message":"outer"}'
    assert _raises(400, body).message == "inner"


def test_empty_error_envelope_under_200() -> None:
    exc = _raises(200, b'{"error":{}}')
    assert type(exc) is APIStatusError
    assert exc.status == 200
    assert exc.code is None
    assert exc.message == "error envelope without message"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_an_error_naming_the_location(status: int) -> None:
    exc = _raises(
        status,
        b"",
        {"Location": "https://evil.example/steal"},
    )
    assert type(exc) is APIStatusError
    assert exc.status == status
    assert "https://evil.example/steal" in exc.message
    assert "redirect" in exc.message
    assert "https://evil.example/steal" in str(exc)


def test_redirect_location_header_is_case_insensitive() -> None:
    exc = _raises(302, b"", {"location": "https://evil.example/x"})
    assert "https://evil.example/x" in exc.message


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Request-Id": "req-123"},
        {"x-request-id": "req-123"},
        CIMultiDict({"X-REQUEST-ID": "req-123"}),
        {"Request-Id": "req-123"},
        {"X-Amzn-RequestId": "req-123"},
        {"X-Correlation-Id": "req-123"},
    ],
)
@pytest.mark.parametrize(("status", "body"), [(404, b""), (200, ALREADY_JOINED)])
def test_request_id_from_headers(headers: Any, status: int, body: bytes) -> None:
    assert _raises(status, body, headers).request_id == "req-123"


def test_request_id_prefers_x_request_id_and_is_none_without_one() -> None:
    headers = {"X-Correlation-Id": "corr", "X-Request-Id": "req"}
    assert _raises(500, b"", headers).request_id == "req"
    assert _raises(500, b"", {}).request_id is None
    assert _raises(500, b"", {"X-Request-Id": ""}).request_id is None


@pytest.mark.parametrize(
    "headers", [{"Retry-After": "7"}, {"retry-after": "7"}, CIMultiDict({"RETRY-AFTER": "7"})]
)
def test_rate_limit_error_gets_retry_after(headers: Any) -> None:
    exc = _raises(429, b"", headers)
    assert type(exc) is RateLimitError
    assert exc.retry_after == 7.0


def test_retry_after_as_an_http_date_needs_now() -> None:
    now = datetime(2015, 10, 21, 7, 27, 50, tzinfo=timezone.utc).timestamp()
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert _raises(429, b"", headers, now=now).retry_after == 10.0
    assert _raises(429, b"", headers).retry_after is None


def test_retry_after_on_503_and_on_an_envelope() -> None:
    assert _raises(503, b"", {"Retry-After": "2"}).retry_after == 2.0
    assert _raises(200, ALREADY_JOINED, {"Retry-After": "4"}).retry_after == 4.0
    assert _raises(429, b"", {"Retry-After": "soon"}).retry_after is None
    assert _raises(429, b"").retry_after is None


# --------------------------------------------------------------------------- Retry-After

NOW = datetime(2015, 10, 21, 7, 27, 50, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (None, NOW, None),
        ("0", None, 0.0),
        ("3", None, 3.0),
        ("120", NOW, 120.0),
        ("1.5", None, 1.5),
        (" 7 ", None, 7.0),
        ("\t7\r\n", None, 7.0),
        ("-1", None, None),
        ("-0", None, None),
        ("+5", None, None),
        ("nan", NOW, None),
        ("NaN", NOW, None),
        ("inf", NOW, None),
        ("Infinity", NOW, None),
        ("1" * 400, None, None),  # overflows float to inf
        # Decision: RFC 9110 delta-seconds are digits only, so exponent notation is refused
        # (None: the caller uses its own backoff) rather than read as 1000 seconds.
        ("1e3", None, None),
        ("1e3", NOW, None),
        ("0x10", NOW, None),
        ("1.5.5", None, None),
        ("\u0663", None, None),  # Arabic-Indic digit three: not ASCII
        ("", NOW, None),
        ("   ", NOW, None),
        ("garbage", NOW, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", NOW, 10.0),  # IMF-fixdate in the future
        ("Wed, 21 Oct 2015 07:27:00 GMT", NOW, 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:27:50 GMT", NOW, 0.0),  # now
        ("Wednesday, 21-Oct-15 07:28:00 GMT", NOW, 10.0),  # RFC 850
        ("Wed Oct 21 07:28:00 2015", NOW, 10.0),  # asctime, no zone: taken as UTC
        ("Wed, 21 Oct 2015 07:28:00 GMT", None, None),  # a date without now
        ("Mon, 99 Oct 2015 07:28:00 GMT", NOW, None),  # impossible date
    ],
)
def test_parse_retry_after(value: str | None, now: float | None, expected: float | None) -> None:
    result = parse_retry_after(value, now=now)
    assert result == expected
    if expected is not None:
        assert isinstance(result, float)


def test_parse_retry_after_far_future_date() -> None:
    when = datetime(2015, 10, 21, 8, 27, 50, tzinfo=timezone.utc)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == 3600.0


# --------------------------------------------------------------------------- codes per operation

DECODERS = [decode_case, decode_message, decode_close]


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("status", [200, 400, 409])
@pytest.mark.parametrize("code", ["CHAT_ALREADY_JOINED", "ERROR_DUPLICATE_RECORD_FOUND"])
def test_already_joined_belongs_to_the_join_alone(decode: Any, status: int, code: str) -> None:
    body = json.dumps({"error": {"code": code, "message": "m"}}).encode()
    with pytest.raises(APIStatusError) as info:
        decode(status, {}, body)  # BASE_CODES: a reject or a message is not "already joined"
    assert type(info.value) is ConflictError
    assert info.value.code == code
    with pytest.raises(AlreadyJoinedError):
        decode(status, {}, body, codes=JOIN_CODES)


def test_base_and_join_codes_differ_only_in_the_join_codes() -> None:
    differ = {code for code in JOIN_CODES if JOIN_CODES[code] is not BASE_CODES.get(code)}
    assert differ == {"CHAT_ALREADY_JOINED", "ERROR_DUPLICATE_RECORD_FOUND"}
    assert set(BASE_CODES) == set(JOIN_CODES)
    assert BASE_CODES["ERROR_RECORD_NOT_FOUND"] is NotFoundError
    assert all(issubclass(cls, APIStatusError) for cls in BASE_CODES.values())


def test_the_code_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        BASE_CODES["X"] = NotFoundError  # type: ignore[index]
    with pytest.raises(TypeError):
        JOIN_CODES["CHAT_ALREADY_JOINED"] = ConflictError  # type: ignore[index]


def test_an_operation_may_bring_its_own_codes() -> None:
    codes = {**BASE_CODES, "CHAT_CLOSED": ConflictError}
    body = b'{"error":{"code":"CHAT_CLOSED","message":"closed"}}'
    assert type(error_for(400, {}, body, codes=codes)) is ConflictError
    assert type(error_for(400, {}, body)) is BadRequestError  # unknown code: the status decides


def test_error_for_knows_no_request() -> None:
    exc = error_for(404, {"X-Request-Id": "r"}, b"")
    assert (exc.method, exc.url, exc.request_id) == ("", "", "r")
    assert str(exc) == "HTTP 404: not found"


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(acquire_async._errormap)
    assert tried > 0 and failures == 0
