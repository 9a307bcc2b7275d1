"""The lenient second pass: a payload that failed the typed decode, with Acquire's quirks fixed.

Only an answer the typed decode refused comes here, and only up to `LENIENT_MAX_BODY`: it
builds a Python object per JSON value before converting the tree to the models.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from .models import UNKNOWN_USER_TAG, Case, Message

__all__ = ["LENIENT_MAX_BODY", "Lenient", "lenient_case", "lenient_message"]

T = TypeVar("T")
_ANY_DECODER = msgspec.json.Decoder()

# The lenient pass builds a Python object for every JSON value: about 30 times the body in
# memory and 0.2 ms per KiB. Above this size it is not tried, so a hostile 8 MiB body costs
# one typed decode (which stops at the first bad field), not seconds and hundreds of MB.
# A real case is about 3 KiB, plus about 0.4 KiB per participant.
LENIENT_MAX_BODY = 256 * 1024


class Lenient(msgspec.Struct, Generic[T], gc=False):
    """The envelope the second pass converts an already-decoded tree to."""

    # ``error`` and ``message`` vary in shape: kept as decoded.
    data: T | None = None
    error: Any = None
    message: Any = None


def lenient_case(body: bytes) -> Lenient[Case]:
    """Second pass over a case that failed the typed decode, with Acquire's quirks fixed.

    - a participant `type` this SDK does not know decodes as `UnknownUser` (msgspec's
      tagged unions have no catch-all tag);
    - a nested `user` sent without `type` (Acquire's add-message example of 2021-04-08)
      takes the participant's own `type`;
    - `"users": null` reads as no users, like an absent `users`.
    """
    tree = _ANY_DECODER.decode(body)
    if isinstance(tree, dict):
        _normalize_case(tree.get("data"))
    return msgspec.convert(tree, Lenient[Case])


def lenient_message(body: bytes) -> Lenient[Message]:
    """The same for a message: its `sender` (typed by `senderType`) and its `case`."""
    tree = _ANY_DECODER.decode(body)
    if isinstance(tree, dict):
        _normalize_message(tree.get("data"))
    return msgspec.convert(tree, Lenient[Message])


def _normalize_case(case: Any) -> None:
    if not isinstance(case, dict):
        return
    users = case.get("users")
    if users is None and "users" in case:
        case["users"] = []
    elif isinstance(users, list):
        for entry in users:
            if isinstance(entry, dict):
                _normalize_user(entry, "user", entry.get("type"))
                _normalize_case(entry.get("case"))  # the joined entry nests the case again
    _normalize_message(case.get("lastMessage"))


def _normalize_message(message: Any) -> None:
    if isinstance(message, dict):
        _normalize_user(message, "sender", message.get("senderType"))
        _normalize_case(message.get("case"))


def _normalize_user(parent: dict[str, Any], key: str, parent_type: Any) -> None:
    user = parent.get(key)
    if not isinstance(user, dict):
        return
    kind = user.get("type")
    if kind is None and parent_type in ("user", "contact"):
        parent[key] = {**user, "type": parent_type}
    elif kind not in ("user", "contact"):
        parent[key] = {**user, "kind": kind, "type": UNKNOWN_USER_TAG}
