"""What an error shows of a server's answer: a safe reason phrase and a short body excerpt.

A proxy's HTML page, a gateway's JSON or a hostile body becomes one printable line: no
terminal escape sequences, no control or invisible characters, bounded in length, and
computed from a bounded prefix of the body whatever its size.
"""

from __future__ import annotations

import html
import re
from http import HTTPStatus

__all__ = ["EXCERPT_LIMIT", "clean", "excerpt", "reason_text"]

EXCERPT_LIMIT = 200

_REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    407: "proxy authentication required",
    408: "request timeout",
    409: "conflict",
    410: "gone",
    411: "length required",
    413: "request entity too large",
    414: "uri too long",
    415: "unsupported media type",
    421: "misdirected request",
    422: "unprocessable entity",
    429: "too many requests",
    431: "request header fields too large",
    500: "internal server error",
    501: "not implemented",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    505: "http version not supported",
    511: "network authentication required",
}
# Reason phrases read as the SDK's own descriptions (lower case) when they are a standard
# one; any other phrase is kept as the server sent it (it may hold a reference to quote).
_STANDARD_REASONS = frozenset(
    {*_REASONS.values(), *(status.phrase.lower() for status in HTTPStatus)}
    | {"payload too large", "request-uri too long", "request-uri too large", "uri too large"}
)
_REASON_LIMIT = 100
# How much of a body an excerpt reads: bounded work, whatever the body's size.
_EXCERPT_SCAN = 8 * 1024
# Terminal escape sequences (CSI, OSC, two-byte ESC sequences; 7- and 8-bit forms), removed
# whole. Whatever is left of a malformed one loses its ESC below, so it cannot act.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Markup that is not text: scripts, styles, comments (each match ends at its close or at the
# end of the text, so the scan stays linear), then any tag.
_HIDDEN = re.compile(
    r"<(script|style)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]*(?:>|\Z)")


def clean(text: str, limit: int) -> str:
    """`text` made safe to print: no escape sequences or control characters, whitespace
    collapsed, cut to `limit` characters with an ellipsis.

    Examples:
        >>> clean("red\\x1b[31m alert\\r\\n", 100)
        'red alert'
    """
    text = _ESCAPES.sub("", text)
    if not text.isprintable():
        # C0, DEL, C1 and Unicode spaces become spaces; other invisible characters (bidi
        # overrides, zero-width joiners, private use) are dropped.
        text = "".join(
            char if char.isprintable() else " " if char < "\xa0" or char.isspace() else ""
            for char in text
        )
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def excerpt(body: bytes) -> str:
    """A short, printable excerpt of a body that is not an Acquire envelope.

    HTML (a body that starts with `<`) is reduced to its text: a proxy's error page then
    reads "413 Request Entity Too Large nginx" instead of a line of markup.

    Examples:
        >>> excerpt(b"<html><title>502 Bad Gateway</title><p>nginx</p></html>")
        '502 Bad Gateway nginx'
    """
    text = body[:_EXCERPT_SCAN].decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        text = html.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", text)))
    text = clean(text, EXCERPT_LIMIT)
    if text and len(body) > _EXCERPT_SCAN and not text.endswith("…"):
        text += "…"
    return text


def reason_text(status: int, reason: str | None) -> str:
    """The status's description: the server's reason phrase when it sent one, else ours.

    Examples:
        >>> reason_text(404, "Not Found"), reason_text(403, "Blocked by WAF")
        ('not found', 'Blocked by WAF')
        >>> reason_text(502, None)
        'bad gateway'
    """
    if reason:
        phrase = clean(reason, _REASON_LIMIT)
        if phrase:
            lowered = phrase.lower()
            return lowered if lowered in _STANDARD_REASONS else phrase
    return _REASONS.get(status, "error")
