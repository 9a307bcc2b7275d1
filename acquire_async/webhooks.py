"""Acquire's outbound webhooks, sans I/O: check a delivery's signature and read its event.

Nothing here touches the network or a web framework: give it the raw request body (bytes),
the `x-acquire-signature` header and your secret, get back a typed, frozen event or a
`WebhookError` whose `http_status` is what to answer.
`acquire_async.bot` builds its receiver on it; any framework can call
`construct_event` directly:

```python
event = construct_event(body, headers.get(SIGNATURE_HEADER), secret,
                        content_type=headers.get("content-type"))
if isinstance(event, CaseInviteEvent) and event.case_id is not None:
    await client.join_chat(event.case_id)
```

**Published vs assumed.** Published (Acquire's developer docs, see `docs/webhooks.md`):
HMAC-SHA256 in lowercase hex in `x-acquire-signature`, computed by the docs' Node code over
`JSON.stringify(body)`; the v2 envelope `{"event": ..., "data": {...}}`; one delivery body,
`case:status` (ids as strings, JavaScript `Date.toString()` dates, the whole transcript);
the v1 `CHAT_ON_START/ACCEPT/MESSAGE/CLOSE` bodies (mostly flat, some nested JSON sent as
text). ASSUMED (names seen only as subscriptions, no delivery published): the bodies of
`user:case-invite`, `user:case-joined` and `case:message:new`. Each class says what it
assumes. Anything else parses as `UnknownEvent` with its raw data.

**Theory of operation of verification.** Acquire's docs define the signature only as
`HMAC-SHA256(secret, JSON.stringify(parsedBody))`. When Acquire sends exactly that compact
text (the likely case), the raw bytes match: `verify_signature` first compares the HMAC
of the raw bytes with the header, in constant time (`hmac.compare_digest`). Only when
that fails does it parse the body and compare the HMAC of a compact re-serialisation,
`json.dumps(tree, separators=(",", ":"), ensure_ascii=False)`: the same bytes as
`JSON.stringify` for strings, objects, arrays, integers up to 2^53 and most floats, so a
pretty-printed or re-indented body still verifies. It differs from `JSON.stringify` in three
known ways (documented, and tested as failing): a float with an integral value (JS writes
`1`, Python `1.0`) or a small exponent (`1e-7` vs `1e-07`), an integer above 2^53 (JS
rounds it), and integer-like keys (JS moves `"10"` before the other keys). A body with those
verifies only through the raw path. The parsed tree that was verified is the one the event is
built from.

The fallback runs before anything is known about the sender, so its cost is bounded first:
it is only tried for a body of at most `MAX_FALLBACK_BODY` bytes (256 KiB) that opens at
most `MAX_CONTAINERS` objects and arrays (counted on the raw bytes); any other body must
match raw, else it is a 401 whatever its shape. A body that verifies, or is parsed without a
secret, is refused (400) over `MAX_CONTAINERS` or deeper than `MAX_DEPTH`.

The signature covers the body only: there is no timestamp, so replays cannot be detected by
the protocol; de-duplicate on `(event, case_id, fingerprint)`. `fingerprint` is the SHA-256
of the bytes the signature covers: the raw body, or the compact form when the fallback matched.
A replay re-formatted to pass the fallback (other blanks, `\\u0035` escapes, a duplicate key)
thus has the fingerprint of the delivery it copies. Without a secret it is the raw body's.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import msgspec

from ._secrets import Secret
from .errors import (
    InvalidPayloadError,
    InvalidSignatureError,
    PayloadTooLargeError,
    UnsupportedContentTypeError,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "MAX_FALLBACK_BODY",
    "SIGNATURE_HEADER",
    "CaseInviteEvent",
    "CaseJoinedEvent",
    "CaseStatusEvent",
    "ChatAcceptEvent",
    "ChatCloseEvent",
    "ChatMessageEvent",
    "ChatStartEvent",
    "EventName",
    "MessageNewEvent",
    "UnknownEvent",
    "WebhookContact",
    "WebhookEvent",
    "WebhookMessage",
    "construct_event",
    "parse_date",
    "parse_event",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "x-acquire-signature"
"""The header that carries the signature (lowercase; HTTP header names are case-insensitive).

Example:
    ```python
    signature = request.headers.get(SIGNATURE_HEADER)
    ```
"""

DEFAULT_MAX_BODY: Final = 1_048_576
"""The largest body accepted by default, in bytes (1 MiB; the published delivery is 1.4 KB).

Example:
    ```python
    parse_event(body, max_body=DEFAULT_MAX_BODY)
    ```
"""

MAX_DEPTH: Final = 64
"""The deepest nesting of objects and arrays a body may have (the published ones reach 5).

Example:
    ```python
    parse_event(b'{"event": "x", "data": ' + b"[" * 100 + b"]" * 100 + b"}")  # 400
    ```
"""

MAX_CONTAINERS: Final = 20_000
"""The most objects and arrays a body may open, counted as its `[` and `{` bytes.

Decoding, checking the depth of and re-serialising a body cost time and memory per container
(a 1 MiB body of `[],[],...` is 350,000 lists: seconds of CPU and 25 MiB per parsed event),
and the count is one C-speed pass over the raw bytes, taken before anything is parsed. It
counts brackets inside strings too, so it bounds the containers from above. Why 20,000: the
published delivery opens 11; a transcript of the published shape (200-260 bytes a message)
fills the 1 MiB default `max_body` with about 4,500 messages, one object each; the rest is
room for brackets in message texts. A body over the cap is an
`InvalidPayloadError` (400) once it is known to be signed (or
when no secret is set); when a secret is set and the raw bytes do not match the signature, the
fallback is not tried and the answer is `InvalidSignatureError`
(401), whatever the body's shape.

Example:
    ```python
    parse_event(b'{"event": "x", "data": {"a": [' + b"[]," * 20_000 + b"[]]}}")  # 400
    ```
"""

MAX_FALLBACK_BODY: Final = 262_144
"""The largest body the fallback verification parses and re-serialises (256 KiB).

A body whose raw bytes do not match the signature is only parsed when it is this size or
smaller; a bigger one must match raw (Acquire's likely compact `JSON.stringify` text does)
or it is an `InvalidSignatureError` (401). Why: the fallback runs
before the sender is known, so anyone can make it run; at this size and under
`MAX_CONTAINERS` its worst case is tens of milliseconds of CPU, against about a second
for a 1 MiB body. The published delivery is 2 KB pretty-printed; a pretty transcript of about
several hundred messages fits.

Example:
    ```python
    verify_signature(pretty_body, signature, secret)  # fallback only if <= MAX_FALLBACK_BODY
    ```
"""

_JSON: Final = "application/json"
_HEX: Final = frozenset("0123456789abcdef")
_DIGEST_HEX_LEN: Final = 64
_ID_MAX: Final = 2**63 - 1
_DECODER: Final = msgspec.json.Decoder()
_ECHOED_TYPES: Final = frozenset(
    {
        "application/xml",
        "text/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
        "text/html",
        "application/octet-stream",
    }
)


class EventName(str, enum.Enum):
    """The event names this module knows; `event.event` is a plain `str` equal to one.

    Example:
        ```python
        if event.event == EventName.CASE_INVITE:
            ...
        ```
    """

    CASE_STATUS = "case:status"
    CASE_INVITE = "user:case-invite"  # ASSUMED body
    CASE_JOINED = "user:case-joined"  # ASSUMED body
    MESSAGE_NEW = "case:message:new"  # ASSUMED body
    CHAT_ON_START = "CHAT_ON_START"
    CHAT_ON_ACCEPT = "CHAT_ON_ACCEPT"
    CHAT_ON_MESSAGE = "CHAT_ON_MESSAGE"
    CHAT_ON_CLOSE = "CHAT_ON_CLOSE"

    def __str__(self) -> str:
        return str(self.value)


# --------------------------------------------------------------------------- events


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What every delivery parses to; the base of every event class (annotate with it).

    - `event`: the wire name as received (`"case:status"`, `"CHAT_ON_START"`, `"x:new"`);
    - `case_id`: the case it is about (string ids coerced to `int`), `None` when absent;
    - `status`: the case status the event reports, when it reports one, else `None`;
    - `data`: the raw data object as received (a v1 flat body: the body without `event`);
    - `fingerprint`: hex SHA-256 of the bytes the signature covers: the raw body, or its
      compact form when it verified through the fallback (the raw body when nothing was
      verified). De-duplicate on `(event, case_id, fingerprint)`: Acquire sends no delivery
      id, and a re-formatted replay of a delivery gets the same fingerprint as the original;
    - `size`: the length of the raw body in bytes (to bound a backlog by bytes).

    `repr` (and rich's `__rich_repr__`) shows the event name, case, status and a short
    fingerprint, never `data`: a delivery carries contacts' personal data and whole
    transcripts, which do not belong in logs.

    Example:
        ```python
        event = parse_event(b'{"event":"case:status","data":{"caseId":"72","status":"closed"}}')
        assert isinstance(event, WebhookEvent)
        print(event.event, event.case_id, event.status)  # case:status 72 closed
        ```
    """

    event: str
    case_id: int | None = None
    status: str | None = None
    data: dict[str, Any]
    fingerprint: str
    size: int

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(event={self.event!r}, case_id={self.case_id!r}, "
            f"status={self.status!r}, fingerprint={self.fingerprint[:12]!r})"
        )

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's own lists every field, data included, past __repr__ (rich.pretty uses it).
        return [
            ("event", self.event),
            ("case_id", self.case_id),
            ("status", self.status),
            ("fingerprint", self.fingerprint[:12]),
        ]


class WebhookContact(msgspec.Struct, frozen=True, kw_only=True):
    """The contact of a `case:status` delivery: `id` (coerced to `int`) and `fields`.

    `fields` is the raw object (published keys: `name`, `email`, `phone`, `city`,
    `state`, `countryId`, `ip`); `name` and `email` read it leniently.
    An `id` that is not an id, or `fields` that is not an object, reads as `None`.
    `repr` leaves `fields` out (personal data).

    Example:
        ```python
        if event.contact is not None:
            print(event.contact.id, event.contact.name)
        ```
    """

    id: int | None = None
    fields: dict[str, Any] | None = None

    @property
    def name(self) -> str | None:
        """`fields["name"]` when it is a string, else `None`."""
        return _field_text(self.fields, "name")

    @property
    def email(self) -> str | None:
        """`fields["email"]` when it is a string, else `None`."""
        return _field_text(self.fields, "email")

    def __repr__(self) -> str:
        return f"WebhookContact(id={self.id!r})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return [("id", self.id)]


class WebhookMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a webhook's transcript, as in the published `case:status` delivery.

    Ids are coerced to `int`; `message` is the text; `seen` is `True` for the published
    `"yes"` (or JSON `true`), `False` for `"no"`/`false` (`"no"` is ASSUMED), else
    `None`; `date_created` is parsed best-effort by `parse_date` and
    `date_created_raw` keeps the text as sent. A field of the wrong type reads as `None`
    (the raw value stays in the event's `data`). `repr` leaves the text out.

    Example:
        ```python
        for message in event.messages:
            if message.sender_type == "contact" and message.type == "message":
                print(message.date_created, message.message)
        ```
    """

    id: int | None = None
    channel: str | None = None
    sender_id: int | None = None
    sender_type: str | None = None
    type: str | None = None
    message: str | None = None
    seen: bool | None = None
    date_created: datetime | None = None
    date_created_raw: str | None = None

    def __repr__(self) -> str:
        return (
            f"WebhookMessage(id={self.id!r}, channel={self.channel!r}, "
            f"sender_id={self.sender_id!r}, sender_type={self.sender_type!r}, "
            f"type={self.type!r}, seen={self.seen!r}, date_created={self.date_created!r})"
        )

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # Not the text: a transcript's messages are personal data.
        return [
            ("id", self.id),
            ("channel", self.channel),
            ("sender_id", self.sender_id),
            ("sender_type", self.sender_type),
            ("type", self.type),
            ("seen", self.seen),
            ("date_created", self.date_created),
        ]


class CaseStatusEvent(WebhookEvent, frozen=True, kw_only=True):
    """`case:status`: a case's status changed (the one published v2 delivery).

    `status` is `data.status` (`"closed"` in the example; the docs' labels name pending,
    active, queue and closed). `contact` and `messages` (the whole transcript) are typed
    views of `data`; `fields` is `data.fields` as sent. `caseId` and `status` are
    checked (an InvalidPayloadError names a wrong one); the rest is read leniently, so one odd
    value does not cost the delivery: a contact, `contact.id`, `contact.fields` or
    `fields` of the wrong type reads as `None`, `messages` that is not an array reads as
    `()`, and an entry of `messages` that is not an object is skipped. `data` keeps
    everything as sent.

    Example:
        ```python
        event = parse_event(body)
        if isinstance(event, CaseStatusEvent) and event.status == "pending":
            await client.join_chat(event.case_id)
        ```
    """

    contact: WebhookContact | None = None
    messages: tuple[WebhookMessage, ...] = ()
    fields: dict[str, Any] | None = None


class CaseInviteEvent(WebhookEvent, frozen=True, kw_only=True):
    """`user:case-invite`: a user (the bot's agent) is invited to a case.

    ASSUMED shape (no delivery is published): `{"event": "user:case-invite", "data":
    {"caseId": "<id>", "userId": "<invited user id>"}}`; `case_id` and `user_id` are
    `None` when those keys are absent, `status` is always `None`. `caseId` is checked
    (an InvalidPayloadError when it is not an id); `userId`, being assumed, is read
    leniently: `None` when it is not an id (e.g. `"bot-3"`), the raw value in `data`.

    Example:
        ```python
        if isinstance(event, CaseInviteEvent) and event.case_id is not None:
            await client.join_chat(event.case_id)
        ```
    """

    user_id: int | None = None


class CaseJoinedEvent(WebhookEvent, frozen=True, kw_only=True):
    """`user:case-joined`: a user joined a case. ASSUMED shape, as `CaseInviteEvent`.

    Example:
        ```python
        if isinstance(event, CaseJoinedEvent):
            print(event.user_id, "joined", event.case_id)
        ```
    """

    user_id: int | None = None


class MessageNewEvent(WebhookEvent, frozen=True, kw_only=True):
    """`case:message:new`: a message was added to a case.

    ASSUMED shape (no delivery is published): `data.caseId` and `data.message`, a message
    object as in `case:status`'s `messages[]`; when `data.message` is a string, `data`
    itself is read as that message object (a flat body). `case_id` falls back to the
    message's own `caseId`. `status` is always `None`. `data.caseId` is checked;
    `data.message` and the message's fields are read leniently (`None` when of another
    type, the raw value in `data`).

    Example:
        ```python
        if isinstance(event, MessageNewEvent) and event.message is not None:
            print(event.case_id, event.message.sender_type, event.message.message)
        ```
    """

    message: WebhookMessage | None = None


class _ChatEvent(WebhookEvent, frozen=True, kw_only=True):
    """The v1 (2018) `CHAT_ON_*` events: unsigned by Acquire, mostly flat bodies.

    `case_id` is the chat's `id` (ASSUMED to be the case id of today's API; the published
    `CHAT_ON_START` example spells the key `" id"`, with a space, which is read too).
    `status` is `data.status` as sent. Dates are `"YYYY-MM-DD HH:MM:SS"` with no zone:
    parsed as naive datetimes, the raw text kept.
    """

    date_created: datetime | None = None
    date_created_raw: str | None = None
    date_updated: datetime | None = None
    date_updated_raw: str | None = None


class ChatStartEvent(_ChatEvent, frozen=True, kw_only=True):
    """v1 `CHAT_ON_START`: a chat started. `details` is the visitor's object as sent.

    Example:
        ```python
        if isinstance(event, ChatStartEvent):
            print(event.case_id, event.status, (event.details or {}).get("name"))
        ```
    """

    details: dict[str, Any] | None = None


class ChatAcceptEvent(_ChatEvent, frozen=True, kw_only=True):
    """v1 `CHAT_ON_ACCEPT`: an agent accepted a chat. `user` is the agent's object as sent.

    Example:
        ```python
        if isinstance(event, ChatAcceptEvent):
            print(event.case_id, (event.user or {}).get("name"))
        ```
    """

    user: dict[str, Any] | None = None


class ChatMessageEvent(_ChatEvent, frozen=True, kw_only=True):
    """v1 `CHAT_ON_MESSAGE`: a message in a chat.

    `message` is the `{"type", "msg", "user"}` object, decoded when the body sends it as
    a JSON string (the published page does); `text` is its `msg`.

    Example:
        ```python
        if isinstance(event, ChatMessageEvent):
            print(event.case_id, event.text)
        ```
    """

    message: dict[str, Any] | None = None
    date_picked: datetime | None = None
    date_picked_raw: str | None = None

    @property
    def text(self) -> str | None:
        """`message["msg"]` when it is a string, else `None`."""
        return _field_text(self.message, "msg")


class ChatCloseEvent(_ChatEvent, frozen=True, kw_only=True):
    """v1 `CHAT_ON_CLOSE`: a chat was closed.

    `users` (`{"agent": ..., "visitor": ...}`) is decoded when sent as a JSON string.
    The published example reports `"status": "active"`: `status` is what was sent.

    Example:
        ```python
        if isinstance(event, ChatCloseEvent):
            print(event.case_id, "closed by", event.by)
        ```
    """

    users: dict[str, Any] | None = None
    by: str | None = None
    date_picked: datetime | None = None
    date_picked_raw: str | None = None


class UnknownEvent(WebhookEvent, frozen=True, kw_only=True):
    """Any other event name, kept raw in `data` (Acquire's docs list more events than names).

    `case_id` is read best-effort from `data.caseId` (as `case:status` names it) and is
    `None` when that is absent or not an id; `status` is `None`.

    Example:
        ```python
        event = parse_event(b'{"event":"case:new","data":{"caseId":"9"}}')
        assert isinstance(event, UnknownEvent) and event.case_id == 9
        ```
    """


# --------------------------------------------------------------------------- signing


def sign(body: bytes, secret: str | bytes | Secret[bytes]) -> str:
    """The lowercase hex HMAC-SHA256 of `body` keyed with `secret`: what Acquire sends.

    A `str` secret is encoded as UTF-8. For tests, emulators and senders.

    Example:
        ```python
        headers = {SIGNATURE_HEADER: sign(body, "s3cret"), "Content-Type": "application/json"}
        ```
    """
    key = _hold(secret)
    del secret  # before anything else can raise: see verify_signature
    body = _body(body)
    if key is None:
        raise TypeError("secret must be a str or bytes, not NoneType")
    return hmac.new(key.reveal(), body, hashlib.sha256).hexdigest()


def verify_signature(
    body: bytes, signature: str | None, secret: str | bytes | Secret[bytes] | None
) -> None:
    """Check `signature` (the `x-acquire-signature` header) against `body`.

    `secret=None` turns verification off (an explicit opt-out) and returns at once.
    Otherwise a missing, empty or malformed header, or one that matches neither the raw
    bytes nor the compact re-serialisation (see the module's theory of operation), raises
    `InvalidSignatureError` (401). The re-serialisation is only
    tried for a body of at most `MAX_FALLBACK_BODY` bytes that opens at most
    `MAX_CONTAINERS` objects and arrays. Hex is compared case-insensitively and in
    constant time. The error never holds the expected value.

    Example:
        ```python
        try:
            verify_signature(body, request.headers.get(SIGNATURE_HEADER), secret)
        except InvalidSignatureError:
            ...  # answer 401
        ```
    """
    key = _hold(secret)
    # From here on no frame holds the plain secret: error trackers record every frame's locals.
    # So the secret is dropped before any other argument is checked (a str body raises).
    del secret
    body = _body(body)
    _signature_type(signature)
    if key is None:
        return
    problem, _, _ = _verify(body, signature, key)
    if problem is not None:
        raise InvalidSignatureError(problem)


_MISMATCH: Final = "the x-acquire-signature header does not match the body"


def _verify(
    body: bytes, signature: str | None, key: Secret[bytes]
) -> tuple[str | None, bytes, Any]:
    """`(None, signed bytes, tree or None)` when `signature` signs `body`, else
    `(why, b"", None)`."""
    try:
        given = _signature(signature)
    except InvalidSignatureError as exc:
        return str(exc), b"", None
    signed, tree = _signed(body, given, key)
    return (_MISMATCH, b"", None) if signed is None else (None, signed, tree)


def _signed(body: bytes, given: bytes, holder: Secret[bytes]) -> tuple[bytes | None, Any]:
    """The bytes `given` signs: `body` (raw) or its compact form (the fallback), with the
    tree when it was parsed; `(None, None)` when neither matches.

    The key's bytes sit in a plain local only here, and this frame never raises.
    """
    key = holder.reveal()
    if hmac.compare_digest(hmac.new(key, body, hashlib.sha256).hexdigest().encode(), given):
        return body, None
    # Nothing is known about the sender yet: the fallback's cost is bounded before it starts.
    if len(body) > MAX_FALLBACK_BODY:
        return None, None
    try:
        tree = _decode(body)  # refuses a body over MAX_CONTAINERS before parsing it
    except InvalidPayloadError:
        return None, None
    compact = _compact(tree)
    if compact is None or compact == body:
        return None, None
    expected = hmac.new(key, compact, hashlib.sha256).hexdigest().encode()
    return (compact, tree) if hmac.compare_digest(expected, given) else (None, None)


def _compact(tree: Any) -> bytes | None:
    """`JSON.stringify`-like compact bytes of `tree` (see the caveats), or `None`."""
    try:
        return json.dumps(tree, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except (ValueError, TypeError, RecursionError):
        return None  # inf from 1e999, an int too long for str(): cannot have been signed so


def _signature_type(signature: object) -> None:
    if signature is not None and not isinstance(signature, str):
        raise TypeError(f"signature must be a str or None, not {type(signature).__name__}")


def _signature(signature: str | None) -> bytes:
    _signature_type(signature)
    if signature is None:
        raise InvalidSignatureError("the x-acquire-signature header is missing")
    text = signature.strip(" \t").lower()
    if not text:
        raise InvalidSignatureError("the x-acquire-signature header is empty")
    if len(text) != _DIGEST_HEX_LEN or not _HEX.issuperset(text):
        raise InvalidSignatureError(
            "the x-acquire-signature header is not a SHA-256 hex digest (64 hex digits)"
        )
    return text.encode("ascii")


def _hold(secret: object) -> Secret[bytes] | None:
    """`secret` (str, bytes or a held one) as a `Secret[bytes]`; `None` for `None`."""
    if secret is None:
        return None
    value = secret.reveal() if isinstance(secret, Secret) else secret
    if isinstance(value, str):
        if not value:
            raise ValueError("secret is empty")
        return Secret(value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise ValueError("secret is empty")
        return Secret(bytes(value))
    raise TypeError(f"secret must be a str or bytes, not {type(value).__name__}")


def _body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        raise TypeError("body must be the raw request bytes, not str (the signature is over bytes)")
    raise TypeError(f"body must be bytes, not {type(body).__name__}")


# --------------------------------------------------------------------------- parsing


def parse_event(
    body: bytes, content_type: str | None = None, *, max_body: int = DEFAULT_MAX_BODY
) -> WebhookEvent:
    """Read a delivery into its event class, without checking any signature.

    `content_type` `None` is not checked; otherwise its media type must be
    `application/json` (any case, parameters allowed), else
    `UnsupportedContentTypeError` (415). A body over
    `max_body` bytes raises `PayloadTooLargeError` (413)
    before anything is parsed. Not JSON, more than `MAX_CONTAINERS` objects and arrays
    (counted before parsing), nesting deeper than `MAX_DEPTH`, not an object, no
    `event` string, `data` that is not an object, or a `caseId`/`status` (v1: `id`,
    `status` and the published fields) of the wrong type raise
    `InvalidPayloadError` (400, `path` names the field). The
    transcript, the contact, `fields` and the ASSUMED fields are read leniently: a value of
    the wrong type reads as `None` and stays in `data`. Every field may be missing;
    `null` reads as absent. `fingerprint` is the SHA-256 of `body`.

    Example:
        ```python
        event = parse_event(b'{"event":"user:case-invite","data":{"caseId":"1684"}}')
        assert isinstance(event, CaseInviteEvent) and event.case_id == 1684
        ```
    """
    body = _body(body)
    _check_max_body(max_body)
    _check_content_type_type(content_type)
    _check_size(body, max_body)
    _check_content_type(content_type)
    return _event(_decode(body), body, len(body))


def construct_event(
    body: bytes,
    signature: str | None,
    secret: str | bytes | Secret[bytes] | None,
    *,
    content_type: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> WebhookEvent:
    """Verify and parse a delivery in one call (stripe's `Webhook.construct_event`).

    The checks run in the order a receiver answers them: size (413), content type (415),
    signature (401), body (400); each failure is a
    `WebhookError` whose `http_status` is that answer. An
    unsigned sender learns nothing about the body's validity: a bad signature is a 401 even
    for a body that is not JSON or is over `MAX_CONTAINERS`. `secret=None` skips
    the signature check. `fingerprint` is the SHA-256 of the bytes the signature covers
    (the compact form when the fallback matched), so a re-formatted replay of a delivery
    gets the fingerprint of the original.

    Example:
        ```python
        try:
            event = construct_event(body, headers.get(SIGNATURE_HEADER), secret,
                                    content_type=headers.get("content-type"))
        except WebhookError as exc:
            return Response(status_code=exc.http_status)
        ```
    """
    key = _hold(secret)
    del secret  # see verify_signature
    body = _body(body)
    _signature_type(signature)
    _check_max_body(max_body)
    _check_content_type_type(content_type)
    _check_size(body, max_body)
    _check_content_type(content_type)
    if key is None:
        return _event(_decode(body), body, len(body))
    problem, signed, tree = _verify(body, signature, key)
    if problem is not None:
        raise InvalidSignatureError(problem)
    return _event(_decode(body) if tree is None else tree, signed, len(body))


def _check_max_body(max_body: int) -> None:
    if isinstance(max_body, bool) or not isinstance(max_body, int):
        raise TypeError(f"max_body must be an int, not {type(max_body).__name__}")
    if max_body < 1:
        raise ValueError(f"max_body must be at least 1, not {max_body}")


def _check_content_type_type(content_type: str | None) -> None:
    if content_type is not None and not isinstance(content_type, str):
        raise TypeError(f"content_type must be a str or None, not {type(content_type).__name__}")


def _check_size(body: bytes, max_body: int) -> None:
    # The arguments' types were checked first (TypeError before any 413 or 415).
    if len(body) > max_body:
        raise PayloadTooLargeError(f"the body is {len(body)} bytes, over the {max_body}-byte cap")


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return
    media = content_type.partition(";")[0].strip().lower()
    if media != _JSON:
        # Only a well-known type is echoed: the header is the sender's text, not ours to log.
        shown = repr(media) if media in _ECHOED_TYPES else "of this delivery"
        raise UnsupportedContentTypeError(
            f"the content type {shown} is not application/json (set the webhook's format to JSON)"
        )


def _decode(body: bytes) -> Any:
    # An upper bound on the containers (brackets in strings count too), in C, before parsing.
    openers = body.count(b"[") + body.count(b"{")
    if openers > MAX_CONTAINERS:
        raise InvalidPayloadError(
            f"the body opens more than {MAX_CONTAINERS} objects and arrays ({openers} brackets)"
        )
    try:
        tree = _DECODER.decode(body)
    except RecursionError:
        raise InvalidPayloadError("the body's JSON is nested too deeply") from None
    except (msgspec.MsgspecError, ValueError) as exc:
        # msgspec's messages name a byte offset, never the content.
        raise InvalidPayloadError(f"the body is not valid JSON: {exc}") from None
    # A tree cannot be deeper than its number of openers: most bodies skip the walk.
    if openers > MAX_DEPTH and _too_deep(tree, MAX_DEPTH):
        raise InvalidPayloadError(f"the body's JSON is nested deeper than {MAX_DEPTH} levels")
    return tree


def _too_deep(tree: Any, limit: int) -> bool:
    """Is `tree` nested deeper than `limit` containers? Level by level: no recursion, and
    the per-node work stays in comprehensions (a few times faster than a stack of tuples)."""
    level = [tree] if type(tree) is dict or type(tree) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below.extend([child for child in children if type(child) in _CONTAINERS])
        level = below
    return False


_CONTAINERS: Final = (dict, list)


def _event(tree: Any, signed: bytes, size: int) -> WebhookEvent:
    """The event of `tree`; `signed` are the bytes its signature covers (the fingerprint's),
    `size` the raw body's length."""
    if not isinstance(tree, dict):
        raise InvalidPayloadError(
            f"the body is a JSON {_kind(tree)}, not an object with an event", path="$"
        )
    name = tree.get("event")
    if name is None:
        raise InvalidPayloadError("the body has no event name", path="$.event")
    if not isinstance(name, str):
        raise InvalidPayloadError(f"event must be a string, not {_kind(name)}", path="$.event")
    if not name:
        raise InvalidPayloadError("the event name is empty", path="$.event")
    data = tree.get("data")
    if isinstance(data, dict):
        path = "$.data"
    elif data is None:
        # v1's flat bodies: the event's fields sit beside "event".
        data = {key: value for key, value in tree.items() if key != "event"}
        path = "$"
    else:
        raise InvalidPayloadError(f"data must be an object, not {_kind(data)}", path="$.data")
    fingerprint = hashlib.sha256(signed).hexdigest()
    builder = _BUILDERS.get(name)
    if builder is None:
        return UnknownEvent(
            event=name,
            case_id=_as_id(data.get("caseId")),
            data=data,
            fingerprint=fingerprint,
            size=size,
        )
    return builder(name, data, path, fingerprint, size)


# Strict field readers: ``obj[key]`` read at ``where`` (a JSON path); a present field of the
# wrong type is an InvalidPayloadError naming it. The path is only formatted for an error.
# They read what the event is about (caseId, status; v1's published fields). Lenient readers
# (``_as_*``) read the rest: the transcript, the contact and the ASSUMED fields, where one odd
# value must not cost the whole delivery; they give None and the raw value stays in ``data``.


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{key!r}]"


def _wrong(where: str, key: str, expected: str, value: Any) -> InvalidPayloadError:
    path = _path(where, key)
    return InvalidPayloadError(f"{path} must be {expected}, not {_kind(value)}", path=path)


def _id(obj: dict[str, Any], key: str, where: str) -> int | None:
    """An id: a positive 64-bit integer, or a string of digits for one (Acquire sends `"72"`)."""
    value = obj.get(key)
    if value is None:
        return None
    number = _as_id(value)
    if number is not None:
        return number
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        path = _path(where, key)
        raise InvalidPayloadError(
            f"{path} must be an id (digits, 1 to 2^63-1), not other text or number", path=path
        )
    raise _wrong(where, key, "an id", value)


def _as_id(value: Any) -> int | None:
    """`value` as an id (1 to 2^63-1, an integer or up to 19 ASCII digits), else `None`.

    0 and negatives are refused: no Acquire record has them, and `join_chat` would raise.
    """
    if type(value) is str:
        if len(value) > 19 or not value.isascii() or not value.isdigit():
            return None
        number = int(value)
    elif type(value) is int:
        number = value
    else:
        return None
    return number if 1 <= number <= _ID_MAX else None


def _text(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _wrong(where, key, "a string", value)


def _as_text(value: Any) -> str | None:
    return value if type(value) is str else None


def _as_object(value: Any) -> dict[str, Any] | None:
    return value if type(value) is dict else None


def _object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise _wrong(where, key, "an object", value)


def _json_object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    """An object, or (v1) a string holding one; any other string (`""`, `"null"`, text that
    is not JSON) reads as `None`, its text kept in `data`."""
    value = obj.get(key)
    if isinstance(value, str):
        if not value.lstrip().startswith("{"):
            return None
        try:
            nested = _decode(value.encode("utf-8"))
        except InvalidPayloadError:
            return None  # not JSON after all: the text stays in ``data``
        return nested if isinstance(nested, dict) else None
    return _object(obj, key, where)


def _date(obj: dict[str, Any], key: str, where: str) -> tuple[datetime | None, str | None]:
    text = _text(obj, key, where)
    if text is None:
        return None, None
    return (_cached_date(text) if len(text) <= _DATE_MAX else None), text


def _field_text(fields: dict[str, Any] | None, key: str) -> str | None:
    value = None if fields is None else fields.get(key)
    return value if isinstance(value, str) else None


_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# Date.prototype.toString(): "Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)"
_JS_DATE: Final = re.compile(
    r"(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2}) ([0-9]{1,2}) (-?[0-9]{4,6}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT([+-])([0-9]{2})([0-9]{2})(?: \([^()]{0,80}\))?"
)
_ISO_LIKE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9:.,]+(?:[Zz]|[+-][0-9:]+)?)?")


def parse_date(text: str) -> datetime | None:
    """Best-effort date reading for webhook texts; `None` when the format is not one of:

    - ISO 8601 (`2021-03-25T12:26:08.150Z`): aware when it has a zone;
    - `YYYY-MM-DD HH:MM:SS` (v1, no zone): a naive datetime, the zone being unknown;
    - JavaScript `Date.toString()` (`Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated
      Universal Time)`, the published v2 form): aware, with the given offset.

    It never raises for a string. Example:

    ```python
    parse_date("Wed Mar 03 2021 10:19:49 GMT+0000 (Coordinated Universal Time)")
    # datetime(2021, 3, 3, 10, 19, 49, tzinfo=timezone.utc)
    ```
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    text = text.strip()
    if len(text) > 120:
        return None
    match = _JS_DATE.fullmatch(text)
    if match is not None:
        month = _MONTHS.get(match[1])
        if month is None:
            return None
        try:
            offset = timedelta(hours=int(match[8]), minutes=int(match[9]))
            return datetime(
                int(match[3]),
                month,
                int(match[2]),
                int(match[4]),
                int(match[5]),
                int(match[6]),
                tzinfo=timezone(-offset if match[7] == "-" else offset),
            )
        except ValueError:
            return None
    if _ISO_LIKE.fullmatch(text):
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


# A transcript repeats the same few timestamps: parsing each text once saves most of the
# cost. Bounded, and datetimes are immutable, so sharing them is safe.
@functools.lru_cache(maxsize=4096)
def _cached_date(text: str) -> datetime | None:
    return parse_date(text)


_DATE_MAX: Final = 120


# --------------------------------------------------------------------------- builders


def _message(value: dict[str, Any]) -> WebhookMessage:
    """A transcript message, read leniently (see `WebhookMessage`)."""
    raw = value.get("dateCreated")
    date = None
    if type(raw) is str:
        date = _cached_date(raw) if len(raw) <= _DATE_MAX else None
    else:
        raw = None
    seen = value.get("seen")
    return WebhookMessage(
        id=_as_id(value.get("id")),
        channel=_as_text(value.get("channel")),
        sender_id=_as_id(value.get("senderId")),
        sender_type=_as_text(value.get("senderType")),
        type=_as_text(value.get("type")),
        message=_as_text(value.get("message")),
        seen=True
        if seen is True or seen == "yes"
        else False
        if seen is False or seen == "no"
        else None,
        date_created=date,
        date_created_raw=raw,
    )


def _case_status(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    contact_data = _as_object(data.get("contact"))
    contact = None
    if contact_data is not None:
        contact = WebhookContact(
            id=_as_id(contact_data.get("id")), fields=_as_object(contact_data.get("fields"))
        )
    messages = data.get("messages")
    return CaseStatusEvent(
        event=name,
        case_id=_id(data, "caseId", where),
        status=_text(data, "status", where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        contact=contact,
        # An entry that is not an object is skipped; the raw list stays in data.
        messages=tuple(_message(item) for item in messages if type(item) is dict)
        if type(messages) is list
        else (),
        fields=_as_object(data.get("fields")),
    )


def _case_user(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    cls = CaseInviteEvent if name == EventName.CASE_INVITE.value else CaseJoinedEvent
    return cls(
        event=name,
        case_id=_id(data, "caseId", where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        user_id=_as_id(data.get("userId")),  # ASSUMED field: lenient
    )


def _message_new(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    raw = data.get("message")  # ASSUMED field: lenient
    message = None
    if type(raw) is dict:
        message = _message(raw)
    elif type(raw) is str:
        message = _message(data)  # a flat body: data is the message
    case_id = _id(data, "caseId", where)
    if case_id is None and type(raw) is dict:
        case_id = _as_id(raw.get("caseId"))
    return MessageNewEvent(
        event=name,
        case_id=case_id,
        data=data,
        fingerprint=fingerprint,
        size=size,
        message=message,
    )


def _chat_common(name: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    created, created_raw = _date(data, "date_created", where)
    updated, updated_raw = _date(data, "date_updated", where)
    return {
        "event": name,
        # The published CHAT_ON_START spells the key " id".
        "case_id": _id(data, "id" if "id" in data else " id", where),
        "status": _text(data, "status", where),
        "date_created": created,
        "date_created_raw": created_raw,
        "date_updated": updated,
        "date_updated_raw": updated_raw,
    }


def _chat_start(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    return ChatStartEvent(
        **_chat_common(name, data, where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        details=_object(data, "details", where),
    )


def _chat_accept(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    return ChatAcceptEvent(
        **_chat_common(name, data, where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        user=_object(data, "user", where),
    )


def _chat_message(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    picked, picked_raw = _date(data, "date_picked", where)
    return ChatMessageEvent(
        **_chat_common(name, data, where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        message=_json_object(data, "message", where),
        date_picked=picked,
        date_picked_raw=picked_raw,
    )


def _chat_close(
    name: str, data: dict[str, Any], where: str, fingerprint: str, size: int
) -> WebhookEvent:
    picked, picked_raw = _date(data, "date_picked", where)
    return ChatCloseEvent(
        **_chat_common(name, data, where),
        data=data,
        fingerprint=fingerprint,
        size=size,
        users=_json_object(data, "users", where),
        by=_text(data, "by", where),
        date_picked=picked,
        date_picked_raw=picked_raw,
    )


_BUILDERS: Final = {
    EventName.CASE_STATUS.value: _case_status,
    EventName.CASE_INVITE.value: _case_user,
    EventName.CASE_JOINED.value: _case_user,
    EventName.MESSAGE_NEW.value: _message_new,
    EventName.CHAT_ON_START.value: _chat_start,
    EventName.CHAT_ON_ACCEPT.value: _chat_accept,
    EventName.CHAT_ON_MESSAGE.value: _chat_message,
    EventName.CHAT_ON_CLOSE.value: _chat_close,
}
