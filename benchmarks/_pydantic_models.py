"""Pydantic v2 models of the same shape as ``acquire_async.models``: the decode benchmark's rival.

Same fields, same optionality, camelCase aliases, ``datetime`` timestamps, bounded 64-bit ids,
frozen instances, unknown fields ignored, and a discriminated union on ``users[].user.type``
(``"user"`` → :class:`Agent`, ``"contact"`` → :class:`Contact`). Decoding goes through
``model_validate_json``, pydantic's fastest path (JSON parsed and validated in Rust).

Only this module imports pydantic; the decode benchmark skips it when pydantic is missing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["Agent", "Case", "CaseListEnvelope", "CaseUser", "Contact", "JoinEnvelope", "Message"]

Id = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class Agent(_Model):
    """An agent (``type: "user"``)."""

    type: Literal["user"]
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


class Contact(_Model):
    """A customer (``type: "contact"``)."""

    type: Literal["contact"]
    id: Id | None = None
    name: str | None = None
    photo: str | None = None


class Message(_Model):
    """A case message (``lastMessage``)."""

    id: Id
    case_id: Id | None = None
    channel: str | None = None
    sender_id: Id | None = None
    sender_type: str | None = None
    type: str | None = None
    message: str | None = None
    date_created: datetime | None = None
    date_updated: datetime | None = None
    seen: str | None = None
    meta: dict[str, Any] | None = None


class CaseUser(_Model):
    """A participant of a case; ``user`` is discriminated on its ``type``."""

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
    user: Annotated[Agent | Contact, Field(discriminator="type")] | None = None
    case: Case | None = None


class Case(_Model):
    """A case: only ``id`` is required."""

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
    users: list[CaseUser] = Field(default_factory=list)
    last_message: Message | None = None


class JoinEnvelope(_Model):
    """The join response: ``{"data": <case>}`` or ``{"error": …}``."""

    data: Case | None = None
    error: Any = None
    message: Any = None


class CaseListEnvelope(_Model):
    """A list response: ``{"data": [<case>, …]}``."""

    data: list[Case]


CaseUser.model_rebuild()
