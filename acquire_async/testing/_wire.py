"""How the emulator writes an answer: whole, damaged on purpose (a fault), or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web

__all__ = ["Answer", "abort", "dripped", "malformed", "respond", "truncated"]

_JSON = "application/json"
_MALFORMED_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


class Answer(NamedTuple):
    """What the emulator answers a request: status, body, headers, and whether the store
    changed."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    applied: bool


def respond(answer: Answer) -> web.Response:
    """The answer, whole, as JSON."""
    return web.Response(
        status=answer.status, body=answer.body, headers=answer.headers, content_type=_JSON
    )


def abort(request: web.Request) -> web.Response:
    """Drop the connection without answering."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp tries to send this, finds the transport closed and lets it go quietly.
    return web.Response(status=500)


def malformed(headers: Mapping[str, str]) -> web.Response:
    """A 200 whose body is a proxy's HTML page, not JSON."""
    return web.Response(status=200, body=_MALFORMED_BODY, headers=headers, content_type="text/html")


async def truncated(request: web.Request, answer: Answer) -> web.StreamResponse:
    """Promise more bytes than are sent, then close the connection."""
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.content_type = _JSON
    response.content_length = 2 * len(answer.body) + 16
    try:
        await response.prepare(request)
        await response.write(answer.body[: len(answer.body) // 2])
    except ConnectionError:
        return response
    transport = request.transport
    if transport is not None:
        transport.close()  # close, not abort: flush what was written first
    return response


async def dripped(
    request: web.Request, answer: Answer, drip_bytes: int, drip_interval: float
) -> web.StreamResponse:
    """Send the whole answer, `drip_bytes` at a time, `drip_interval` seconds apart."""
    response = web.StreamResponse(status=answer.status, headers=answer.headers)
    response.content_type = _JSON
    response.content_length = len(answer.body)
    try:
        await response.prepare(request)
        for start in range(0, len(answer.body), drip_bytes):
            if start:
                await asyncio.sleep(drip_interval)
            await response.write(answer.body[start : start + drip_bytes])
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up
    return response
