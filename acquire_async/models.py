"""Typed models of Acquire's payloads (cases, messages, close results), decoded with :mod:`msgspec`.

The same case object comes back from join, reject, create, the messages endpoints and the case
objects API, each time with other fields present, absent or ``null``. So every field but
``Case.id`` and ``Message.id`` is optional and defaults to ``None`` (lists to an empty list):
absent and ``null`` both read as ``None``, and the raw body stays available when the
difference matters (the client's raw-response variants return it).

Attributes are snake_case; the wire names are camelCase (``rename="camel"``). Unknown fields are
ignored and unknown string values (a new ``status``, ``channel`` or message ``type``) decode as
plain ``str``: compare them with the constants in :class:`CaseStatus` and friends, which are
``str`` subclasses, so ``case.status == CaseStatus.ACTIVE`` works and a value Acquire adds
tomorrow never breaks decoding.

Example::

    case = await client.join_chat(1684)
    if case.status == CaseStatus.ACTIVE:
        for participant in case.users:
            if isinstance(participant.user, Agent):
                print(participant.user.name, participant.status)
    print(case.last_message.plain_text if case.last_message else "")

Instances are frozen: they are values, safe to share between tasks and to cache.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import msgspec

__all__ = [
    "Agent",
    "Case",
    "CaseStatus",
    "CaseUser",
    "CaseUserStatus",
    "Channel",
    "CloseResult",
    "ClosedCase",
    "Contact",
    "Message",
    "MessageType",
    "ParticipantType",
    "UnknownUser",
    "plain_text",
]

# Acquire's ids are database integers. msgspec would happily decode a 100-digit number into a
# Python int; a value outside signed 64 bits is a broken (or hostile) server: a decode error.
Id = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

TRANSLATE_MARKER = "|translate"


def plain_text(text: str | None) -> str | None:
    """Return ``text`` without Acquire's trailing ``|translate`` marker.

    Acquire appends ``|translate`` to system texts that its UI translates; the raw text keeps
    it, this helper drops it::

        >>> plain_text("You're being transferred.|translate")
        "You're being transferred."
    """
    if text is not None and text.endswith(TRANSLATE_MARKER):
        return text[: -len(TRANSLATE_MARKER)]
    return text


class _Known(str, enum.Enum):
    """Base of the known-value constants: ``str`` values that print as themselves."""

    def __str__(self) -> str:
        return str(self.value)


class CaseStatus(_Known):
    """Case ``status`` values seen in Acquire's payloads (others may appear)."""

    QUEUE = "queue"
    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"


class CaseUserStatus(_Known):
    """``CaseUser.status`` values seen: how a participant stands in the case."""

    ACTIVE = "active"
    IGNORED = "ignored"
    JOINED = "joined"
    REJECTED = "rejected"


class ParticipantType(_Known):
    """``CaseUser.type`` and ``user.type``: ``user`` is an agent, ``contact`` a customer."""

    USER = "user"
    CONTACT = "contact"


class Channel(_Known):
    """Case and message ``channel`` values seen (``channel`` may also be ``None``)."""

    CHAT = "chat"


class MessageType(_Known):
    """``Message.type`` values seen."""

    EVENT = "event"
    MESSAGE = "message"
    NOTE = "note"
    SMS = "sms"


# gc=False: these structs never form reference cycles (they hold only scalars, lists and
# dicts decoded from JSON), so keeping them out of the cyclic GC saves time on every decode
# and on every collection while thousands of cases are alive. See msgspec's perf tips.
class _Model(msgspec.Struct, frozen=True, rename="camel", gc=False, omit_defaults=True):
    pass


class Agent(_Model, tag="user", tag_field="type", kw_only=True, frozen=True):
    """An agent (``type: "user"``): the nested ``user`` of an agent participant."""

    id: Id | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    photo: str | None = None
    email: str | None = None
    client_id: str | None = None
    parent_id: Id | None = None
    roles: list[Any] | None = None
    access_level: Any = None

    @property
    def type(self) -> str:
        """The wire ``type`` of this participant: always ``"user"``."""
        return "user"


class Contact(_Model, tag="contact", tag_field="type", kw_only=True, frozen=True):
    """A customer (``type: "contact"``): the nested ``user`` of a contact participant."""

    id: Id | None = None
    name: str | None = None
    photo: str | None = None

    @property
    def type(self) -> str:
        """The wire ``type`` of this participant: always ``"contact"``."""
        return "contact"


# A participant whose ``type`` is neither "user" nor "contact". msgspec's tagged unions have no
# catch-all tag, so the decoder rewrites such objects to this private tag on a second, slow
# pass that only a payload with an unknown type ever takes (see ``_decode_lenient`` in
# ``_protocol``); ``kind`` keeps the type the server sent.
UNKNOWN_USER_TAG = "__acquire_async_unknown__"


class UnknownUser(_Model, tag=UNKNOWN_USER_TAG, tag_field="type", kw_only=True, frozen=True):
    """A participant of a ``type`` this SDK does not know yet; ``kind`` holds that type."""

    kind: str | None = None
    id: Id | None = None
    name: str | None = None
    photo: str | None = None

    @property
    def type(self) -> str | None:
        """The wire ``type`` the server sent."""
        return self.kind


class Message(_Model, kw_only=True, frozen=True):
    """A case message: what ``add_message`` returns, and ``Case.last_message``.

    ``message`` is the raw text (it may end in ``|translate``); :attr:`plain_text` drops
    that marker. The add-message answer also carries the message's ``case`` (the whole case,
    its participants included) and its ``sender`` (an :class:`Agent` for ``senderType``
    ``"user"``, a :class:`Contact` for ``"contact"``); a ``last_message`` carries neither.

    Example::

        message = await client.add_message(2069, "Hello! How can I help?")
        print(message.id, message.case_id, message.plain_text)
        if isinstance(message.sender, Agent):
            print("sent as", message.sender.name)
    """

    id: Id
    case_id: Id | None = None
    thread_id: Id | None = None
    contact_id: Id | None = None
    channel: str | None = None
    sender_id: Id | None = None
    sender_type: str | None = None
    type: str | None = None
    message: str | None = None
    date_created: datetime | None = None
    date_updated: datetime | None = None
    seen: str | None = None
    meta: dict[str, Any] | None = None
    sender: Agent | Contact | UnknownUser | None = None
    case: Case | None = None

    @property
    def plain_text(self) -> str | None:
        """``message`` without a trailing ``|translate`` marker.

        >>> Message(id=1, message="Hi|translate").plain_text
        'Hi'
        """
        return plain_text(self.message)


class CaseUser(_Model, kw_only=True, frozen=True):
    """A participant of a case: an entry of ``Case.users``.

    ``type`` says whether it is an agent (``"user"``) or a customer (``"contact"``);
    ``user`` holds the matching :class:`Agent` or :class:`Contact` when the server sent it.
    ``case`` is present on the entry the join just created.
    """

    id: Id | None = None
    case_id: Id | None = None
    type: str | None = None
    user_id: Id | None = None
    role: str | None = None
    status: str | None = None
    date_created: datetime | None = None
    date_last_assigned: datetime | None = None
    closed: str | None = None
    meta: dict[str, Any] | None = None
    user: Agent | Contact | UnknownUser | None = None
    case: Case | None = None


class Case(_Model, kw_only=True, frozen=True):
    """A case (a conversation): what ``join_chat`` returns.

    Only ``id`` is required. Timestamps are timezone-aware UTC ``datetime``\\ s; ``meta`` is
    the free-form dict the server sent (``{"sessionId": …, "queues": […]}``, ``{}``, …).
    """

    id: Id
    date_created: datetime | None = None
    date_updated: datetime | None = None
    contact_id: Id | None = None
    closed_by: Id | None = None
    visit_id: Id | None = None
    title: str | None = None
    description: str | None = None
    channel: str | None = None
    status: str | None = None
    closing_state: str | None = None
    date_queue: datetime | None = None
    date_pending: datetime | None = None
    date_active: datetime | None = None
    date_closed: datetime | None = None
    queue_id: Id | None = None
    queue_order: int | None = None
    meta: dict[str, Any] | None = None
    parent_id: Id | None = None
    user_id: Id | None = None
    wait_time: int | None = None
    thread_id: Id | None = None
    users: list[CaseUser] = msgspec.field(default_factory=list)
    last_message: Message | None = None

    @property
    def plain_description(self) -> str | None:
        """``description`` without a trailing ``|translate`` marker."""
        return plain_text(self.description)

    def participant(self, user_id: int) -> CaseUser | None:
        """The agent participant (``type == "user"``) with this ``user_id``, if any."""
        for entry in self.users:
            if entry.user_id == user_id and entry.type == ParticipantType.USER:
                return entry
        return None


class ClosedCase(_Model, kw_only=True, frozen=True):
    """One numbered entry (``"0"``, ``"1"``, …) of a close answer's ``data``.

    All optional: Acquire's one published close answer has these four fields.

    >>> ClosedCase(case_id=5, contact_id=6, forever_closed=True, left_user=True).case_id
    5
    """

    case_id: Id | None = None
    contact_id: Id | None = None
    forever_closed: bool | None = None
    left_user: bool | None = None


class CloseResult(_Model, kw_only=True, frozen=True):
    """What ``close_chat`` returns, read from Acquire's close answer.

    The answer is not a case: its ``data`` holds numbered entries (``"0"``, and maybe more)
    beside ``userId`` and ``userType``. ``closed`` lists the entries in key order;
    ``case_id``, ``contact_id``, ``forever_closed`` and ``left_user`` are the first entry's
    (``None`` when there is none). ``user_id`` and ``user_type`` name who closed it. Encoding
    a ``CloseResult`` gives this shape, not the wire's.

    Example::

        result = await client.close_chat(5)
        print(result.case_id, result.forever_closed, result.user_type, result.user_id)

    >>> CloseResult(closed=[ClosedCase(case_id=5, left_user=True)], user_id=1).case_id
    5
    """

    closed: list[ClosedCase] = msgspec.field(default_factory=list)
    user_id: Id | None = None
    user_type: str | None = None

    @property
    def case_id(self) -> int | None:
        """The first entry's ``caseId``: the case that was closed."""
        return self.closed[0].case_id if self.closed else None

    @property
    def contact_id(self) -> int | None:
        """The first entry's ``contactId``: the case's customer."""
        return self.closed[0].contact_id if self.closed else None

    @property
    def forever_closed(self) -> bool | None:
        """The first entry's ``foreverClosed`` (Acquire does not document its meaning)."""
        return self.closed[0].forever_closed if self.closed else None

    @property
    def left_user(self) -> bool | None:
        """The first entry's ``leftUser`` (Acquire does not document its meaning)."""
        return self.closed[0].left_user if self.closed else None
