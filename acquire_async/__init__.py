"""acquire_async: an asyncio SDK for the Acquire customer-messaging API.

Join live chats ("cases") one at a time or by the thousand:

```python
import asyncio
from acquire_async import AcquireClient

async def main() -> None:
    async with AcquireClient("mycompany", "my-api-key") as client:
        case = await client.join_chat(1684)
        print(case.status, case.plain_description)

        async with client.join_many(range(1000, 2000), concurrency=64) as outcomes:
            async for outcome in outcomes:
                print(outcome.case_id, "ok" if outcome.ok else outcome.error)

asyncio.run(main())
```
"""

from ._bulk import JoinOutcome, JoinStream
from ._client import AcquireClient
from ._config import Timeouts
from ._engine import Response
from ._logging import setup_from_env as _setup_logging
from ._protocol import RawResponse
from ._retry import RetryPolicy
from ._stats import ClientStats, RequestEvent, ResponseEvent, RetryEvent
from ._throttle import LocalThrottle, Throttle
from ._transport import AiohttpTransport, Transport
from ._version import __version__
from .errors import (
    AcquireError,
    AlreadyJoinedError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    InvalidCaseIdError,
    InvalidPayloadError,
    InvalidSignatureError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    ThrottleUnavailableError,
    UnprocessableEntityError,
    UnsupportedContentTypeError,
    WebhookError,
)
from .models import (
    Agent,
    Case,
    CaseStatus,
    CaseUser,
    CaseUserStatus,
    Channel,
    ClosedCase,
    CloseResult,
    Contact,
    Message,
    MessageType,
    ParticipantType,
    UnknownUser,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITLSError",
    "APITimeoutError",
    "AcquireClient",
    "AcquireError",
    "AiohttpTransport",
    "Agent",
    "AlreadyJoinedError",
    "AuthenticationError",
    "BadRequestError",
    "Case",
    "CaseStatus",
    "CaseUser",
    "CaseUserStatus",
    "Channel",
    "ClientStats",
    "CloseResult",
    "ClosedCase",
    "ConflictError",
    "Contact",
    "InternalServerError",
    "InvalidCaseIdError",
    "InvalidPayloadError",
    "InvalidSignatureError",
    "JoinOutcome",
    "JoinStream",
    "LocalThrottle",
    "Message",
    "MessageType",
    "NotFoundError",
    "PayloadTooLargeError",
    "ParticipantType",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestEvent",
    "ResponseDecodeError",
    "ResponseEvent",
    "RetryEvent",
    "RetryPolicy",
    "Throttle",
    "ThrottleUnavailableError",
    "RawResponse",
    "Response",
    "Timeouts",
    "Transport",
    "UnknownUser",
    "UnprocessableEntityError",
    "UnsupportedContentTypeError",
    "WebhookError",
    "__version__",
]

_setup_logging()  # ACQUIRE_LOG=debug|info: the SDK's logging without code
