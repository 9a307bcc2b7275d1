"""The request side of the wire format: paths, headers, URLs and the request bodies.

Every builder but `join_body` checks its arguments (`TypeError`/`ValueError` naming
the parameter), so a client that builds the body first refuses bad input before any I/O.
"""

from __future__ import annotations

import msgspec
from yarl import URL

from ._checks import (
    check_bool,
    check_optional_bool,
    check_optional_text,
    check_text,
    validate_case_id,
)
from ._secrets import RedactedStr, Secret

__all__ = [
    "ADD_MESSAGE_PATH",
    "CLOSE_PATH",
    "JOIN_PATH",
    "REJECT_PATH",
    "add_message_body",
    "close_body",
    "endpoint_url",
    "join_body",
    "reject_body",
    "request_headers",
]

JOIN_PATH = "/crm/messenger/chat/join"
REJECT_PATH = "/crm/messenger/chat/reject"
CLOSE_PATH = "/crm/messenger/chat/close"
ADD_MESSAGE_PATH = "/crm/messenger/chat/add-message"


def request_headers(api_key: Secret[str], user_agent: str) -> dict[str, str]:
    """The headers every request carries; the key's header value hides itself in a repr."""
    return {
        "Authorization": RedactedStr("Bearer " + api_key.reveal()),
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": user_agent,
    }


def endpoint_url(base: URL, path: str) -> URL:
    """`path` under `base`, keeping the base's own path prefix.

    Examples:
        >>> str(endpoint_url(URL("http://127.0.0.1:1/prefix/api/v1/"), REJECT_PATH))
        'http://127.0.0.1:1/prefix/api/v1/crm/messenger/chat/reject'
    """
    return base.with_path(base.path.rstrip("/") + path, encoded=False)


# --------------------------------------------------------------------------- request bodies

_BODY_ASK = b'{"caseId":%d,"askJoin":true}'
_BODY_NO_ASK = b'{"caseId":%d,"askJoin":false}'
_ENCODER = msgspec.json.Encoder()


def join_body(case_id: int, ask_join: bool) -> bytes:
    """The join body. `case_id` must already be checked: this is the hot path.

    A bytes template is cheaper than encoding a dict.

    Examples:
        >>> join_body(1684, True)
        b'{"caseId":1684,"askJoin":true}'
    """
    return (_BODY_ASK if ask_join else _BODY_NO_ASK) % case_id


def reject_body(case_id: int) -> bytes:
    """The reject body; `case_id` is checked (`TypeError`/`ValueError`).

    Examples:
        >>> reject_body(1681)
        b'{"caseId":1681}'
    """
    return b'{"caseId":%d}' % validate_case_id(case_id)


def close_body(
    case_id: int,
    *,
    closing_state: str,
    archive: bool,
    ask_feedback: bool | None,
    leave_only: bool | None,
    force_close: bool | None,
    leave_event: bool | None,
) -> bytes:
    """The close body, every argument checked. `archive` goes as `"yes"`/`"no"` (as
    Acquire publishes it); each flag goes only when not `None`, since Acquire documents no
    meaning or default for them.

    Examples:
        >>> close_body(5, closing_state="handled", archive=True, ask_feedback=None,
        ...            leave_only=None, force_close=None, leave_event=True)
        b'{"caseId":5,"closingState":"handled","archive":"yes","leaveEvent":true}'
    """
    body: dict[str, object] = {
        "caseId": validate_case_id(case_id),
        "closingState": check_text("closing_state", closing_state),
        "archive": "yes" if check_bool("archive", archive) else "no",
    }
    for name, wire, value in (
        ("ask_feedback", "askFeedback", ask_feedback),
        ("leave_only", "leaveOnly", leave_only),
        ("force_close", "forceClose", force_close),
        ("leave_event", "leaveEvent", leave_event),
    ):
        if check_optional_bool(name, value) is not None:
            body[wire] = value
    return _ENCODER.encode(body)


def add_message_body(
    case_id: int, text: str, *, type: str, channel: str | None, translate_lang_key: str | None
) -> bytes:
    """The add-message body, every argument checked; any text is escaped by the encoder.

    Examples:
        >>> add_message_body(9, 'Say "hi"', type="message", channel="chat", translate_lang_key=None)
        b'{"caseId":9,"message":{"type":"message","message":"Say \\\\"hi\\\\""},"channel":"chat"}'
    """
    message = {"type": check_text("type", type), "message": check_text("text", text)}
    lang = check_optional_text("translate_lang_key", translate_lang_key)
    if lang is not None:
        message["translateLangKey"] = lang
    body: dict[str, object] = {"caseId": validate_case_id(case_id), "message": message}
    if check_optional_text("channel", channel) is not None:
        body["channel"] = channel
    return _ENCODER.encode(body)
