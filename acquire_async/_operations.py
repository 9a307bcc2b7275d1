"""The Acquire operations the SDK makes, as plain data: one `Operation` per endpoint.

An operation says where it goes (`path`), how (`methods`; the first is the default), how its
answer is read (`decode`: the codec's typed decoder with this operation's error codes), and
whether a request that may have reached the server can be sent again (`retry_safe`). The
engine runs any of them the same way; the client's methods build the body with the codec and
hand both to the engine. Adding an endpoint is one spec here, one client method, one emulator
route, and tests.

Retry safety, decided from what each operation does:

- `join_chat`: safe. Joining twice leaves the agent in the chat once; a second join answers
  `CHAT_ALREADY_JOINED`, which the caller reads as success.
- `reject_chat`: safe. Rejecting again leaves the case rejected by this agent.
- `close_chat`: safe. A closed case stays closed; a repeated close may answer an error for
  the case being closed already (Acquire documents none): the case is closed either way.
- `add_message`: **not** safe. A second request posts the message a second time, so after a
  failure that may have reached the server the SDK never sends it again: the error surfaces
  with `request_sent=True`. A request that provably never left (refused, a connect timeout, a
  request that could not be written) is still retried, and so are answers in which the server
  says it did not act (408, 429, 503).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from . import _protocol
from ._protocol import Codes
from .models import Case, CloseResult, Message

__all__ = ["ADD_MESSAGE", "CLOSE_CHAT", "JOIN_CHAT", "OPERATIONS", "REJECT_CHAT", "Operation"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """The codec's decoders: `decode_case`, `decode_message`, `decode_close`."""

    def __call__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        reason: str | None = ...,
        case_id: int | None = ...,
        now: float | None = ...,
        codes: Codes = ...,
    ) -> T_co: ...


@dataclass(frozen=True, slots=True, eq=False)
class Operation(Generic[T]):
    """One Acquire endpoint, as data.

    - `name`: the SDK's name for it (`"join_chat"`), carried by hooks, logs and errors.
    - `path`: below the API base URL (`"/crm/messenger/chat/join"`).
    - `methods`: the HTTP methods it may use, the default first. With two, a `405` to one
      switches the client to the other, once, for its lifetime.
    - `body`: the codec's builder of its request body (`join_body`…); the client calls
      it with the operation's own arguments.
    - `decode`: the codec's decoder of its answer (`decode_case`…), which returns the
      result or raises the matching error.
    - `codes`: Acquire's error codes and the error class each means for this operation
      (`CHAT_ALREADY_JOINED` is `AlreadyJoinedError` for a join alone).
    - `retry_safe`: whether a request that may have reached the server may be sent again.

    Example:
        ```python
        JOIN_CHAT = Operation("join_chat", JOIN_PATH, ("POST", "GET"), join_body,
                              decode_case, JOIN_CODES, retry_safe=True)
        ```
    """

    name: str
    path: str
    methods: tuple[str, ...]
    body: Callable[..., bytes]
    decode: Decoder[T]
    codes: Codes
    retry_safe: bool


JOIN_CHAT: Operation[Case] = Operation(
    "join_chat",
    _protocol.JOIN_PATH,
    ("POST", "GET"),
    _protocol.join_body,
    _protocol.decode_case,
    _protocol.JOIN_CODES,
    retry_safe=True,
)
REJECT_CHAT: Operation[Case] = Operation(
    "reject_chat",
    _protocol.REJECT_PATH,
    ("POST",),
    _protocol.reject_body,
    _protocol.decode_case,
    _protocol.BASE_CODES,
    retry_safe=True,
)
CLOSE_CHAT: Operation[CloseResult] = Operation(
    "close_chat",
    _protocol.CLOSE_PATH,
    ("POST",),
    _protocol.close_body,
    _protocol.decode_close,
    _protocol.BASE_CODES,
    retry_safe=True,
)
ADD_MESSAGE: Operation[Message] = Operation(
    "add_message",
    _protocol.ADD_MESSAGE_PATH,
    ("POST",),
    _protocol.add_message_body,
    _protocol.decode_message,
    _protocol.BASE_CODES,
    retry_safe=False,
)
OPERATIONS: tuple[Operation[Any], ...] = (JOIN_CHAT, REJECT_CHAT, CLOSE_CHAT, ADD_MESSAGE)
