"""Every exception the SDK raises on purpose.

The tree:

```text
AcquireError
├── APIError                  a call to the API failed: .operation .method .url .attempts
│   │                         .request_sent .request_id
│   ├── APIConnectionError    connect refused/reset, DNS, a dropped or truncated response
│   │   ├── APITimeoutError   connect, read, pool-wait or total timeout of one attempt
│   │   └── APITLSError       TLS handshake / certificate failure (never retried)
│   ├── APIStatusError        .status .code .message .body (≤ 1 KiB) .retry_after
│   │   ├── BadRequestError 400
│   │   ├── AuthenticationError 401
│   │   ├── PermissionDeniedError 403
│   │   ├── NotFoundError 404 (also code ERROR_RECORD_NOT_FOUND, which Acquire sends with 400)
│   │   ├── ConflictError 409
│   │   │   └── AlreadyJoinedError   code CHAT_ALREADY_JOINED (or ERROR_DUPLICATE_RECORD_FOUND)
│   │   │                            on a join, whatever the status: Acquire sends it with 200
│   │   ├── UnprocessableEntityError 422
│   │   ├── RateLimitError 429     .retry_after (seconds, or None)
│   │   └── InternalServerError ≥ 500
│   └── ResponseDecodeError   not JSON, wrong shape, too large, too deep; .path .body
├── InvalidCaseIdError        (also a ValueError) a join_many item that is not a case id:
│                             reported in its JoinOutcome, never sent
├── ThrottleUnavailableError  a shared throttle (RedisThrottle) could not reach its store in
│                             time: the attempt was not sent; transient
└── WebhookError              a webhook delivery that cannot be trusted or read (not a call)
    │                         .http_status: what a receiver answers (400)
    ├── InvalidSignatureError     x-acquire-signature missing, malformed or wrong (401)
    └── InvalidPayloadError       not JSON, not an object, no event, a wrong type (400)
        ├── PayloadTooLargeError      the body exceeds the receiver's cap (413)
        └── UnsupportedContentTypeError  not application/json (415)
```

`APIError` is every failure of a call; what sits beside it is not a call (an invalid item of
`join_many`, a shared throttle that cannot reach its store, a webhook delivery).
Misuse is not an `AcquireError`: a bad argument raises `TypeError`/`ValueError` before
any I/O, and a call on a closed client raises `RuntimeError`.

Every error carries `attempts`: how many HTTP attempts the call made before giving up (0 for
what was never sent). The engine fills in an `APIError`'s request context in one place:
`operation` (`"join_chat"`…), `method`, `url`, `attempts`, `request_sent` and
`request_id`.

Errors never hold the API key: not in `str`, `repr`, `.args`, their attributes, nor in the
`__cause__`/`__context__` chain (aiohttp's own exceptions are never chained, since some of
them print the request headers). They pickle and unpickle intact, so they cross process pools.

Example:
    ```python
    try:
        case = await client.join_chat(1684)
    except AlreadyJoinedError:
        ...  # the key's agent is already in the chat: usually fine
    except APIStatusError as exc:
        log.warning("join failed: %s (request id %s)", exc, exc.request_id)
    ```
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITLSError",
    "APITimeoutError",
    "AcquireError",
    "AlreadyJoinedError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "InvalidCaseIdError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ThrottleUnavailableError",
    "InvalidPayloadError",
    "InvalidSignatureError",
    "PayloadTooLargeError",
    "UnprocessableEntityError",
    "UnsupportedContentTypeError",
    "WebhookError",
]

BODY_EXCERPT_LIMIT = 1024


def _restore(cls: type[AcquireError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class AcquireError(Exception):
    """Base of every error the SDK raises about a call to the Acquire API.

    `attempts` counts the HTTP attempts the call made (1 when nothing was retried).
    """

    attempts: int

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts

    @property
    def message(self) -> str:
        """The message the error was built with (`APIStatusError`'s `str()` adds the
        status, code and request to it)."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat Exception's default pickling (which replays
        # ``cls(*args)``); rebuild from the instance dict instead.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class APIError(AcquireError):
    """A call to the Acquire API failed: the base of connection, status and decode errors.

    - `operation`: the SDK operation (`"join_chat"`, `"add_message"`…), `""` if unknown.
    - `method`, `url`: the last request of the call (the URL holds no secret).
    - `request_sent`: `False` only when no attempt of the call can have reached the server
      (refused, a connect timeout, a request that could not be written); then nothing happened.
      `True` means it may have: a join may have happened, a message may have been posted.
    - `request_id`: the server's request id header, when a response carried one.

    Example:
        ```python
        try:
            await client.add_message(1684, "Hello!")
        except APIError as exc:
            if exc.request_sent:
                ...  # maybe posted: look before sending again
        ```
    """

    operation: str
    method: str
    url: str
    request_sent: bool
    request_id: str | None

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_sent: bool = True,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.operation = ""
        self.method = method
        self.url = url
        self.request_sent = request_sent
        self.request_id = request_id


class APIConnectionError(APIError):
    """The request did not get a complete HTTP response: refused, reset, DNS, dropped body.

    `request_sent` is `True` when the server may have read the request before the
    connection failed (the operation may have happened).
    """


class APITimeoutError(APIConnectionError):
    """An attempt ran out of time (connect, read, pool wait or its total budget)."""


class APITLSError(APIConnectionError):
    """The TLS handshake or certificate check failed. Never retried: it will not heal."""


class APIStatusError(APIError):
    """The server answered with an error: a 3xx/4xx/5xx status, or an `{"error": …}` body.

    Attributes:
        status: the HTTP status (`200` when Acquire sent an error envelope with 200).
        code: Acquire's error code (`"ERROR_INVALID_INPUT"`…), or `None`.
        message: Acquire's message, or a description of the status.
        request_id: the server's request id header, when it sent one.
        method: the request that failed (the URL holds no secret).
        url: See `method`.
        body: the first 1 KiB of the response body, for diagnosis.
        retry_after: the server's `Retry-After` in seconds (any status), or `None`.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        method: str = "",
        url: str = "",
        body: bytes = b"",
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, method=method, url=url, request_id=request_id, attempts=attempts)
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.body = body[:BODY_EXCERPT_LIMIT]

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        where = f" ({self.method} {self.url})" if self.url else ""
        return f"HTTP {self.status}{code}: {self.message}{where}"

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status}, code={self.code!r}, message={self.message!r})"


class BadRequestError(APIStatusError):
    """400: the server refused the input (`ERROR_INVALID_INPUT`)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked (`ERROR_UNAUTHORIZED`)."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (`ERROR_UNAUTHORIZED_ACCESS`)."""


class NotFoundError(APIStatusError):
    """404, or `ERROR_RECORD_NOT_FOUND` (which Acquire sends with 400): no such case."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the case's state."""


class AlreadyJoinedError(ConflictError):
    """The key's agent is already in this chat (`CHAT_ALREADY_JOINED`), whatever the status.

    Acquire documents it under HTTP 200. `attempts > 1` says the call retried: when an
    earlier attempt failed after its request was sent (a dropped connection, a timeout), that
    attempt probably joined and its answer was lost. A hint, not proof: a retried 503 changed
    nothing.
    """


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests. `retry_after` is the server's wait in seconds, or `None`."""


class InternalServerError(APIStatusError):
    """A 5xx status, or `ERROR_SERVER_ERROR`."""


class InvalidCaseIdError(AcquireError, ValueError):
    """A `join_many` item that is not a positive 64-bit int; it was sent nowhere.

    `join_chat` raises plain `TypeError`/`ValueError` for a bad id instead: there it is
    a bug in the call; in a stream of ids it is data, reported in the item's outcome.
    """


class ResponseDecodeError(APIError):
    """The response could not be read as the expected JSON.

    Not JSON, the wrong shape, too large, nested too deep, invalid UTF-8, or an id beyond
    64 bits. `path` is msgspec's path of the bad field (`$.data.users[0].id`) when known;
    `body` the first 1 KiB of what was received; `status` the HTTP status.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        path: str | None = None,
        body: bytes = b"",
        method: str = "",
        url: str = "",
        attempts: int = 1,
    ) -> None:
        super().__init__(message, method=method, url=url, attempts=attempts)
        self.status = status
        self.path = path
        self.body = body[:BODY_EXCERPT_LIMIT]


class ThrottleUnavailableError(AcquireError):
    """A shared throttle could not reach its store in time; the attempt was not sent.

    `RedisThrottle` fails closed: while Redis is unreachable
    it holds every request back, and once Redis has been unreachable for its
    `unavailable_timeout` the waiting calls end with this error (`attempts`: the attempts
    the call sent before, usually 0). It is transient: retry the call (a queue worker
    re-queues the case) once Redis is back. It is also raised at once when Redis answers the
    throttle's script with an error (a wrong key type, a denied command). The message names
    Redis by `host:port`, never with its password.

    Example:
        ```python
        try:
            await client.join_chat(1684)
        except ThrottleUnavailableError:
            ...  # Redis is down: try this case again later
        ```
    """

    def __init__(self, message: str, *, attempts: int = 0) -> None:
        super().__init__(message, attempts=attempts)


class WebhookError(AcquireError):
    """A webhook delivery that cannot be trusted or read; raised by
    `acquire_async.webhooks` and answered by the bot's receiver.

    `http_status` is what a receiver should answer the sender: 400 here, 401 for a bad
    signature, 413 for a body over the cap, 415 for a wrong content type. The message says
    what is wrong in a few words; it never holds the secret, the expected signature or the
    body. `attempts` is 0: no call to the API was made.

    Example:
        ```python
        try:
            event = construct_event(body, request.headers.get(SIGNATURE_HEADER), secret)
        except WebhookError as exc:
            return Response(status_code=exc.http_status)
        ```
    """

    http_status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message, attempts=0)


class InvalidSignatureError(WebhookError):
    """The `x-acquire-signature` header is missing, malformed or does not match (401).

    Example:
        ```python
        try:
            verify_signature(body, None, secret)
        except InvalidSignatureError:
            ...  # answer 401
        ```
    """

    http_status = 401


class InvalidPayloadError(WebhookError):
    """The body is not a webhook event: not JSON, not an object, no `event` name, or a
    field of the wrong type (400). `path` names the field when one is at fault.

    Example:
        ```python
        try:
            parse_event(b"not json")
        except InvalidPayloadError as exc:
            print(exc.http_status)  # 400
        ```
    """

    path: str | None

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PayloadTooLargeError(InvalidPayloadError):
    """The body is larger than the receiver accepts (413); it was not parsed.

    Example:
        ```python
        try:
            parse_event(body, max_body=1024)
        except PayloadTooLargeError:
            ...  # answer 413
        ```
    """

    http_status = 413


class UnsupportedContentTypeError(InvalidPayloadError):
    """The delivery's `Content-Type` is not JSON (415). Acquire's webhook must be set to
    the JSON format: no payload or signature rule is published for XML or form bodies.

    Example:
        ```python
        try:
            parse_event(body, content_type="application/xml")
        except UnsupportedContentTypeError:
            ...  # answer 415
        ```
    """

    http_status = 415
