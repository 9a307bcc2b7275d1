"""Realistic case payloads, and what Acquire's operations do to one: join, reject, close.

Everything here is pure: a case is a plain `dict` in the wire shape (camelCase keys, ISO-8601
UTC timestamps with milliseconds), modelled on the published join response (2021-04-01, case
1684). The emulator keeps its store in that shape, so what it serves is what Acquire sends.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "ALREADY_JOINED_MESSAGE",
    "WAITING_DESCRIPTION",
    "agent_user",
    "apply_close",
    "apply_join",
    "apply_reject",
    "close",
    "iso",
    "is_joined_by",
    "make_waiting_case",
    "parse_iso",
]

# The system text of a case waiting for an agent, as published (with the translate marker).
WAITING_DESCRIPTION = (
    "You're being transferred to one of our agents, they'll be with you shortly.|translate"
)
# The published message of the CHAT_ALREADY_JOINED envelope.
ALREADY_JOINED_MESSAGE = "You have already joined this chat."

# Routed agents of generated cases: (id, name, email). Acquire repeats the full name in
# ``firstName`` and leaves ``lastName`` empty in the published payload; so do we.
_ROSTER: tuple[tuple[int, str, str], ...] = (
    (1, "David Guetta", "user@example.com"),
    (2, "Priya Raman", "priya.raman@example.com"),
    (3, "Lucas Martin", "lucas.martin@example.com"),
    (4, "Amara Okafor", "amara.okafor@example.com"),
    (5, "Sofia Rossi", "sofia.rossi@example.com"),
    (6, "Kenji Tanaka", "kenji.tanaka@example.com"),
    (7, "Mateo García", "mateo.garcia@example.com"),
    (8, "Hannah Schmidt", "hannah.schmidt@example.com"),
)


def iso(moment: datetime, *, whole_seconds: bool = False) -> str:
    """`moment` as Acquire writes it: `2021-03-24T10:44:48.538Z` (UTC, milliseconds).

    `whole_seconds` writes `.000` for the milliseconds, as Acquire does for the database
    columns it stores at second precision (`dateCreated` of a case or a participant).
    """
    utc = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    millis = 0 if whole_seconds else utc.microsecond // 1000
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def parse_iso(text: object) -> datetime | None:
    """The aware `datetime` of an Acquire timestamp, or `None` if `text` is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def agent_user(agent_id: int, name: str, *, email: str = "") -> dict[str, Any]:
    """The nested `user` object of an agent participant, in the published shape."""
    return {
        "roles": [],
        "id": agent_id,
        "name": name,
        "firstName": name,
        "lastName": "",
        "photo": "",
        "email": email,
        "clientId": "",
        "parentId": 0,
        "type": "user",
        "accessLevel": None,
    }


def make_waiting_case(
    case_id: int,
    *,
    rng: random.Random | None = None,
    now: datetime | None = None,
    status: str | None = None,
    contact_id: int | None = None,
    routed_agent_id: int | None = None,
    routed_agent_name: str | None = None,
    queue_id: int | None = None,
) -> dict[str, Any]:
    """A realistic case waiting for an agent, shaped like Acquire's published payloads.

    The case is `"queue"` or `"pending"` (`status` picks one; by default `rng` does),
    has a contact participant (`type: "contact"`, nested user `{"name": "#<contactId>"}`)
    and an agent the router offered it to (`type: "user"`, `status: "active"`), a `meta`
    with `sessionId`/`queueRecheck`/`queues`, an `event` `lastMessage` with the
    `…|translate` system text, and `dateActive: null`. Timestamps are a few seconds to
    minutes before `now` (default: the current time), at second precision like Acquire's
    `dateCreated`.

    Every random choice comes from `rng`; without one, from `random.Random(case_id)`, so
    a given `case_id` (and `now`) always makes the same case. Participant and message ids
    are derived from `case_id` (`2 * case_id` and up), so generated cases never share one.

    Examples:
        >>> case = make_waiting_case(1684, status="pending")
        >>> case["status"], case["users"][1]["user"]["name"] == f"#{case['contactId']}"
        ('pending', True)
    """
    if isinstance(case_id, bool) or not isinstance(case_id, int) or case_id <= 0:
        raise ValueError(f"case_id must be a positive int (got {case_id!r})")
    if status is not None and status not in ("queue", "pending"):
        raise ValueError(f"a waiting case is 'queue' or 'pending' (got {status!r})")
    rng = rng if rng is not None else random.Random(case_id)
    now = now if now is not None else datetime.now(timezone.utc)

    status = status if status is not None else rng.choice(("queue", "pending"))
    contact_id = contact_id if contact_id is not None else rng.randrange(100_000, 1_000_000)
    roster_id, roster_name, email = rng.choice(_ROSTER)
    if routed_agent_id is None:
        routed_agent_id = roster_id
    else:
        email = ""
    routed_agent_name = routed_agent_name if routed_agent_name is not None else roster_name
    queue_id = queue_id if queue_id is not None else rng.randrange(1, 31)
    visit_id = rng.randrange(1_000, 100_000)
    session_id = str(rng.randrange(1_000_000_000, 10_000_000_000))
    created = iso(now - timedelta(seconds=rng.uniform(5.0, 900.0)), whole_seconds=True)
    queue_order = 0 if status == "pending" else rng.randrange(0, 6)

    contact = {
        "id": 2 * case_id,
        "caseId": case_id,
        "type": "contact",
        "userId": contact_id,
        "role": "owner",
        "status": "active",
        "dateCreated": created,
        "dateLastAssigned": created,
        "closed": "no",
        "meta": None,
        "user": {"type": "contact", "id": contact_id, "name": f"#{contact_id}", "photo": None},
    }
    routed = {
        "id": 2 * case_id + 1,
        "caseId": case_id,
        "type": "user",
        "userId": routed_agent_id,
        "role": "owner",
        "status": "active",
        "dateCreated": created,
        "dateLastAssigned": created,
        "closed": "no",
        "meta": None,
        "user": agent_user(routed_agent_id, routed_agent_name, email=email),
    }
    return {
        "dateCreated": created,
        "dateUpdated": created,
        "id": case_id,
        "contactId": contact_id,
        "closedBy": None,
        "visitId": visit_id,
        "title": f"#{contact_id} has just started a chat",
        "description": WAITING_DESCRIPTION,
        "channel": "chat",
        "status": status,
        "closingState": "handled",
        "dateQueue": created,
        "datePending": created if status == "pending" else None,
        "dateActive": None,
        "dateClosed": None,
        "queueId": queue_id,
        "queueOrder": queue_order,
        "meta": {"sessionId": session_id, "queueRecheck": "no", "queues": [queue_id]},
        "parentId": None,
        "userId": None,
        "waitTime": 0,
        "threadId": case_id,
        # Published order: the routed agent first, then the contact.
        "users": [routed, contact],
        "lastMessage": {
            "id": 5 * case_id + 3,
            "caseId": case_id,
            "channel": "chat",
            "senderId": contact_id,
            "senderType": "contact",
            "type": "event",
            "message": WAITING_DESCRIPTION,
            "dateCreated": created,
            "dateUpdated": None,
            "seen": "yes",
            "meta": {},
        },
    }


def _agent_entries(case: Mapping[str, Any], agent_id: int) -> list[dict[str, Any]]:
    users = case.get("users")
    if not isinstance(users, list):
        return []
    return [
        entry
        for entry in users
        if isinstance(entry, dict)
        and entry.get("type") == "user"
        and entry.get("userId") == agent_id
    ]


def is_joined_by(case: Mapping[str, Any], agent_id: int) -> bool:
    """Whether agent `agent_id` is a `"joined"` participant of `case` it has not left."""
    return any(
        entry.get("status") == "joined" and entry.get("closed") != "yes"
        for entry in _agent_entries(case, agent_id)
    )


def apply_join(
    case: dict[str, Any],
    *,
    agent: Mapping[str, Any],
    participant_id: int,
    now: datetime,
) -> dict[str, Any]:
    """Join `agent` (a nested agent `user` object) to `case` in place, as Acquire does.

    The case becomes `"active"`; `dateUpdated` is `now`, and so is `dateActive` unless
    the case was already active; `waitTime` is the seconds since `dateQueue`; `queueId`
    and `queueOrder` are cleared to `null`/`0` (as in the published payload). Agents the
    case was routed to (`status: "active"`) become `"ignored"`. If the joining agent was
    itself the routed agent, its entry turns `"joined"`; otherwise a new entry is appended
    with id `participant_id`.

    Returns the response `data`: a deep copy of the case whose joining entry also carries
    `case`, a copy of the case without `users` (the store itself never holds that nested
    copy). The caller checks beforehand that the case is neither closed nor already joined.
    """
    agent_id = agent["id"]
    stamp = iso(now)
    users = case.get("users")
    if not isinstance(users, list):
        users = case["users"] = []
    if case.get("status") != "active" or case.get("dateActive") is None:
        case["dateActive"] = stamp
    queued = parse_iso(case.get("dateQueue"))
    if queued is not None and case.get("status") in ("queue", "pending"):
        case["waitTime"] = max(0, round((now - queued).total_seconds()))
    case["status"] = "active"
    case["dateUpdated"] = stamp
    if "queueId" in case:
        case["queueId"] = None
    if "queueOrder" in case:
        case["queueOrder"] = 0

    mine: dict[str, Any] | None = None
    for entry in users:
        if not isinstance(entry, dict) or entry.get("type") != "user":
            continue
        if entry.get("userId") == agent_id:
            mine = entry
        elif entry.get("status") == "active":
            entry["status"] = "ignored"
    if mine is not None:
        mine["status"] = "joined"
        mine["closed"] = "no"  # an agent who left (a close with leaveOnly) is back
    else:
        # Key order as published for the entry a join creates (it has no ``caseId``).
        mine = {
            "userId": agent_id,
            "status": "joined",
            "type": "user",
            "closed": "no",
            "role": "owner",
            "dateCreated": iso(now, whole_seconds=True),
            "dateLastAssigned": None,
            "meta": None,
            "id": participant_id,
            "user": dict(agent),
        }
        users.append(mine)

    data = copy.deepcopy(case)
    nested = {key: copy.deepcopy(value) for key, value in case.items() if key != "users"}
    position = next(index for index, entry in enumerate(users) if entry is mine)
    data["users"][position]["case"] = nested
    return data


def close(case: dict[str, Any], *, now: datetime, closed_by: int | None = None) -> None:
    """Close `case` in place: `status: "closed"`, `dateClosed`/`dateUpdated` = `now`."""
    stamp = iso(now)
    case["status"] = "closed"
    case["dateClosed"] = stamp
    case["dateUpdated"] = stamp
    case["closedBy"] = closed_by


def apply_reject(
    case: dict[str, Any], *, agent: Mapping[str, Any], participant_id: int, now: datetime
) -> bool:
    """Reject `case` for `agent` in place; return whether anything changed.

    As published (2021-03-24): the agent's entry turns `"rejected"` and nothing else changes,
    not even `dateUpdated`. An agent with no entry gets one, `"rejected"`, with id
    `participant_id` (Acquire does not say what it does then). Rejecting again changes nothing.
    """
    entries = _agent_entries(case, agent["id"])
    if entries:
        changed = any(entry.get("status") != "rejected" for entry in entries)
        for entry in entries:
            entry["status"] = "rejected"
        return changed
    users = case.get("users")
    if not isinstance(users, list):
        users = case["users"] = []
    stamp = iso(now, whole_seconds=True)
    # Key order of an offered agent's entry, as in the published reject response.
    users.append(
        {
            "id": participant_id,
            "caseId": case.get("id"),
            "type": "user",
            "userId": agent["id"],
            "role": "owner",
            "status": "rejected",
            "dateCreated": stamp,
            "dateLastAssigned": stamp,
            "closed": "no",
            "meta": None,
            "user": dict(agent),
        }
    )
    return True


def apply_close(
    case: dict[str, Any],
    *,
    agent_id: int,
    closing_state: str,
    leave_only: bool,
    now: datetime,
) -> tuple[bool, bool, bool]:
    """Close `case` (or only leave it) as agent `agent_id`, in place.

    Returns `(forever_closed, left_user, changed)`: the first two are the published
    `foreverClosed` and `leftUser`. The agent's entries get `closed: "yes"` (it left);
    unless `leave_only`, the case is closed too (`close`, `closedBy` the agent,
    `closingState` as asked). A case closed already stays as it is: `(True, False, False)`.
    """
    if case.get("status") == "closed":
        return True, False, False
    left = False
    for entry in _agent_entries(case, agent_id):
        if entry.get("closed") != "yes":
            entry["closed"] = "yes"
            left = True
    if leave_only:
        if left:
            case["dateUpdated"] = iso(now)
        return False, left, left
    close(case, now=now, closed_by=agent_id)
    case["closingState"] = closing_state
    return True, left, True
