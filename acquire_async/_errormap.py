"""The error side of the wire format: which exception a failed answer becomes.

Acquire's `{"error": {"code", "message"}}` envelope, a bare status, a proxy's page: each
becomes an `APIStatusError` subclass chosen by the code (per operation: `codes`), then the
status, with the server's message or a sanitised excerpt, its request id and `Retry-After`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, Final

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from . import errors
from ._excerpt import excerpt, reason_text

__all__ = [
    "ABSENT",
    "BASE_CODES",
    "DECODE_ERRORS",
    "JOIN_CODES",
    "Codes",
    "error_for",
    "error_from_payload",
    "parse_retry_after",
    "raw_field",
    "request_id",
]

_CODE = re.compile(r"[A-Z][A-Z0-9_]+", re.ASCII)
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id")
Codes = Mapping[str, type[errors.APIStatusError]]

# ``error`` and ``message`` stay undecoded (``msgspec.Raw``: a view of the body, no copy) and
# are decoded only when present and small, so a hostile body cannot make the SDK build an
# object tree out of them. Absent, they are this very object: the fast path's check is ``is``.
ABSENT = msgspec.Raw()


class _ErrorEnvelope(msgspec.Struct, gc=False):
    # What a non-2xx body is read for. Other keys are skipped without building anything.
    error: msgspec.Raw = ABSENT
    message: msgspec.Raw = ABSENT


_ERROR_DECODER = msgspec.json.Decoder(_ErrorEnvelope)
_ANY_DECODER = msgspec.json.Decoder()
DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValueError)
# An ``error`` or ``message`` value larger than this is not decoded (it is still an error).
_FIELD_MAX = 64 * 1024
_UNREADABLE: Final = object()  # an ``error`` that is present but too large or too deep


def raw_field(raw: msgspec.Raw) -> Any:
    """A raw `error`/`message` value decoded; `None` when absent or `null`."""
    if raw is ABSENT:
        return None
    if len(raw) > _FIELD_MAX:
        return _UNREADABLE
    try:
        return _ANY_DECODER.decode(raw)
    except DECODE_ERRORS:
        return _UNREADABLE


# --------------------------------------------------------------------------- errors

BASE_CODES: Codes = MappingProxyType(
    {
        "ERROR_RECORD_NOT_FOUND": errors.NotFoundError,
        "ERROR_INVALID_INPUT": errors.BadRequestError,
        "ERROR_UNAUTHORIZED": errors.AuthenticationError,
        "ERROR_UNAUTHORIZED_ACCESS": errors.PermissionDeniedError,
        "ERROR_SERVER_ERROR": errors.InternalServerError,
        "ERROR_DUPLICATE_RECORD_FOUND": errors.ConflictError,
        "CHAT_ALREADY_JOINED": errors.ConflictError,
    }
)
# On the join endpoint both mean the agent is in the chat already: the join is done.
JOIN_CODES: Codes = MappingProxyType(
    {
        **BASE_CODES,
        "CHAT_ALREADY_JOINED": errors.AlreadyJoinedError,
        "ERROR_DUPLICATE_RECORD_FOUND": errors.AlreadyJoinedError,
    }
)

_BY_STATUS: dict[int, type[errors.APIStatusError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.UnprocessableEntityError,
    429: errors.RateLimitError,
}


def error_for(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str | None = None,
    now: float | None = None,
    codes: Codes = BASE_CODES,
) -> errors.APIStatusError:
    """The error for a non-2xx response, from its body's code (looked up in `codes`).

    Without an Acquire envelope (an nginx page, a gateway's own JSON), the message is the
    reason phrase (`reason`, else the SDK's for the status) and a sanitised excerpt:

    Examples:
        >>> error_for(413, {}, b"<html><title>413 Too Large</title></html>").message
        'request entity too large: "413 Too Large"'
    """
    error: Any = None
    message: Any = None
    if body:
        try:
            envelope = _ERROR_DECODER.decode(body)
        except DECODE_ERRORS:
            pass  # not a JSON object (an HTML error page from a proxy, say)
        else:
            error = raw_field(envelope.error)
            message = raw_field(envelope.message)
    return error_from_payload(status, headers, body, error, message, codes, now, reason)


def error_from_payload(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    error: Any,
    message: Any,
    codes: Codes,
    now: float | None,
    reason: str | None,
) -> errors.APIStatusError:
    """The error for an answer whose `error`/`message` values are already decoded."""
    headers = _ci(headers)
    code: str | None = None
    text: str | None = message if isinstance(message, str) and message else None
    if isinstance(error, dict):
        raw_code = error.get("code")
        code = raw_code if isinstance(raw_code, str) and raw_code else None
        inner = error.get("message")
        if isinstance(inner, str) and inner:
            text = inner
    elif isinstance(error, str) and error:
        if _CODE.fullmatch(error):
            code = error
        elif text is None:
            text = error
    # Acquire's code first (it is more specific than the status: ERROR_RECORD_NOT_FOUND comes
    # with 400), except that a 429 is a rate limit whatever the code says.
    cls = codes.get(code) if code and status != 429 else None
    if cls is None:
        cls = _BY_STATUS.get(status)
    if cls is None:
        cls = errors.InternalServerError if status >= 500 else errors.APIStatusError
    if text is None:
        if 300 <= status < 400:
            location = headers.get("Location", "")
            text = f"unexpected redirect (not followed) to {location!r}"
        elif 200 <= status < 300:
            text = "error envelope without message"
        else:
            text = reason_text(status, reason)
            if code is None:
                # No Acquire envelope (a proxy's page, a gateway's JSON): show what came.
                shown = excerpt(body)
                if shown:
                    text = f'{text}: "{shown}"'
    return cls(
        text,
        status=status,
        code=code,
        request_id=request_id(headers),
        body=body,
        retry_after=parse_retry_after(headers.get("Retry-After"), now=now),
    )


# --------------------------------------------------------------------------- headers


def _ci(headers: Mapping[str, str]) -> Mapping[str, str]:
    # Header names are case-insensitive (RFC 9110): aiohttp hands us a CIMultiDictProxy, but a
    # caller of this sans-I/O module may pass a plain dict with any spelling.
    if isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
        return headers
    return CIMultiDict(headers)


def request_id(headers: Mapping[str, str]) -> str | None:
    """The server's request id, from the first of the usual headers it sent.

    Examples:
        >>> request_id({"x-request-id": "req-1"})
        'req-1'
    """
    headers = _ci(headers)
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def parse_retry_after(value: str | None, *, now: float | None) -> float | None:
    """Seconds to wait from a `Retry-After` value, or `None` when absent or unusable.

    Both RFC 9110 forms: delta-seconds (`"120"`) and an HTTP-date (IMF-fixdate, RFC 850 or
    asctime, taken as UTC). A date needs `now` (a POSIX timestamp); a date in the past gives
    `0.0`. Negative numbers, `nan`, `inf` and garbage give `None`: the caller falls back
    to its own backoff (`asyncio.sleep(nan)` would never return).

    Examples:
        >>> parse_retry_after("3", now=None)
        3.0
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
        10.0
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.replace(".", "", 1).isdigit():
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    if now is None:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime has no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=timezone.utc)
    delay = when.timestamp() - now
    return max(0.0, delay) if math.isfinite(delay) else None
