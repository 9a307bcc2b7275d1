"""`MockTransport`: a Transport that answers from a function, for unit tests without HTTP.

Like httpx's `MockTransport`: the client builds its requests as usual and hands them to a
handler of yours, which answers with a `MockResponse` (or raises a connection error).
No socket, no body cap, no retries of its own: the client's engine does the rest.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from acquire_async import RawResponse
from acquire_async.errors import APITimeoutError

__all__ = ["Handler", "MockRequest", "MockResponse", "MockTransport"]

_UNSET: Any = object()


class MockRequest:
    """One request the client sent, as a `MockTransport` handler sees it.

    Attributes:
        method: `"POST"`, `"GET"`…
        url: the full URL, as a `str`.
        headers: the request headers (names case-insensitive), `Authorization` included.
        body: the body bytes.
        timeout: the seconds left before the call's deadline, or `None`.
        idempotent: `False` when the client must never send this request twice
            (`add_message`).

    Its `repr` shows only the method and URL: the headers carry the API key.

    Example:
        ```python
        def handler(request: MockRequest) -> MockResponse:
            assert request.json()["caseId"] == 1684
            return MockResponse(json={"data": {"id": 1684}})
        ```
    """

    __slots__ = ("body", "headers", "idempotent", "method", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> None:
        self.method = method
        self.url = url
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(headers))
        self.body = body
        self.timeout = timeout
        self.idempotent = idempotent

    def json(self) -> Any:
        """The body decoded as JSON (a `ValueError` if it is not JSON)."""
        return msgspec.json.decode(self.body)

    def __repr__(self) -> str:
        return f"<MockRequest {self.method} {self.url}>"


class MockResponse:
    """What a `MockTransport` handler answers: a status, headers and a body.

    Give the body as `json=` (encoded for you, with `Content-Type: application/json`
    unless `headers` has one) or as `body=` bytes, not both. `reason` is the status
    line's phrase (`"Request Entity Too Large"`), if the test needs one.

    Example:
        ```python
        MockResponse(json={"data": {"id": 1684, "status": "active"}})
        MockResponse(503, body=b"<html>Service Unavailable</html>", headers={"Retry-After": "1"})
        ```
    """

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        *,
        json: Any = _UNSET,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status must be an int, not {type(status).__name__}")
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status, 100-599 (got {status})")
        if body is not None and not isinstance(body, bytes):
            raise TypeError(f"body must be bytes, not {type(body).__name__}")
        if body is not None and json is not _UNSET:
            raise ValueError("give json= or body=, not both")
        if headers is not None and not isinstance(headers, Mapping):
            raise TypeError(f"headers must be a mapping, not {type(headers).__name__}")
        merged: CIMultiDict[str] = CIMultiDict()
        for name, value in (headers or {}).items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("headers must map str names to str values")
            merged.add(name, value)
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"reason must be a str or None, not {type(reason).__name__}")
        if json is not _UNSET:
            try:
                body = msgspec.json.encode(json)
            except TypeError as exc:
                raise TypeError(f"json is not JSON-serializable: {exc}") from None
            merged.setdefault("Content-Type", "application/json")
        self.status = status
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(merged)
        self.body = body if body is not None else b""
        self.reason = reason

    def __repr__(self) -> str:
        return f"<MockResponse {self.status} {len(self.body)} bytes>"


Handler = Callable[[MockRequest], "MockResponse | Awaitable[MockResponse]"]
"""A `MockTransport` handler: a function or coroutine function of a request."""


class MockTransport:
    """A Transport whose answers come from `handler`: unit tests without a server.

    `handler` gets a `MockRequest` and returns a `MockResponse`; it may be
    `async`, and it may raise `APIConnectionError` (or a subclass) to
    play a network failure. An async handler still running when the attempt's `timeout`
    ends is cancelled, and the attempt fails with `APITimeoutError`
    (`request_sent=True`). `aclose()` does nothing.

    Example:
        ```python
        def handler(request: MockRequest) -> MockResponse:
            return MockResponse(json={"data": {"id": 1684, "status": "active"}})

        async with AcquireClient("acme", "key", transport=MockTransport(handler)) as client:
            case = await client.join_chat(1684)
        ```
    """

    def __init__(self, handler: Handler) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        self.handler = handler

    async def send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        body: bytes,
        *,
        timeout: float | None = None,
        idempotent: bool = True,
    ) -> RawResponse:
        """Hand the request to the handler; return its answer as the client's raw response."""
        request = MockRequest(
            method, str(url), headers, bytes(body), timeout=timeout, idempotent=idempotent
        )
        answer = self.handler(request)
        if inspect.isawaitable(answer):
            answer = await self._wait(answer, request)
        if not isinstance(answer, MockResponse):
            raise TypeError(
                f"a MockTransport handler must return a MockResponse, not {type(answer).__name__}"
            )
        return RawResponse(answer.status, answer.headers, answer.body, answer.reason)

    async def aclose(self) -> None:
        """Nothing to close."""

    @staticmethod
    async def _wait(answer: Awaitable[MockResponse], request: MockRequest) -> MockResponse:
        if request.timeout is None:
            return await answer
        try:
            return await asyncio.wait_for(answer, request.timeout)
        except asyncio.TimeoutError:
            # asyncio.TimeoutError is TimeoutError from 3.11 on, its own class on 3.10.
            raise APITimeoutError(
                f"the handler did not answer within {request.timeout:g} s",
                method=request.method,
                url=request.url,
                request_sent=True,
            ) from None

    def __repr__(self) -> str:
        return f"<MockTransport {self.handler!r}>"
