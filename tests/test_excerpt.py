"""What an error shows of an answer without an envelope (``_excerpt``): reason and excerpt."""

from __future__ import annotations

import doctest
import time
from typing import Any

import pytest

import acquire_async._excerpt
from acquire_async import AcquireClient, APIStatusError, InternalServerError
from acquire_async._errormap import JOIN_CODES, error_for
from acquire_async._protocol import decode_case


def _raises(status: int, body: bytes, headers: Any = None, **kwargs: Any) -> Any:
    """What ``decode_case`` raises for this answer, with the join's codes unless told."""
    kwargs.setdefault("codes", JOIN_CODES)
    with pytest.raises(Exception) as info:
        decode_case(status, headers if headers is not None else {}, body, **kwargs)
    return info.value


# --------------------------------------------------------------------------- no envelope

NGINX_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n"
    b"<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
)
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def _no_control_characters(text: str) -> bool:
    return all(char.isprintable() for char in text)


def test_a_proxy_page_gives_the_reason_phrase_and_its_text() -> None:
    exc = _raises(413, NGINX_413, reason="Request Entity Too Large")
    assert type(exc) is APIStatusError
    excerpt = "413 Request Entity Too Large 413 Request Entity Too Large nginx/1.25.3"
    assert exc.message == f'request entity too large: "{excerpt}"'
    assert str(exc) == f'HTTP 413: request entity too large: "{excerpt}"'  # no request yet
    assert exc.body == NGINX_413
    exc = _raises(502, NGINX_502, reason="Bad Gateway")
    assert type(exc) is InternalServerError
    assert exc.message == 'bad gateway: "502 Bad Gateway 502 Bad Gateway nginx"'


def test_without_a_reason_phrase_the_status_describes_itself() -> None:
    # HTTP/2 has no reason phrase, and a server may send an empty one.
    for reason in (None, "", "  \r\n"):
        exc = _raises(413, NGINX_413, reason=reason)
        assert exc.message.startswith('request entity too large: "413 Request')
        assert _raises(414, b"", reason=reason).message == "uri too long"
        assert _raises(407, b"", reason=reason).message == "proxy authentication required"
        assert _raises(599, b"", reason=reason).message == "error"


def test_a_standard_reason_phrase_reads_like_the_sdks_own() -> None:
    assert _raises(404, b"", reason="Not Found").message == "not found"
    assert _raises(414, b"", reason="Request-URI Too Large").message == "request-uri too large"
    assert _raises(413, b"", reason="Payload Too Large").message == "payload too large"
    assert _raises(418, b"", reason="I'm a Teapot").message == "i'm a teapot"


def test_a_custom_reason_phrase_is_kept_as_sent_but_sanitised() -> None:
    exc = _raises(403, b"", reason="Blocked by WAF (ref 8F3A)")
    assert exc.message == "Blocked by WAF (ref 8F3A)"
    exc = _raises(502, b"", reason="Bad\x1b[2J Gateway\r\nSet-Cookie: \x9b31mx\x00")
    assert exc.message == "Bad Gateway Set-Cookie: x"
    assert _raises(502, b"", reason="x" * 1000).message == "x" * 99 + "…"


def test_an_envelope_message_wins_over_the_reason_phrase() -> None:
    exc = _raises(
        400, b'{"error":{"code":"ERROR_INVALID_INPUT","message":"caseId?"}}', reason="Bad"
    )
    assert exc.message == "caseId?"
    # An Acquire envelope without a message: the reason alone, no excerpt of the envelope.
    exc = _raises(400, b'{"error":{"code":"ERROR_NOT_DOCUMENTED"}}', reason="Bad Request")
    assert exc.message == "bad request"
    assert _raises(429, b'{"message":"Slow down"}', reason="Too Many Requests").message == (
        "Slow down"
    )


def test_a_2xx_error_envelope_keeps_its_message_whatever_the_reason() -> None:
    assert _raises(200, b'{"error":{}}', reason="OK").message == "error envelope without message"


@pytest.mark.parametrize(
    ("body", "excerpt"),
    [
        (b'{"detail":"Payload too large"}', '{"detail":"Payload too large"}'),
        (b'{"error":null}', '{"error":null}'),
        (b"[1, 2]", "[1, 2]"),
        (
            b"upstream connect error or disconnect/reset before headers",
            "upstream connect error or disconnect/reset before headers",
        ),
        (b"  line one\n\n\tline two  ", "line one line two"),
        (
            b"\x1b[31mred\x1b[0m \x1b]0;title\x07 a\x00b\tc\xe2\x80\xaeevil\xe2\x80\x8b\n d",
            "red a b cevil d",
        ),
        (b"\xc2\x9b2Jclear \x1bcreset \x1b]8;;http://x\x1b\\link", "clear reset link"),
        (b"caf\xc3\xa9 \xff\xfe end", "café \ufffd\ufffd end"),
        (
            b"<!DOCTYPE html><html><head><style>body{color:red}</style>"
            b"<script>var k = '<b>';</script><!-- hidden --><title>Oops &amp; sorry</title>"
            b"</head><body><p>Try&nbsp;again</p></body></html>",
            "Oops & sorry Try again",
        ),
        (b"<html><body>Before<script>never closed", "Before"),
        (b"<p>&#27;[31mno escape&#0;</p>", "[31mno escape\ufffd"),  # html.unescape drops ESC
        (b"   \r\n ", None),
        (b"<html><body></body></html>", None),
    ],
)
def test_the_excerpt_of_a_body_without_envelope(body: bytes, excerpt: str | None) -> None:
    exc = _raises(500, body, reason="Internal Server Error")
    if excerpt is None:  # nothing printable: the reason alone
        assert exc.message == "internal server error"
    else:
        assert exc.message == f'internal server error: "{excerpt}"'
    assert _no_control_characters(exc.message)


def test_a_long_excerpt_is_cut_with_an_ellipsis() -> None:
    body = b"<html><body>" + b"word " * 10_000 + b"</body></html>"
    exc = _raises(503, body, reason="Service Unavailable")
    excerpt = exc.message.removeprefix('service unavailable: "').removesuffix('"')
    assert len(excerpt) == 200 and excerpt.endswith("…")
    assert excerpt.startswith("word word")
    exc = _raises(503, b"x" * 5_000, reason="Service Unavailable")
    assert exc.message == 'service unavailable: "' + "x" * 199 + '…"'


def test_an_excerpt_reads_only_the_start_of_a_huge_body() -> None:
    body = b"<html><body><p>Gateway down</p>" + b"<div></div>" * 800_000 + b"</body></html>"
    started = time.perf_counter()
    exc = _raises(502, body, reason="Bad Gateway")
    assert time.perf_counter() - started < 0.5  # a hang guard, not a benchmark
    assert exc.message == 'bad gateway: "Gateway down…"'


def test_error_for_takes_the_reason_too() -> None:
    exc = error_for(413, {}, NGINX_413, reason="Request Entity Too Large")
    assert exc.message.startswith('request entity too large: "413')
    assert error_for(404, {}, b"").message == "not found"


async def test_a_proxy_page_over_the_wire_reads_as_its_reason_and_text() -> None:
    from aiohttp import web
    from faultserver import FaultServer

    async def nginx_413(request: web.Request, server: FaultServer, case_id: int) -> web.Response:
        return web.Response(
            status=413, reason="Request Entity Too Large", body=NGINX_413, content_type="text/html"
        )

    async with FaultServer(default=nginx_413) as server:
        async with AcquireClient(base_url=server.base_url, api_key="k") as client:
            with pytest.raises(APIStatusError) as info:
                await client.join_chat(1684)
    assert info.value.status == 413
    assert info.value.message == (
        'request entity too large: "413 Request Entity Too Large '
        '413 Request Entity Too Large nginx/1.25.3"'
    )


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(acquire_async._excerpt)
    assert tried > 0 and failures == 0
