"""The emulated API: a table `(method, path) -> Route`, each route a handler on the store.

A handler gets the store and the parsed body (the JSON object, its `caseId` checked) and
returns a `Reply`: status, body bytes and whether the store changed. Handlers are
synchronous, so each request's change is atomic on the event loop. Everything before them
(faults, the key, a 404 or 405) is `FakeAcquire._handle`'s job.

Adding an endpoint: a path, a handler, one line in `route_table`, tests, docs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from ._cases import ALREADY_JOINED_MESSAGE, is_joined_by
from ._store import CaseStore

__all__ = [
    "ADD_MESSAGE_PATH",
    "API_PREFIX",
    "CLOSE_PATH",
    "JOIN_PATH",
    "REJECT_PATH",
    "Body",
    "Reply",
    "Route",
    "envelope",
    "parse_body",
    "route_table",
    "status_error",
]

API_PREFIX = "/api/v1"
"""The path of `base_url`, as on `https://{account}.acquire.io/api/v1`."""

JOIN_PATH = "/crm/messenger/chat/join"
"""The join endpoint, relative to `base_url`."""
REJECT_PATH = "/crm/messenger/chat/reject"
"""The reject endpoint, relative to `base_url`."""
CLOSE_PATH = "/crm/messenger/chat/close"
"""The close endpoint, relative to `base_url`."""
ADD_MESSAGE_PATH = "/crm/messenger/chat/add-message"
"""The add-message endpoint, relative to `base_url`."""

_ENCODER = msgspec.json.Encoder()
_MAX_ID = 2**63 - 1
_CLOSE_FLAGS = ("askFeedback", "leaveOnly", "forceClose", "leaveEvent")

# Error codes of the statuses the emulator answers on its own. Acquire documents the first
# five; the 405, 404 and 429 codes are this emulator's invention.
_STATUS_CODES = {
    400: "ERROR_INVALID_INPUT",
    401: "ERROR_UNAUTHORIZED",
    403: "ERROR_UNAUTHORIZED_ACCESS",
    404: "ERROR_NOT_FOUND",
    405: "ERROR_METHOD_NOT_ALLOWED",
    429: "ERROR_TOO_MANY_REQUESTS",
}
_STATUS_MESSAGES = {
    400: "Invalid input.",
    401: "Unauthorized.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    405: "Method not allowed.",
    429: "Too many requests.",
}


class Body(NamedTuple):
    """A request body: the decoded JSON, its `caseId` and `askJoin` if well typed, and
    `problem`, why it is invalid for every route (`ERROR_INVALID_INPUT`), or `None`."""

    body: Any
    case_id: int | None
    ask_join: bool | None
    problem: str | None


class Reply(NamedTuple):
    """A handler's answer: status, body bytes, and whether the store changed."""

    status: int
    body: bytes
    applied: bool


Handler = Callable[[CaseStore, Body], Reply]


@dataclass(frozen=True)
class Route:
    """One entry of the table: the operation's name (the SDK's: `"join_chat"`…) and its
    handler."""

    operation: str
    handler: Handler


def envelope(code: str, message: str) -> bytes:
    """Acquire's error envelope: `{"error": {"code", "message", "data": null}}`."""
    return _ENCODER.encode({"error": {"code": code, "message": message, "data": None}})


def status_error(status: int) -> tuple[str, str]:
    """The code and message the emulator answers with an error `status`."""
    if status >= 500:
        return "ERROR_SERVER_ERROR", "Internal server error."
    return (
        _STATUS_CODES.get(status, f"ERROR_HTTP_{status}"),
        _STATUS_MESSAGES.get(status, "Request failed."),
    )


def parse_body(raw: bytes) -> Body:
    """Decode a request body: every route takes a JSON object with a positive int `caseId`."""
    if not raw.strip():
        return Body(None, None, None, "The request body must be a JSON object.")
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return Body(None, None, None, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return Body(body, None, None, "The request body must be a JSON object.")
    raw_id = body.get("caseId")
    case_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else None
    raw_ask = body.get("askJoin")
    ask_join = raw_ask if isinstance(raw_ask, bool) else None
    problem = None
    if "caseId" not in body:
        problem = "caseId is required."
    elif case_id is None or not 0 < case_id <= _MAX_ID:
        problem = "caseId must be a positive integer."
    return Body(body, case_id, ask_join, problem)


def route_table(join_methods: Iterable[str]) -> dict[tuple[str, str], Route]:
    """The table a `FakeAcquire` serves; the join on `join_methods`, the rest on POST."""
    join = Route("join_chat", _join)
    table = {(method, JOIN_PATH): join for method in sorted(join_methods, reverse=True)}
    table[("POST", REJECT_PATH)] = Route("reject_chat", _reject)
    table[("POST", CLOSE_PATH)] = Route("close_chat", _close)
    table[("POST", ADD_MESSAGE_PATH)] = Route("add_message", _add_message)
    return table


# ---------------------------------------------------------------------- answers


def _ok(data: Any, *, applied: bool) -> Reply:
    return Reply(200, _ENCODER.encode({"data": data}), applied)


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, envelope(code, message), False)


def _invalid(problem: str) -> Reply:
    return _error(400, "ERROR_INVALID_INPUT", problem)


def _find(store: CaseStore, parsed: Body, *, open_only: bool = True) -> dict[str, Any] | Reply:
    """The stored case the body names, or the error to answer."""
    case = store.cases.get(parsed.case_id) if parsed.case_id is not None else None
    if case is None:
        # 400, not 404: Acquire's documented status for ERROR_RECORD_NOT_FOUND.
        return _error(400, "ERROR_RECORD_NOT_FOUND", "Record not found.")
    if open_only and case.get("status") == "closed":
        # Invented: Acquire documents no answer for an operation on a closed case.
        return _error(400, "ERROR_CASE_CLOSED", "This chat is closed.")
    return case


# ---------------------------------------------------------------------- the handlers


def _join(store: CaseStore, parsed: Body) -> Reply:
    if "askJoin" in parsed.body and parsed.ask_join is None:
        return _invalid("askJoin must be a boolean.")
    case = _find(store, parsed)
    if isinstance(case, Reply):
        return case
    if is_joined_by(case, store.agent_id):
        # As published: this error envelope comes with HTTP 200.
        return Reply(200, envelope("CHAT_ALREADY_JOINED", ALREADY_JOINED_MESSAGE), False)
    return _ok(store.join(case), applied=True)


def _reject(store: CaseStore, parsed: Body) -> Reply:
    case = _find(store, parsed)
    if isinstance(case, Reply):
        return case
    changed = store.reject(case)
    return _ok(_reject_view(case), applied=changed)


def _close(store: CaseStore, parsed: Body) -> Reply:
    body = parsed.body
    closing_state = body.get("closingState", "handled")
    if not isinstance(closing_state, str) or not closing_state:
        return _invalid("closingState must be a non-empty string.")
    if "archive" in body and body["archive"] not in ("yes", "no"):
        return _invalid("archive must be 'yes' or 'no'.")
    for flag in _CLOSE_FLAGS:
        if flag in body and not isinstance(body[flag], bool):
            return _invalid(f"{flag} must be a boolean.")
    # A closed case may be closed again: the answer says it is closed, nothing changes.
    case = _find(store, parsed, open_only=False)
    if isinstance(case, Reply):
        return case
    forever_closed, left_user, changed = store.close(
        case, closing_state=closing_state, leave_only=body.get("leaveOnly") is True
    )
    # The published shape, odd "0" key included.
    first = {
        "foreverClosed": forever_closed,
        "leftUser": left_user,
        "caseId": case["id"],
        "contactId": case.get("contactId"),
    }
    return _ok({"0": first, "userId": store.agent_id, "userType": "user"}, applied=changed)


def _add_message(store: CaseStore, parsed: Body) -> Reply:
    body = parsed.body
    message = body.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("message"), str):
        return _invalid("message must be an object with a string 'message'.")
    kind = message.get("type", "message")
    if not isinstance(kind, str) or not kind:
        return _invalid("message.type must be a non-empty string.")
    if not isinstance(message.get("translateLangKey", ""), str):
        return _invalid("message.translateLangKey must be a string.")
    channel = body.get("channel")
    if channel is not None and not isinstance(channel, str):
        return _invalid("channel must be a string.")
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return _invalid("meta must be an object.")
    case = _find(store, parsed)
    if isinstance(case, Reply):
        return case
    stored = store.add_message(case, text=message["message"], type=kind, channel=channel, meta=meta)
    # Key order of the published answer (2021-04-08): the message with its case and sender.
    data = {
        "channel": stored["channel"],
        "senderType": stored["senderType"],
        "senderId": stored["senderId"],
        "type": stored["type"],
        "seen": stored["seen"],
        "message": stored["message"],
        "meta": copy.deepcopy(stored["meta"]),
        "dateCreated": stored["dateCreated"],
        "case": _message_case_view(case),
        "sender": dict(store.agent),
        "dateUpdated": stored["dateUpdated"],
        "id": stored["id"],
        "caseId": stored["caseId"],
        "threadId": case.get("threadId"),
        "contactId": case.get("contactId"),
    }
    return _ok(data, applied=True)


# ---------------------------------------------------------------------- published views


def _reject_view(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case as the reject response shows it: no `lastMessage`, entries without `user`."""
    view = {key: copy.deepcopy(value) for key, value in case.items() if key != "lastMessage"}
    users = view.get("users")
    if isinstance(users, list):
        view["users"] = [
            {k: v for k, v in entry.items() if k not in ("user", "case")}
            if isinstance(entry, dict)
            else entry
            for entry in users
        ]
    return view


def _contact(case: Mapping[str, Any]) -> dict[str, Any]:
    # The published add-message answer nests the contact record; the store has only its id,
    # so the rest is a plausible web visitor.
    created = case.get("dateCreated")
    return {
        "dateCreated": created,
        "dateUpdated": created,
        "id": case.get("contactId"),
        "clientType": "web",
        "clientName": "Chrome",
        "clientVersion": "88.0",
        "clientOsName": "Linux",
        "clientOsVersion": "x86_64",
        "clientDeviceType": "Desktop",
        "clientDeviceVendor": None,
        "clientDeviceModel": None,
        "clientDetails": {},
        "meta": {},
        "archive": "no",
        "companyId": None,
    }


def _message_case_view(case: Mapping[str, Any]) -> dict[str, Any]:
    """The case nested in an add-message answer, as published (2021-04-08): no
    `lastMessage`, the `contact` record instead of `contactId`, `threadId` last."""
    skip = ("contactId", "lastMessage", "users", "threadId")
    view = {key: copy.deepcopy(value) for key, value in case.items() if key not in skip}
    view["contact"] = _contact(case)
    view["users"] = copy.deepcopy(case.get("users", []))
    view["threadId"] = case.get("threadId")
    return view
