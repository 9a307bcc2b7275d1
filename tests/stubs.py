"""An in-memory transport for the engine's and join_many's tests: ``MockTransport`` scripted by
case id, recording the ids it was asked for."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import acquire_async as aa
from acquire_async.testing import MockRequest, MockResponse, MockTransport

Respond = Callable[[int], "MockResponse | Awaitable[MockResponse]"]


def answer(case_id: int) -> MockResponse:
    """A join's success for ``case_id``."""
    return MockResponse(body=b'{"data":{"id":%d}}' % case_id)


def refused(case_id: int) -> MockResponse:
    raise aa.APIConnectionError("connection refused (stub)", request_sent=False)


class StubTransport(MockTransport):
    """Runs ``respond(case_id)`` for each request (sync or async); records the ids.

    ``keep_headers`` also records each request's headers (off by default: the memory tests
    join 100,000 ids through a stub, and must measure the SDK, not this list).
    """

    def __init__(self, respond: Respond = refused, *, keep_headers: bool = False) -> None:
        super().__init__(self._handle)
        self.respond = respond
        self.seen: list[int] = []
        self.headers: list[Mapping[str, str]] = []
        self.keep_headers = keep_headers

    async def _handle(self, request: MockRequest) -> MockResponse:
        case_id = request.json()["caseId"]
        self.seen.append(case_id)
        if self.keep_headers:
            self.headers.append(request.headers)
        result: Any = self.respond(case_id)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        # MockTransport's repr shows its handler, here a method of this very object.
        return f"<StubTransport {len(self.seen)} requests>"
