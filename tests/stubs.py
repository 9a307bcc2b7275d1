"""An in-memory Transport for the engine's and join_many's tests: no socket, no sleep."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from yarl import URL

import acquire_async as aa
from acquire_async._protocol import RawResponse

Respond = Callable[[int], "RawResponse | Awaitable[RawResponse]"]


def answer(case_id: int) -> RawResponse:
    """A join's success for ``case_id``."""
    return RawResponse(200, {}, b'{"data":{"id":%d}}' % case_id)


def refused(case_id: int) -> RawResponse:
    raise aa.APIConnectionError("connection refused (stub)", request_sent=False)


class StubTransport:
    """Runs ``respond(case_id)`` for each request (sync or async); records the ids.

    ``keep_headers`` also records each request's headers (off by default: the memory tests
    join 100,000 ids through a stub, and must measure the SDK, not this list).
    """

    def __init__(self, respond: Respond = refused, *, keep_headers: bool = False) -> None:
        self.respond = respond
        self.seen: list[int] = []
        self.headers: list[Mapping[str, str]] = []
        self.keep_headers = keep_headers

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
        case_id = json.loads(body)["caseId"]
        self.seen.append(case_id)
        if self.keep_headers:
            self.headers.append(headers)
        result: Any = self.respond(case_id)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, RawResponse)
        return result

    async def aclose(self) -> None:
        return None
