"""The sans-I/O core: turn a response into a ``Case`` or an error.

Nothing here touches a socket, a clock or an event loop, so all of it is tested with plain
bytes (the model is gidgethub's ``sansio.py``). ``_transport`` moves the bytes; ``_client``
decides when to try again. The request side (paths, headers, bodies) lives in ``_bodies``,
argument checks in ``_checks``, the sanitised reason and excerpt of an error in
``_excerpt``; this module re-exports what the client imports of them for now.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, Final

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from . import errors
from ._bodies import JOIN_PATH, Endpoint, build_endpoint, join_body
from ._checks import validate_account_id, validate_case_id
from ._excerpt import EXCERPT_LIMIT, excerpt, reason_text
from .models import UNKNOWN_USER_TAG, Case

__all__ = [
    "JOIN_PATH",
    "Endpoint",
    "RawResponse",
    "build_endpoint",
    "decode_join",
    "error_for",
    "join_body",
    "parse_retry_after",
    "request_id",
    "validate_account_id",
    "validate_case_id",
]

_CODE = re.compile(r"[A-Z][A-Z0-9_]+", re.ASCII)

REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id")


# A Struct, not a NamedTuple: one is built per attempt, and a NamedTuple's Python-level
# __new__ costs about 0.3 µs against 0.08 µs.
class RawResponse(msgspec.Struct, frozen=True, gc=False):
    """What one HTTP attempt produced: status, headers and the whole (capped) body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str | None = None  # the status line's reason phrase ("Request Entity Too Large")


# --------------------------------------------------------------------------- responses

# ``error`` and ``message`` stay undecoded (``msgspec.Raw``: a view of the body, no copy) and
# are decoded only when present and small, so a hostile body cannot make the SDK build an
# object tree out of them. Absent, they are this very object: the fast path's check is ``is``.
_ABSENT = msgspec.Raw()


class _Envelope(msgspec.Struct, gc=False):
    # Acquire wraps everything: {"data": <case>} or {"error": …}.
    data: Case | None = None
    error: msgspec.Raw = _ABSENT
    message: msgspec.Raw = _ABSENT


class _ErrorEnvelope(msgspec.Struct, gc=False):
    # What a non-2xx body is read for. Other keys are skipped without building anything.
    error: msgspec.Raw = _ABSENT
    message: msgspec.Raw = _ABSENT


class _LenientEnvelope(msgspec.Struct, gc=False):
    # The second pass converts an already-decoded tree; ``error`` and ``message`` vary in shape.
    data: Case | None = None
    error: Any = None
    message: Any = None


_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)
_ERROR_DECODER = msgspec.json.Decoder(_ErrorEnvelope)
_ANY_DECODER = msgspec.json.Decoder()
_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValueError)
# The lenient pass builds a Python object for every JSON value: about 30 times the body in
# memory and 0.2 ms per KiB. Above this size it is not tried, so a hostile 8 MiB body costs
# one typed decode (which stops at the first bad field), not seconds and hundreds of MB.
# A real case is about 3 KiB, plus about 0.4 KiB per participant.
LENIENT_MAX_BODY = 256 * 1024
# An ``error`` or ``message`` value larger than this is not decoded (it is still an error).
_FIELD_MAX = 64 * 1024
_UNREADABLE: Final = object()  # an ``error`` that is present but too large or too deep


def _field(raw: msgspec.Raw) -> Any:
    """A raw ``error``/``message`` value decoded; ``None`` when absent or ``null``."""
    if raw is _ABSENT:
        return None
    if len(raw) > _FIELD_MAX:
        return _UNREADABLE
    try:
        return _ANY_DECODER.decode(raw)
    except _DECODE_ERRORS:
        return _UNREADABLE


def _ci(headers: Mapping[str, str]) -> Mapping[str, str]:
    # Header names are case-insensitive (RFC 9110): aiohttp hands us a CIMultiDictProxy, but a
    # caller of this sans-I/O module may pass a plain dict with any spelling.
    if isinstance(headers, (CIMultiDict, CIMultiDictProxy)):
        return headers
    return CIMultiDict(headers)


def request_id(headers: Mapping[str, str]) -> str | None:
    """The server's request id, from the first of the usual headers it sent."""
    headers = _ci(headers)
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def decode_join(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str = "",
    url: str = "",
    now: float | None = None,
    reason: str | None = None,
    case_id: int | None = None,
) -> Case:
    """Turn a join response into its ``Case``, or raise the matching ``AcquireError``.

    An ``{"error": …}`` envelope is an error whatever the status (Acquire sends
    ``CHAT_ALREADY_JOINED`` with 200). Any status outside 2xx is an error. ``now`` (a POSIX
    timestamp) lets an HTTP-date ``Retry-After`` become seconds. ``reason`` is the status
    line's reason phrase, for the message of an error without an Acquire envelope.
    ``case_id``, the case the request named, makes a case with another id a
    ``ResponseDecodeError`` (a stray answer, not this join's).

    >>> decode_join(200, {}, b'{"data":{"id":1684}}', case_id=1684).id
    1684
    """
    if not 200 <= status < 300:
        raise error_for(status, headers, body, method=method, url=url, now=now, reason=reason)
    # The common case inline: one typed decode, three checks (this function runs per join).
    problem: BaseException | None = None
    try:
        envelope = _ENVELOPE_DECODER.decode(body)
    except _DECODE_ERRORS as exc:
        problem = exc
    else:
        data = envelope.data
        if data is not None and envelope.error is _ABSENT:
            if data.id == case_id or case_id is None:
                return data
            raise _stray(data.id, case_id, status, body, method, url)
    if problem is None:
        data, error, message = envelope.data, _field(envelope.error), _field(envelope.message)
    else:
        data, error, message = _recover(problem, status, body, method, url)
    if error is not None:
        raise _error_from_payload(
            status, headers, body, error, message, method, url, now=now, reason=reason
        )
    if data is None:
        excerpt = body[:EXCERPT_LIMIT].decode("utf-8", "replace")
        raise errors.ResponseDecodeError(
            f"response has neither 'data' nor 'error' (HTTP {status}); body starts {excerpt!r}",
            status=status,
            body=body,
            method=method,
            url=url,
        )
    if case_id is not None and data.id != case_id:
        raise _stray(data.id, case_id, status, body, method, url)
    return data


def _stray(
    got: int, wanted: int, status: int, body: bytes, method: str, url: str
) -> errors.ResponseDecodeError:
    # A reused connection that delivers an earlier request's answer, a proxy or cache that
    # mixes responses up: the join of ``wanted`` may or may not have happened.
    return errors.ResponseDecodeError(
        f"the response is for case {got}, not the requested case {wanted} "
        f"(HTTP {status}): a stray answer, not this join's",
        status=status,
        path="$.data.id",
        body=body,
        method=method,
        url=url,
    )


def _recover(
    problem: BaseException, status: int, body: bytes, method: str, url: str
) -> tuple[Case | None, Any, Any]:
    """After the typed decode failed: the lenient pass, or the ResponseDecodeError."""
    note = ""
    if isinstance(problem, msgspec.ValidationError):
        # Valid JSON of an unexpected shape: try once more with the known quirks smoothed
        # over, if the body is small enough for that to be cheap. Only this error path pays
        # for it; the fast path above is one typed decode.
        if len(body) > LENIENT_MAX_BODY:
            note = f" (a {len(body)}-byte body is too large for the lenient second pass)"
        else:
            try:
                envelope = _decode_lenient(body)
            except msgspec.ValidationError as again:
                problem = again  # with the quirks smoothed over, this names the real bad field
            except (msgspec.MsgspecError, RecursionError, ValueError):
                pass
            else:
                return envelope.data, envelope.error, envelope.message
    raise _decode_error(problem, status, body, method, url, note)


def _decode_error(
    problem: BaseException, status: int, body: bytes, method: str, url: str, note: str = ""
) -> errors.ResponseDecodeError:
    # Built from the message only (never chained), so no frame of msgspec's is kept alive.
    text = str(problem)
    path = None
    if isinstance(problem, msgspec.ValidationError) and " - at `" in text:
        text, _, rest = text.partition(" - at `")
        path = rest.rstrip("`")
    elif isinstance(problem, RecursionError):
        text = "JSON nested too deeply"
    elif isinstance(problem, UnicodeDecodeError):
        text = "response is not valid UTF-8"
    where = f" at {path}" if path else ""
    excerpt = body[:EXCERPT_LIMIT].decode("utf-8", "replace")
    return errors.ResponseDecodeError(
        f"cannot decode the response (HTTP {status}): {text}{where}{note}; body starts {excerpt!r}",
        status=status,
        path=path,
        body=body,
        method=method,
        url=url,
    )


def _decode_lenient(body: bytes) -> _LenientEnvelope:
    """Second pass over a case that failed the typed decode, with Acquire's quirks fixed.

    - a participant ``type`` this SDK does not know decodes as ``UnknownUser`` (msgspec's
      tagged unions have no catch-all tag);
    - a nested ``user`` sent without ``type`` (Acquire's add-message example of 2021-04-08)
      takes the participant's own ``type``;
    - ``"users": null`` reads as no users, like an absent ``users``.

    Only for bodies up to ``LENIENT_MAX_BODY``: it costs an object per JSON value.
    """
    tree = _ANY_DECODER.decode(body)
    if isinstance(tree, dict):
        _normalize_case(tree.get("data"))
    return msgspec.convert(tree, _LenientEnvelope)


def _normalize_case(case: Any) -> None:
    if not isinstance(case, dict):
        return
    users = case.get("users")
    if users is None and "users" in case:
        case["users"] = []
    elif isinstance(users, list):
        for entry in users:
            if isinstance(entry, dict):
                _normalize_participant(entry)
                _normalize_case(entry.get("case"))  # the joined entry nests the case again


def _normalize_participant(entry: dict[str, Any]) -> None:
    user = entry.get("user")
    if not isinstance(user, dict):
        return
    kind = user.get("type")
    if kind is None and entry.get("type") in ("user", "contact"):
        entry["user"] = {**user, "type": entry["type"]}
    elif kind not in ("user", "contact"):
        entry["user"] = {**user, "kind": kind, "type": UNKNOWN_USER_TAG}


# --------------------------------------------------------------------------- errors

_BY_CODE: dict[str, type[errors.APIStatusError]] = {
    "CHAT_ALREADY_JOINED": errors.AlreadyJoinedError,
    # On the join endpoint a duplicate record is the agent's participation: already joined.
    "ERROR_DUPLICATE_RECORD_FOUND": errors.AlreadyJoinedError,
    "ERROR_RECORD_NOT_FOUND": errors.NotFoundError,
    "ERROR_INVALID_INPUT": errors.BadRequestError,
    "ERROR_UNAUTHORIZED": errors.AuthenticationError,
    "ERROR_UNAUTHORIZED_ACCESS": errors.PermissionDeniedError,
    "ERROR_SERVER_ERROR": errors.InternalServerError,
}

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
    method: str = "",
    url: str = "",
    now: float | None = None,
    reason: str | None = None,
) -> errors.APIStatusError:
    """The error for a non-2xx response, from its body's code when it has one.

    Without an Acquire envelope (an nginx page, a gateway's own JSON), the message is the
    reason phrase (``reason``, else the SDK's for the status) and a sanitised excerpt:

    >>> error_for(413, {}, b"<html><title>413 Too Large</title></html>").message
    'request entity too large: "413 Too Large"'
    """
    error: Any = None
    message: Any = None
    if body:
        try:
            envelope = _ERROR_DECODER.decode(body)
        except _DECODE_ERRORS:
            pass  # not a JSON object (an HTML error page from a proxy, say)
        else:
            error = _field(envelope.error)
            message = _field(envelope.message)
    return _error_from_payload(
        status, headers, body, error, message, method, url, now=now, reason=reason
    )


def _error_from_payload(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    error: Any,
    message: Any,
    method: str,
    url: str,
    *,
    now: float | None = None,
    reason: str | None = None,
) -> errors.APIStatusError:
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
    cls = _BY_CODE.get(code) if code and status != 429 else None
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
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id(headers),
        "method": method,
        "url": url,
        "body": body,
        "retry_after": parse_retry_after(headers.get("Retry-After"), now=now),
    }
    return cls(text, **common)


# --------------------------------------------------------------------------- Retry-After


def parse_retry_after(value: str | None, *, now: float | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or unusable.

    Both RFC 9110 forms: delta-seconds (``"120"``) and an HTTP-date (IMF-fixdate, RFC 850 or
    asctime, taken as UTC). A date needs ``now`` (a POSIX timestamp); a date in the past gives
    ``0.0``. Negative numbers, ``nan``, ``inf`` and garbage give ``None``: the caller falls back
    to its own backoff (``asyncio.sleep(nan)`` would never return).

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
