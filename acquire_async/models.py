"""Typed models of Acquire's payloads (cases, messages, close results), decoded with `msgspec`.

The same case object comes back from join, reject, create, the messages endpoints and the case
objects API, each time with other fields present, absent or `null`. So every field but
`Case.id` and `Message.id` is optional and defaults to `None` (lists to an empty list):
absent and `null` both read as `None`, and the raw body stays available when the
difference matters (the client's raw-response variants return it).

Attributes are snake_case; the wire names are camelCase (`rename="camel"`). Unknown fields are
ignored and unknown string values (a new `status`, `channel` or message `type`) decode as
plain `str`: compare them with the constants in `CaseStatus` and friends, which are
`str` subclasses, so `case.status == CaseStatus.ACTIVE` works and a value Acquire adds
tomorrow never breaks decoding.

Instances are frozen: they are values, safe to share between tasks and to cache. `to_dict()`
gives a model back in the wire shape, and pydantic v2 (so FastAPI) takes them as they are.

Example:
    ```python
    case = await client.join_chat(1684)
    if case.status == CaseStatus.ACTIVE:
        for participant in case.users:
            if isinstance(participant.user, Agent):
                print(participant.user.name, participant.status)
    print(case.last_message.plain_text if case.last_message else "")
    ```
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

if TYPE_CHECKING:  # pydantic is optional: imported only when pydantic asks for a schema
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic_core import CoreSchema

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
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
Id = Annotated[int, msgspec.Meta(ge=_INT64_MIN, le=_INT64_MAX)]

TRANSLATE_MARKER = "|translate"


def plain_text(text: str | None) -> str | None:
    """Return `text` without Acquire's trailing `|translate` marker.

    Acquire appends `|translate` to system texts that its UI translates; the raw text keeps
    it, this helper drops it.

    Example:
        ```pycon
        >>> plain_text("You're being transferred.|translate")
        "You're being transferred."

        ```
    """
    if text is not None and text.endswith(TRANSLATE_MARKER):
        return text[: -len(TRANSLATE_MARKER)]
    return text


class _Known(str, enum.Enum):
    """Base of the known-value constants: `str` values that print as themselves."""

    def __str__(self) -> str:
        return str(self.value)


class CaseStatus(_Known):
    """Case `status` values seen in Acquire's payloads (others may appear)."""

    QUEUE = "queue"
    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"


class CaseUserStatus(_Known):
    """`CaseUser.status` values seen: how a participant stands in the case."""

    ACTIVE = "active"
    IGNORED = "ignored"
    JOINED = "joined"
    REJECTED = "rejected"


class ParticipantType(_Known):
    """`CaseUser.type` and `user.type`: `user` is an agent, `contact` a customer."""

    USER = "user"
    CONTACT = "contact"


class Channel(_Known):
    """Case and message `channel` values seen (`channel` may also be `None`)."""

    CHAT = "chat"


class MessageType(_Known):
    """`Message.type` values seen."""

    EVENT = "event"
    MESSAGE = "message"
    NOTE = "note"
    SMS = "sms"


# gc=False: these structs never form reference cycles (they hold only scalars, lists and
# dicts decoded from JSON), so keeping them out of the cyclic GC saves time on every decode
# and on every collection while thousands of cases are alive. See msgspec's perf tips.
class _Model(msgspec.Struct, frozen=True, rename="camel", gc=False, omit_defaults=True):
    """The base of every model: msgspec decoding, `to_dict`, and pydantic v2 hooks."""

    def to_dict(self) -> dict[str, Any]:
        """This model as JSON-ready builtins, in the wire shape Acquire sends.

        Keys are camelCase, datetimes ISO 8601 strings, fields still at their default are
        left out: the same shape as `msgspec.json.encode(model)`, as a `dict`, except for a
        participant of a type this SDK does not know (an `UnknownUser`), which gets back the
        `type` Acquire sent (`{"type": "bot", ...}`) where msgspec writes the SDK's private tag.

        Example:
            ```python
            case = await client.join_chat(1684)
            return web.json_response(case.to_dict())  # {"id": 1684, "status": "active", ...}
            ```
        """
        data: dict[str, Any] = msgspec.to_builtins(self)
        # An unknown participant type is rare: a look at the few attributes that can hold one
        # (about a tenth of `to_builtins`'s time), and the rewrite only when one is there.
        untag = _UNTAG.get(type(self))
        if untag is not None and untag[0](self):
            data = untag[1](data)
        return data

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """Let pydantic v2 (and so FastAPI) validate and serialise this model.

        Validation keeps an instance as it is and converts a dict (or JSON) in the wire shape
        with `msgspec.convert`, reading what the client reads (a participant of an unknown
        `type` becomes an `UnknownUser`); serialisation is `to_dict`. pydantic is imported
        here, when pydantic asks, never when `acquire_async` is imported.

        Example:
            ```python
            from pydantic import TypeAdapter

            TypeAdapter(Case).validate_python({"id": 7, "status": "active"}).status  # "active"
            ```
        """
        from pydantic_core import core_schema

        def validate(value: Any) -> Any:
            if isinstance(value, cls):
                return value
            try:
                return msgspec.convert(value, cls)
            except msgspec.ValidationError as exc:
                error = exc
            # Only a value the typed conversion refused takes the client's lenient pass.
            tree = _lenient_tree(cls, value)
            if tree is not None:
                try:
                    return msgspec.convert(tree, cls)
                except msgspec.ValidationError as exc:
                    error = exc
            # pydantic turns a ValueError into its own validation error (a 422 in FastAPI).
            raise ValueError(f"not a valid {cls.__name__}: {error}") from None

        return core_schema.no_info_plain_validator_function(
            validate,
            # A ref makes pydantic put the schema in its definitions once, under the class's
            # name: FastAPI's OpenAPI then shows a `Case` component, referenced where used.
            ref=f"{cls.__module__}.{cls.__qualname__}:{id(cls)}",
            serialization=core_schema.plain_serializer_function_ser_schema(
                _to_dict, info_arg=False
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        """The JSON Schema of this model for pydantic (FastAPI's `/openapi.json`).

        It is msgspec's schema of the wire shape with the nested models inlined, so no
        reference points outside it; pydantic files it once under the class's name (a `Case`
        component in FastAPI's OpenAPI). A model nested in itself (the `Case` of one of a
        case's `users`) is shown there as a plain object.

        Example:
            ```python
            from pydantic import TypeAdapter

            TypeAdapter(Case).json_schema()["properties"]["id"]["type"]  # "integer"
            ```
        """
        return _inline_schema(cls)


def _to_dict(model: _Model) -> dict[str, Any]:
    return model.to_dict()


def _inline_schema(cls: type[_Model]) -> dict[str, Any]:
    """msgspec's JSON Schema of `cls` with every `$ref` replaced by its definition.

    pydantic places a custom type's schema as given, in its own `$defs` or in FastAPI's
    `components`, where msgspec's `#/$defs/...` references would point at nothing. The
    models refer to each other in a cycle (a case holds participants that hold a case), so a
    model met again inside itself becomes `{"type": "object", "title": name}`.
    """
    top = msgspec.json.schema(cls)
    defs: dict[str, Any] = top.get("$defs", {})

    def resolve(node: Any, path: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, path) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in path:
                return {"type": "object", "title": name}
            definition = _brief(defs[name])
            if name == UnknownUser.__name__:
                definition = _wire_unknown_user_schema(definition)
            return resolve(definition, (*path, name))
        # A discriminator's mapping holds references, which inlining leaves dangling; the
        # tag itself is in each inlined alternative, as a one-value `enum`.
        out = {key: resolve(value, path) for key, value in node.items() if key != "discriminator"}
        if out.get("minimum") == _INT64_MIN and out.get("maximum") == _INT64_MAX:
            # OpenAPI's name for an id's bounds; FastAPI would print them as lossy floats.
            del out["minimum"], out["maximum"]
            out["format"] = "int64"
        return out

    resolved: dict[str, Any] = resolve(top, ())
    resolved.pop("$defs", None)
    return resolved


def _wire_unknown_user_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """`UnknownUser` as `to_dict` writes it: any `type` string, no private tag nor `kind`."""
    properties = {
        key: value for key, value in definition.get("properties", {}).items() if key != "kind"
    }
    properties["type"] = {"type": "string"}
    wire = {
        **definition,
        "description": "A participant of a `type` this SDK does not know yet.",
        "properties": properties,
    }
    wire.pop("required", None)
    return wire


def _brief(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition with only the first paragraph of its description (no code examples)."""
    description = definition.get("description")
    if not isinstance(description, str):
        return definition
    return {**definition, "description": description.split("\n\n", 1)[0]}


class Agent(_Model, tag="user", tag_field="type", kw_only=True, frozen=True):
    """An agent (`type: "user"`): the nested `user` of an agent participant."""

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
        """The wire `type` of this participant: always `"user"`."""
        return "user"


class Contact(_Model, tag="contact", tag_field="type", kw_only=True, frozen=True):
    """A customer (`type: "contact"`): the nested `user` of a contact participant."""

    id: Id | None = None
    name: str | None = None
    photo: str | None = None

    @property
    def type(self) -> str:
        """The wire `type` of this participant: always `"contact"`."""
        return "contact"


# A participant whose `type` is neither "user" nor "contact". msgspec's tagged unions have no
# catch-all tag, so the decoder rewrites such objects to this private tag on a second, slow
# pass that only a payload with an unknown type ever takes (see `_decode_lenient` in
# `_protocol`); `kind` keeps the type the server sent.
UNKNOWN_USER_TAG = "__acquire_async_unknown__"


class UnknownUser(_Model, tag=UNKNOWN_USER_TAG, tag_field="type", kw_only=True, frozen=True):
    """A participant of a `type` this SDK does not know yet; `kind` holds that type."""

    kind: str | None = None
    id: Id | None = None
    name: str | None = None
    photo: str | None = None

    @property
    def type(self) -> str | None:
        """The wire `type` the server sent."""
        return self.kind


class Message(_Model, kw_only=True, frozen=True):
    """A case message: what `add_message` returns, and `Case.last_message`.

    `message` is the raw text (it may end in `|translate`); `plain_text` drops
    that marker. The add-message answer also carries the message's `case` (the whole case,
    its participants included) and its `sender` (an `Agent` for `senderType`
    `"user"`, a `Contact` for `"contact"`); a `last_message` carries neither.

    Example:
        ```python
        message = await client.add_message(2069, "Hello! How can I help?")
        print(message.id, message.case_id, message.plain_text)
        if isinstance(message.sender, Agent):
            print("sent as", message.sender.name)
        ```
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
        """`message` without a trailing `|translate` marker.

        Example:
            ```pycon
            >>> Message(id=1, message="Hi|translate").plain_text
            'Hi'

            ```
        """
        return plain_text(self.message)


class CaseUser(_Model, kw_only=True, frozen=True):
    """A participant of a case: an entry of `Case.users`.

    `type` says whether it is an agent (`"user"`) or a customer (`"contact"`);
    `user` holds the matching `Agent` or `Contact` when the server sent it.
    `case` is present on the entry the join just created.
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
    """A case (a conversation): what `join_chat` returns.

    Only `id` is required. Timestamps are timezone-aware UTC `datetime`s; `meta` is
    the free-form dict the server sent (`{"sessionId": …, "queues": […]}`, `{}`, …).
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
        """`description` without a trailing `|translate` marker."""
        return plain_text(self.description)

    def participant(self, user_id: int) -> CaseUser | None:
        """The agent participant (`type == "user"`) with this `user_id`, if any."""
        for entry in self.users:
            if entry.user_id == user_id and entry.type == ParticipantType.USER:
                return entry
        return None


class ClosedCase(_Model, kw_only=True, frozen=True):
    """One numbered entry (`"0"`, `"1"`, …) of a close answer's `data`.

    All optional: Acquire's one published close answer has these four fields.

    Example:
        ```pycon
        >>> ClosedCase(case_id=5, contact_id=6, forever_closed=True, left_user=True).case_id
        5

        ```
    """

    case_id: Id | None = None
    contact_id: Id | None = None
    forever_closed: bool | None = None
    left_user: bool | None = None


class CloseResult(_Model, kw_only=True, frozen=True):
    """What `close_chat` returns, read from Acquire's close answer.

    The answer is not a case: its `data` holds numbered entries (`"0"`, and maybe more)
    beside `userId` and `userType`. `closed` lists the entries in key order;
    `case_id`, `contact_id`, `forever_closed` and `left_user` are the first entry's
    (`None` when there is none). `user_id` and `user_type` name who closed it. Encoding
    a `CloseResult` gives this shape, not the wire's.

    Example:
        ```python
        result = await client.close_chat(5)
        print(result.case_id, result.forever_closed, result.user_type, result.user_id)
        ```

        ```pycon
        >>> CloseResult(closed=[ClosedCase(case_id=5, left_user=True)], user_id=1).case_id
        5

        ```
    """

    closed: list[ClosedCase] = msgspec.field(default_factory=list)
    user_id: Id | None = None
    user_type: str | None = None

    @property
    def case_id(self) -> int | None:
        """The first entry's `caseId`: the case that was closed."""
        return self.closed[0].case_id if self.closed else None

    @property
    def contact_id(self) -> int | None:
        """The first entry's `contactId`: the case's customer."""
        return self.closed[0].contact_id if self.closed else None

    @property
    def forever_closed(self) -> bool | None:
        """The first entry's `foreverClosed` (Acquire does not document its meaning)."""
        return self.closed[0].forever_closed if self.closed else None

    @property
    def left_user(self) -> bool | None:
        """The first entry's `leftUser` (Acquire does not document its meaning)."""
        return self.closed[0].left_user if self.closed else None


# ------------------------------------------------------------ the wire shape of `UnknownUser`
# `msgspec.to_builtins` writes an `UnknownUser` with its private tag (`"type": UNKNOWN_USER_TAG`
# and the server's type in `kind`); `to_dict` puts the server's `type` back, and the pydantic
# validator reads that shape again through the client's own lenient rewrite.


def _wire_user(user: dict[str, Any]) -> dict[str, Any]:
    """An `UnknownUser`'s builtins as Acquire sent them: `kind` is its `type` again."""
    wire: dict[str, Any] = {"type": user["kind"]} if "kind" in user else {}
    wire.update((key, value) for key, value in user.items() if key != "kind" and key != "type")
    return wire


def _untag_user(parent: dict[str, Any], key: str) -> None:
    user = parent.get(key)
    if user is not None and user.get("type") == UNKNOWN_USER_TAG:
        parent[key] = _wire_user(user)


def _untag_case(case: dict[str, Any]) -> dict[str, Any]:
    for entry in case.get("users", ()):
        _untag_entry(entry)
    message = case.get("lastMessage")
    if message is not None:
        _untag_message(message)
    return case


def _untag_entry(entry: dict[str, Any]) -> dict[str, Any]:
    _untag_user(entry, "user")
    case = entry.get("case")
    if case is not None:
        _untag_case(case)
    return entry


def _untag_message(message: dict[str, Any]) -> dict[str, Any]:
    _untag_user(message, "sender")
    case = message.get("case")
    if case is not None:
        _untag_case(case)
    return message


def _case_holds_unknown(case: Case) -> bool:
    for entry in case.users:
        if _entry_holds_unknown(entry):
            return True
    message = case.last_message
    return message is not None and _message_holds_unknown(message)


def _entry_holds_unknown(entry: CaseUser) -> bool:
    if entry.user.__class__ is UnknownUser:
        return True
    case = entry.case
    return case is not None and _case_holds_unknown(case)


def _message_holds_unknown(message: Message) -> bool:
    if message.sender.__class__ is UnknownUser:
        return True
    case = message.case
    return case is not None and _case_holds_unknown(case)


def _always(model: Any) -> bool:
    return True


# The models that can hold an `UnknownUser`: whether one does (a look at the structs, cheaper
# than at their builtins) and how `to_dict` puts the wire `type` back in their builtins.
_Holds = Callable[[Any], bool]
_Untag = Callable[[dict[str, Any]], dict[str, Any]]
_UNTAG: dict[type[_Model], tuple[_Holds, _Untag]] = {
    Case: (_case_holds_unknown, _untag_case),
    CaseUser: (_entry_holds_unknown, _untag_entry),
    Message: (_message_holds_unknown, _untag_message),
    UnknownUser: (_always, _wire_user),
}


def _lenient_tree(cls: type[_Model], value: Any) -> Any:
    """A copy of `value` with the rewrite the client's lenient decode applies, or `None`.

    The client reads a participant of an unknown `type` (and a few other quirks of Acquire's)
    on a second pass; pydantic input takes the same pass, so it accepts what the client reads
    and what `to_dict` writes.
    """
    if not isinstance(value, dict) or cls not in (Case, CaseUser, Message):
        return None
    # _lenient imports this module: imported here, on the path of a refused value only.
    from ._lenient import _normalize_case, _normalize_message, _normalize_user

    try:
        tree = copy.deepcopy(value)  # the rewrite edits dicts in place; the caller's stay as given
        if cls is Case:
            _normalize_case(tree)
        elif cls is Message:
            _normalize_message(tree)
        else:
            _normalize_user(tree, "user", tree.get("type"))
            _normalize_case(tree.get("case"))
    except RecursionError:  # absurdly nested input: report the first error
        return None
    return tree
