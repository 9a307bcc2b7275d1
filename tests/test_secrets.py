"""The API key canary: it must never show up in a repr, an error, a traceback or a log."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import pickle
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from multidict import CIMultiDict, CIMultiDictProxy
from payloads import ALREADY_JOINED, JOIN_RESPONSE, JOIN_URL
from stubs import StubTransport, answer
from yarl import URL

import acquire_async
from acquire_async import (
    AcquireClient,
    AcquireError,
    AlreadyJoinedError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
)
from acquire_async._secrets import RedactedStr, Secret, validate_api_key

PACKAGE_DIR = str(Path(acquire_async.__file__).parent) + os.sep

CANARY = "sk-CANARY-1234567890"
# One retry where the error allows it (more frames, more log records), never a long sleep.
POLICY = RetryPolicy(max_attempts=2, backoff_base=0.001, max_retry_after=1.0)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACQUIRE_ACCOUNT_ID", raising=False)
    monkeypatch.delenv("ACQUIRE_API_KEY", raising=False)


def _assert_clean(text: str) -> None:
    assert CANARY not in text
    assert CANARY[3:] not in text  # also not a fragment of it


# --------------------------------------------------------------------------- the client


async def test_client_repr_str_vars_and_headers_hide_the_key() -> None:
    # The headers every transport is handed (a user's own, logging one, say) hide the key.
    stub = StubTransport(answer, keep_headers=True)
    client = AcquireClient("acme", CANARY, transport=stub)
    await client.join_chat(5)
    _assert_clean(repr(client))
    _assert_clean(str(client))
    _assert_clean(f"{client!r} {client}")
    _assert_clean(repr(vars(client)))
    (headers,) = stub.headers
    _assert_clean(repr(headers))
    _assert_clean(str(headers))
    _assert_clean(repr(dict(headers)))
    _assert_clean(repr(list(headers.items())))
    _assert_clean(repr(headers["Authorization"]))
    # The value itself still carries the key: that is what is sent.
    assert headers["Authorization"] == f"Bearer {CANARY}"
    assert client.base_url == "https://acme.acquire.io/api/v1"
    with pytest.raises(TypeError):
        pickle.dumps(headers)
    await client.aclose()


# --------------------------------------------------------------------------- holders


def test_secret_holder() -> None:
    secret = Secret(CANARY)
    assert secret.reveal() == CANARY
    _assert_clean(repr(secret))
    _assert_clean(str(secret))
    _assert_clean(f"{secret}")
    _assert_clean(repr([secret, {"k": secret}]))
    assert not hasattr(secret, "__dict__")
    with pytest.raises(TypeError):
        vars(secret)
    assert secret == Secret(CANARY)
    assert secret != Secret("other")
    assert secret != CANARY
    assert hash(secret) == hash(Secret(CANARY))


def test_redacted_str() -> None:
    value = RedactedStr(f"Bearer {CANARY}")
    assert value == f"Bearer {CANARY}"
    assert str(value) == f"Bearer {CANARY}"
    assert f"{value}" == f"Bearer {CANARY}"
    assert value.encode() == f"Bearer {CANARY}".encode()
    _assert_clean(repr(value))
    _assert_clean(repr({"Authorization": value}))
    _assert_clean(repr(CIMultiDict({"Authorization": value})))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("holder", [Secret(CANARY), RedactedStr(CANARY)], ids=["Secret", "Str"])
def test_holders_refuse_pickling(holder: object, protocol: int) -> None:
    with pytest.raises(TypeError) as info:
        pickle.dumps(holder, protocol=protocol)
    _assert_clean(str(info.value))


@pytest.mark.parametrize("holder", [Secret(CANARY), RedactedStr(CANARY)], ids=["Secret", "Str"])
def test_holders_refuse_copy_by_reduce(holder: object) -> None:
    with pytest.raises(TypeError):
        copy.deepcopy([holder])


# --------------------------------------------------------------------------- validation

BAD_KEYS: list[tuple[object, type[Exception]]] = [
    ("", ValueError),
    (" " + CANARY, ValueError),
    (CANARY + " ", ValueError),
    (CANARY + "\n", ValueError),
    (CANARY + "\r\nX-Evil: y", ValueError),
    (CANARY + "\t", ValueError),
    (CANARY + "\x00", ValueError),
    (CANARY + "\u00e9", ValueError),
    (CANARY + "\u2028", ValueError),
    (CANARY.encode(), TypeError),
    (123, TypeError),
    ([CANARY], TypeError),
]


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
def test_bad_api_key_message_hides_the_key(key: object, error: type[Exception]) -> None:
    with pytest.raises(error) as direct:
        validate_api_key(Secret(key))  # type: ignore[arg-type]
    with pytest.raises(error) as via_client:
        AcquireClient("acme", key)  # type: ignore[arg-type]
    for exc in (direct.value, via_client.value):
        assert type(exc) is error
        _assert_clean(str(exc))
        _assert_clean(repr(exc))
        _assert_clean(repr(exc.args))
        assert "api_key" in str(exc)
    # As Sentry captures it: the locals of every SDK frame, repr'd (this test's own frame
    # holds the key as its parameter, so only the SDK's frames are scanned).
    if isinstance(key, str) and len(key) > 8:
        for frame, _ in traceback.walk_tb(via_client.value.__traceback__):
            # The package's own frames (not a folder that happens to be named acquire_async...,
            # as an unpacked sdist is).
            if frame.f_code.co_filename.startswith(PACKAGE_DIR):
                for name, value in frame.f_locals.items():
                    assert key.strip() not in repr(value), (frame.f_code.co_name, name)


def test_bad_api_key_from_env_message_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACQUIRE_API_KEY", CANARY + "\r\nX: y")
    with pytest.raises(ValueError, match="api_key") as info:
        AcquireClient("acme")
    _assert_clean(str(info.value))


def test_good_key_is_accepted() -> None:
    assert validate_api_key(Secret(CANARY)).reveal() == CANARY
    assert validate_api_key(Secret("a b")).reveal() == "a b"  # inner spaces are printable


# --------------------------------------------------------------------------- errors


def _response_error() -> aiohttp.ClientResponseError:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {CANARY}"}))
    info = aiohttp.RequestInfo(URL(JOIN_URL), "POST", headers, URL(JOIN_URL))
    return aiohttp.ClientResponseError(info, (), status=502, message="Bad Gateway")


def _mock(kind: str) -> Callable[[aioresponses], None]:
    def setup(mock: aioresponses) -> None:
        if kind == "401":
            mock.post(JOIN_URL, status=401, body=b'{"error":{"code":"ERROR_UNAUTHORIZED"}}')
        elif kind == "429":
            mock.post(JOIN_URL, status=429, headers={"Retry-After": "7"}, body=b"")
        elif kind == "500":
            mock.post(JOIN_URL, status=500, body=b"<html>oops</html>", repeat=True)
        elif kind == "envelope":
            mock.post(JOIN_URL, status=200, body=ALREADY_JOINED)
        elif kind == "malformed":
            mock.post(JOIN_URL, status=200, body=b'{"data":{"id":"x"}}')
        elif kind == "connection":
            mock.post(
                JOIN_URL, exception=aiohttp.ClientConnectionError("reset by peer"), repeat=True
            )
        elif kind == "response-error":
            mock.post(JOIN_URL, exception=_response_error(), repeat=True)
        elif kind == "timeout":
            mock.post(JOIN_URL, exception=asyncio.TimeoutError(), repeat=True)
        # A server that echoes the key back, in every place server text reaches an error.
        elif kind == "echo-401":
            message = f"Invalid API key: {CANARY}"
            body = json.dumps({"error": {"code": "ERROR_UNAUTHORIZED", "message": message}})
            mock.post(JOIN_URL, status=401, body=body.encode())
        elif kind == "echo-json-escaped":
            body = json.dumps({"error": {"message": f'bad key "{CANARY}"'}})
            mock.post(JOIN_URL, status=400, body=body.encode())
        elif kind == "echo-html-502":
            page = f"<html><body>upstream said: Authorization: Bearer {CANARY}</body></html>"
            mock.post(JOIN_URL, status=502, body=page.encode(), repeat=True)
        elif kind == "echo-cut-excerpt":
            # The key straddles the 1 KiB body excerpt and the 200-character message excerpt.
            for cut in (1024, 200):
                pad = "x" * (cut - len('{"error": "') - 6)
                body = ('{"error": "' + pad + CANARY + '"}').encode()
                mock.post(JOIN_URL, status=400, body=body)
        elif kind == "echo-decode":
            mock.post(JOIN_URL, status=200, body=f'{{"data": {{"id": "{CANARY}"}}}}'.encode())
        elif kind == "echo-redirect":
            mock.post(JOIN_URL, status=302, headers={"Location": f"https://x/?key={CANARY}"})
        elif kind == "echo-request-id":
            mock.post(
                JOIN_URL, status=403, headers={"X-Request-Id": CANARY}, body=b"{}", repeat=True
            )
        else:  # pragma: no cover
            raise AssertionError(kind)

    return setup


ERROR_KINDS = {
    "401": AuthenticationError,
    "429": RateLimitError,
    "500": InternalServerError,
    "envelope": AlreadyJoinedError,
    "malformed": ResponseDecodeError,
    "connection": APIConnectionError,
    "response-error": APIConnectionError,
    "timeout": APITimeoutError,
    "echo-401": AuthenticationError,
    "echo-json-escaped": BadRequestError,
    "echo-html-502": InternalServerError,
    "echo-cut-excerpt": BadRequestError,
    "echo-decode": ResponseDecodeError,
    "echo-redirect": APIStatusError,
    "echo-request-id": PermissionDeniedError,
}


async def _capture(call: Awaitable[Any]) -> AcquireError:
    # The error is caught here, in a frame that holds no key, so the traceback below covers
    # the SDK's frames only.
    try:
        await call
    except AcquireError as exc:
        return exc
    raise AssertionError("the call did not fail")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


@pytest.mark.parametrize("kind", ERROR_KINDS)
async def test_no_error_carries_the_key(
    kind: str, mock_http: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="acquire_async")
    _mock(kind)(mock_http)
    async with AcquireClient("acme", CANARY, retry=POLICY) as client:
        exc = await _capture(client.join_chat(1684))
        again = kind in ("500", "echo-cut-excerpt")
        exc_response = await _capture(client.join_chat_response(1684)) if again else exc

    assert type(exc) is ERROR_KINDS[kind]
    assert type(exc_response) is ERROR_KINDS[kind]
    # The key really was in play: it was sent on every attempt.
    calls = mock_http.requests[("POST", URL(JOIN_URL))]
    assert calls
    assert all(c.kwargs["headers"]["Authorization"] == f"Bearer {CANARY}" for c in calls)

    for error in (exc, exc_response):
        _assert_clean(str(error))
        _assert_clean(repr(error))
        _assert_clean(repr(error.args))
        _assert_clean(repr(vars(error)))
        _assert_clean(str(getattr(error, "body", b"").decode("utf-8", "replace")))
        for linked in _chain(error):
            _assert_clean(str(linked))
            _assert_clean(repr(linked))
            _assert_clean(repr(linked.args))
            assert not isinstance(linked, aiohttp.ClientError)
        with_locals = traceback.TracebackException.from_exception(error, capture_locals=True)
        _assert_clean("".join(with_locals.format()))
        _assert_clean("".join(traceback.format_exception(error)))

    assert caplog.records  # the DEBUG attempt records were captured
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s")
    for record in caplog.records:
        _assert_clean(record.getMessage())
        _assert_clean(repr(record.args))
        _assert_clean(formatter.format(record))
    _assert_clean(caplog.text)


async def test_logging_an_error_with_exc_info_hides_the_key(
    mock_http: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mock_http.post(JOIN_URL, exception=_response_error(), repeat=True)
    async with AcquireClient("acme", CANARY, retry=POLICY) as client:
        exc = await _capture(client.join_chat(1684))
    logging.getLogger("acquire_async.tests").error("join failed", exc_info=exc)
    assert "join failed" in caplog.text
    assert "APIConnectionError" in caplog.text
    _assert_clean(caplog.text)


async def test_success_path_logs_hide_the_key(
    mock_http: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mock_http.post(JOIN_URL, status=405)
    mock_http.get(JOIN_URL, body=JOIN_RESPONSE)
    async with AcquireClient("acme", CANARY) as client:
        response = await client.join_chat_response(1684)
        _assert_clean(repr(client))
        _assert_clean(repr(vars(client)))
    _assert_clean(repr(response))
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    _assert_clean(caplog.text)
