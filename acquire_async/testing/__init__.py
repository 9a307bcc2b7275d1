"""Test against a fake Acquire: an in-process emulator of the chat API, with faults.

`FakeAcquire` serves the join, reject, close and add-message endpoints under
`{base_url}/crm/messenger/chat/` on a real `127.0.0.1` socket with `aiohttp.web`: one
store of realistic cases, Acquire's envelopes and error codes, a log of every request, and
`Faults` (latency, 5xx, 429, dropped and truncated connections, malformed and slow
bodies) on every endpoint, deterministic under a seed:

```python
from acquire_async import AcquireClient, AlreadyJoinedError
from acquire_async.testing import FakeAcquire, Faults

async def test_retry_after_a_dropped_answer() -> None:
    async with FakeAcquire(cases=5, faults=Faults(sequence=["drop_after_read"])) as fake:
        async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
            case = await client.join_chat(1000)  # retried: the first answer was lost
        assert fake.is_joined(1000)
        assert [r.fault for r in fake.requests] == ["drop_after_read", None]
```

`MockTransport` answers the client's requests from a function, without a socket, for
unit tests: `AcquireClient(..., transport=MockTransport(handler))`.

`FakeAcquire.add_webhook` makes it play Acquire's sender too: it POSTs signed
`case:status` events when a case's status changes and `user:case-invite` on
`FakeAcquire.invite`, with `WebhookFaults` (duplicates, reordering, retries):

```python
hook = fake.add_webhook("http://127.0.0.1:8081/", secret="s3cret")
fake.invite(1000)                        # the bot hears of case 1000
await fake.webhooks_idle()
assert fake.deliveries[0].delivered      # answered 200
```

`FakeAcquireThread` runs a `FakeAcquire` on a thread and event loop of its own, for sync
tests and sync clients (FastAPI's `TestClient`, `requests`):

```python
with FakeAcquireThread(cases=3) as fake:
    os.environ.update(fake.env)  # ACQUIRE_BASE_URL, ACQUIRE_API_KEY for AcquireClient()
    ...
    assert fake.is_joined(1000)
```

With pytest, `pytest_plugins = ["acquire_async.testing.pytest_plugin"]` gives the
`fake_acquire` and `acquire_client` fixtures (async tests) and `fake_acquire_thread` (sync
tests). `serve` runs the emulator in the foreground, for manual tests.
"""

from __future__ import annotations

from ._cases import make_waiting_case
from ._fake import (
    DEFAULT_AGENT_ID,
    DEFAULT_AGENT_NAME,
    DEFAULT_API_KEY,
    FakeAcquire,
    RecordedRequest,
)
from ._faults import FAULT_NAMES, FaultName, Faults, ScriptItem
from ._mock import MockRequest, MockResponse, MockTransport
from ._serve import serve
from ._thread import FakeAcquireThread
from ._webhooks import Delivery, Webhook, WebhookFaults

__all__ = [
    "DEFAULT_AGENT_ID",
    "DEFAULT_AGENT_NAME",
    "DEFAULT_API_KEY",
    "FAULT_NAMES",
    "Delivery",
    "FakeAcquire",
    "FakeAcquireThread",
    "FaultName",
    "Faults",
    "MockRequest",
    "MockResponse",
    "MockTransport",
    "RecordedRequest",
    "ScriptItem",
    "Webhook",
    "WebhookFaults",
    "make_waiting_case",
    "serve",
]
