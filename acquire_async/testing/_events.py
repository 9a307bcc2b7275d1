"""The bodies of the webhook events the emulator delivers, in Acquire's published shapes.

Only `case:status` has a published delivery (`webhooks/README.md@408cd38`, 2021-03-05):
ids as strings, JavaScript `Date.toString()` dates, the contact with its form fields, and the
whole transcript in `messages`. `user:case-invite` has no published body; its shape here
is **assumed** (see `invite_data`). Everything here is pure: dicts in, dicts or bytes out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ._cases import parse_iso

__all__ = [
    "CASE_STATUS",
    "CASE_INVITE",
    "case_status_data",
    "encode_event",
    "invite_data",
    "js_date",
]

CASE_STATUS = "case:status"
"""The wire name of the published status event."""
CASE_INVITE = "user:case-invite"
"""The wire name of the invite event (a subscription name; no delivery was published)."""

# Fixed English names: strftime's %a/%b follow the C locale of the process, JavaScript's don't.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# The contact form fields of the published example, in its order.
_CONTACT_FIELDS = ("name", "email", "phone", "city", "state", "countryId", "ip")


def js_date(moment: datetime) -> str:
    """`moment` as JavaScript's `Date.prototype.toString()` writes it on a UTC server:

    Examples:
        >>> js_date(datetime(2021, 3, 3, 10, 19, 49, tzinfo=timezone.utc))
        'Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)'
    """
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    return (
        f"{_DAYS[utc.weekday()]} {_MONTHS[utc.month - 1]} {utc.day:02d} {utc.year:04d} "
        f"{utc:%H:%M:%S} GMT+0000 (Coordinated Universal Time)"
    )


def _string_id(value: object) -> Any:
    # The published delivery writes every id as a string ("72", "5"); a missing one stays null.
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _date(value: object) -> Any:
    moment = parse_iso(value)
    return js_date(moment) if moment is not None else value


def _seen(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "yes" if value == "yes" else "no"


def _contact(case: Mapping[str, Any]) -> dict[str, Any]:
    contact_id = case.get("contactId")
    name = f"#{contact_id}"
    for entry in case.get("users") or ():
        if isinstance(entry, dict) and entry.get("type") == "contact":
            user = entry.get("user")
            if isinstance(user, dict) and isinstance(user.get("name"), str):
                name = user["name"]
            break
    # The store keeps no contact record: the name is the participant's, the rest empty strings
    # (the published example's types, the emulator's values).
    fields = dict.fromkeys(_CONTACT_FIELDS, "")
    fields["name"] = name
    return {"id": _string_id(contact_id), "fields": fields}


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    # The keys of the published transcript entries, in their order.
    return {
        "id": _string_id(message.get("id")),
        "channel": message.get("channel"),
        "senderId": _string_id(message.get("senderId")),
        "senderType": message.get("senderType"),
        "type": message.get("type"),
        "message": message.get("message"),
        "seen": _seen(message.get("seen")),
        "dateCreated": _date(message.get("dateCreated")),
    }


def case_status_data(
    case: Mapping[str, Any], transcript: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The `data` of a `case:status` delivery for a stored case, in the published shape.

    `transcript` is the case's messages, oldest first (store shape: int ids, ISO dates).
    `fields` is always `{}` (the store has no custom fields), as in the published example:

    ```python
    data = case_status_data(fake.cases[1000], [])
    data["caseId"], data["status"]  # ('1000', 'pending')
    ```
    """
    return {
        "caseId": _string_id(case.get("id")),
        "status": case.get("status"),
        "fields": {},
        "contact": _contact(case),
        "messages": [_message(message) for message in transcript],
    }


def invite_data(case_id: int, user_id: int) -> dict[str, Any]:
    """The `data` of a `user:case-invite` delivery: **assumed**, nothing is published.

    `{"caseId": "<id>", "userId": "<agent id>"}`: ids as strings like `case:status`'s; the
    audit log's bot subscriptions filter invites on `params.user`, so the invited user is a
    guess at what the body names.
    """
    return {"caseId": _string_id(case_id), "userId": _string_id(user_id)}


def encode_event(event: str, data: Mapping[str, Any]) -> bytes:
    """`{"event", "data"}` as compact JSON, the bytes `JSON.stringify` gives (and signs)."""
    body = {"event": event, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
