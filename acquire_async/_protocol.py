"""The wire format: decode an answer into its model or its error; one import point for the codec.

Nothing here touches a socket, a clock or an event loop, and nothing knows which request was
made: the engine attaches the method, URL, attempts and request id to an error. So all of it
is tested with plain bytes (the model is gidgethub's `sansio.py`). The request side lives in
`_bodies`, the error mapping in `_errormap`, the second pass in `_lenient`; this module
re-exports what a caller needs of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from . import errors
from ._bodies import (
    ADD_MESSAGE_PATH,
    CLOSE_PATH,
    JOIN_PATH,
    REJECT_PATH,
    add_message_body,
    close_body,
    endpoint_url,
    join_body,
    reject_body,
    request_headers,
)
from ._errormap import (
    ABSENT,
    BASE_CODES,
    DECODE_ERRORS,
    JOIN_CODES,
    Codes,
    error_for,
    error_from_payload,
    parse_retry_after,
    raw_field,
    request_id,
)
from ._excerpt import EXCERPT_LIMIT
from ._lenient import LENIENT_MAX_BODY, Lenient, lenient_case, lenient_message
from .models import Case, ClosedCase, CloseResult, Id, Message

__all__ = [
    "ADD_MESSAGE_PATH",
    "BASE_CODES",
    "CLOSE_ENTRIES",
    "CLOSE_PATH",
    "JOIN_CODES",
    "JOIN_PATH",
    "LENIENT_MAX_BODY",
    "REJECT_PATH",
    "Codes",
    "Envelope",
    "RawResponse",
    "add_message_body",
    "close_body",
    "decode_case",
    "decode_close",
    "decode_message",
    "endpoint_url",
    "error_for",
    "join_body",
    "parse_retry_after",
    "reject_body",
    "request_headers",
    "request_id",
]

T = TypeVar("T")


# A Struct, not a NamedTuple: one is built per attempt, and a NamedTuple's Python-level
# __new__ costs about 0.3 µs against 0.08 µs.
class RawResponse(msgspec.Struct, frozen=True, gc=False):
    """What one HTTP attempt produced: status, headers and the whole (capped) body.

    Examples:
        >>> RawResponse(200, {}, b'{"data":{"id":1}}').status
        200
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str | None = None  # the status line's reason phrase ("Request Entity Too Large")


class Envelope(msgspec.Struct, Generic[T], gc=False):
    """Acquire's wrapper of every answer: `{"data": …}` or `{"error": …}`.

    Examples:
        >>> msgspec.json.decode(b'{"data":{"id":1}}', type=Envelope[Case]).data.id
        1
    """

    data: T | None = None
    error: msgspec.Raw = ABSENT
    message: msgspec.Raw = ABSENT


# The close answer's data: numbered entries ("0", "1", …) beside userId and userType. Entries
# are read up to this many (Acquire's one example has one); later keys are skipped unbuilt,
# so a hostile body of a million entries costs no more than one of a few.
CLOSE_ENTRIES = 64
_CloseData: Any = msgspec.defstruct(
    "_CloseData",
    [(f"e{i}", ClosedCase | None, None) for i in range(CLOSE_ENTRIES)]
    + [("user_id", Id | None, None), ("user_type", str | None, None)],
    rename={"user_id": "userId", "user_type": "userType"}
    | {f"e{i}": str(i) for i in range(CLOSE_ENTRIES)},
    gc=False,
)

_CASE_DECODER = msgspec.json.Decoder(Envelope[Case])
_MESSAGE_DECODER = msgspec.json.Decoder(Envelope[Message])
_CLOSE_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Envelope[_CloseData])

# --------------------------------------------------------------------------- decoders


def decode_case(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str | None = None,
    case_id: int | None = None,
    now: float | None = None,
    codes: Codes = BASE_CODES,
) -> Case:
    """A join or reject answer as its `Case`, or the matching `AcquireError` raised.

    An `{"error": …}` envelope is an error whatever the status (Acquire sends
    `CHAT_ALREADY_JOINED` with 200), its class chosen by `codes` (`JOIN_CODES` for a
    join); any status outside 2xx is an error. `case_id`, the case the request named, makes
    a case with another id a `ResponseDecodeError` (a stray answer, not this request's).
    `now` (a POSIX timestamp) lets an HTTP-date `Retry-After` become seconds; `reason`
    is the status line's reason phrase, for an error without an Acquire envelope.

    Examples:
        >>> decode_case(200, {}, b'{"data":{"id":1684}}', case_id=1684).id
        1684
    """
    if not 200 <= status < 300:
        raise error_for(status, headers, body, reason=reason, now=now, codes=codes)
    # The common case inline: one typed decode, two checks (this function runs per join).
    # Nothing is raised inside ``except``: a chained msgspec error would keep this frame, and
    # its ``body`` (which may echo the key), alive in the traceback.
    problem: BaseException | None = None
    envelope: Envelope[Case] | None = None
    try:
        envelope = _CASE_DECODER.decode(body)
    except DECODE_ERRORS as exc:
        problem = exc
    else:
        data = envelope.data
        if data is not None and envelope.error is ABSENT:
            if data.id == case_id or case_id is None:
                return data
            raise _stray(f"is for case {data.id}", case_id, "$.data.id", status, body)
    case = _settle(problem, envelope, lenient_case, status, headers, body, reason, now, codes)
    if case.id == case_id or case_id is None:
        return case
    raise _stray(f"is for case {case.id}", case_id, "$.data.id", status, body)


def decode_message(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str | None = None,
    case_id: int | None = None,
    now: float | None = None,
    codes: Codes = BASE_CODES,
) -> Message:
    """An add-message answer as its `Message`, or the matching `AcquireError` raised.

    As `decode_case`. With `case_id`, the message must name that case (its
    `caseId`, and its nested case's `id` when sent): a case, or another request's answer,
    is a `ResponseDecodeError`, never a `Message` with a case's id.

    Examples:
        >>> decode_message(200, {}, b'{"data":{"id":8289,"caseId":2069}}', case_id=2069).id
        8289
    """
    data = _decode(_MESSAGE_DECODER, lenient_message, status, headers, body, reason, now, codes)
    if case_id is not None:
        for where, got in (("caseId", data.case_id), ("case.id", _case_id_of(data.case))):
            if got is not None and got != case_id:
                raise _stray(
                    f"is a message for case {got}", case_id, f"$.data.{where}", status, body
                )
        if data.case_id is None and data.case is None:
            raise _stray("is a message naming no case", case_id, "$.data.caseId", status, body)
    return data


def decode_close(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    reason: str | None = None,
    case_id: int | None = None,
    now: float | None = None,
    codes: Codes = BASE_CODES,
) -> CloseResult:
    """A close answer as a `CloseResult`, or the matching `AcquireError` raised.

    As `decode_case`. The answer's `data` holds numbered entries (`"0"`, …) beside
    `userId` and `userType`; entries `"0"` to `"63"` are read, in key order. With
    `case_id`, some entry must name that case.

    Examples:
        >>> body = b'{"data":{"0":{"caseId":5,"foreverClosed":true},"userId":1,"userType":"user"}}'
        >>> result = decode_close(200, {}, body, case_id=5)
        >>> result.case_id, result.forever_closed, result.user_type
        (5, True, 'user')
    """
    data = _decode(_CLOSE_DECODER, None, status, headers, body, reason, now, codes)
    fields = msgspec.structs.astuple(data)
    result = CloseResult(
        closed=[entry for entry in fields[:CLOSE_ENTRIES] if entry is not None],
        user_id=data.user_id,
        user_type=data.user_type,
    )
    if case_id is not None:
        named = [entry.case_id for entry in result.closed if entry.case_id is not None]
        if case_id not in named:
            shown = f"is for case {named[0]}" if named else "names no case"
            raise _stray(shown, case_id, "$.data.0.caseId", status, body)
    return result


def _decode(
    decoder: msgspec.json.Decoder[Envelope[T]],
    lenient: Callable[[bytes], Lenient[T]] | None,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    reason: str | None,
    now: float | None,
    codes: Codes,
) -> T:
    """What `decode_case` does inline, for the other envelopes."""
    if not 200 <= status < 300:
        raise error_for(status, headers, body, reason=reason, now=now, codes=codes)
    problem: BaseException | None = None
    envelope: Envelope[T] | None = None
    try:
        envelope = decoder.decode(body)
    except DECODE_ERRORS as exc:
        problem = exc  # handled below, outside ``except``: see decode_case
    else:
        if envelope.data is not None and envelope.error is ABSENT:
            return envelope.data
    return _settle(problem, envelope, lenient, status, headers, body, reason, now, codes)


def _settle(
    problem: BaseException | None,
    envelope: Envelope[T] | None,
    lenient: Callable[[bytes], Lenient[T]] | None,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    reason: str | None,
    now: float | None,
    codes: Codes,
) -> T:
    """The data of a 2xx answer off the fast path, or the error it carries raised."""
    data: T | None
    if envelope is not None:
        data, error, message = envelope.data, raw_field(envelope.error), raw_field(envelope.message)
    else:
        assert problem is not None
        recovered = _recover(problem, lenient, status, body)
        data, error, message = recovered
    if error is not None:
        raise error_from_payload(status, headers, body, error, message, codes, now, reason)
    if data is None:
        text = body[:EXCERPT_LIMIT].decode("utf-8", "replace")
        raise errors.ResponseDecodeError(
            f"response has neither 'data' nor 'error' (HTTP {status}); body starts {text!r}",
            status=status,
            body=body,
        )
    return data


def _case_id_of(case: Case | None) -> int | None:
    return None if case is None else case.id


def _stray(
    what: str, wanted: int, path: str, status: int, body: bytes
) -> errors.ResponseDecodeError:
    # A reused connection that delivers an earlier request's answer, a proxy or cache that
    # mixes responses up, an answer of another endpoint: the request for ``wanted`` may or may
    # not have taken effect.
    return errors.ResponseDecodeError(
        f"the response {what}, not the requested case {wanted} (HTTP {status}): "
        "a stray answer, not this request's",
        status=status,
        path=path,
        body=body,
    )


def _recover(
    problem: BaseException,
    lenient: Callable[[bytes], Lenient[T]] | None,
    status: int,
    body: bytes,
) -> tuple[T | None, Any, Any]:
    """After the typed decode failed: the lenient pass, or the ResponseDecodeError."""
    note = ""
    if isinstance(problem, msgspec.ValidationError) and lenient is not None:
        # Valid JSON of an unexpected shape: try once more with the known quirks smoothed
        # over, if the body is small enough for that to be cheap. Only this error path pays
        # for it; the fast path is one typed decode.
        if len(body) > LENIENT_MAX_BODY:
            note = f" (a {len(body)}-byte body is too large for the lenient second pass)"
        else:
            try:
                envelope = lenient(body)
            except msgspec.ValidationError as again:
                problem = again  # with the quirks smoothed over, this names the real bad field
            except (msgspec.MsgspecError, RecursionError, ValueError):
                pass
            else:
                return envelope.data, envelope.error, envelope.message
    raise _decode_error(problem, status, body, note)


def _decode_error(
    problem: BaseException, status: int, body: bytes, note: str = ""
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
    start = body[:EXCERPT_LIMIT].decode("utf-8", "replace")
    return errors.ResponseDecodeError(
        f"cannot decode the response (HTTP {status}): {text}{where}{note}; body starts {start!r}",
        status=status,
        path=path,
        body=body,
    )
