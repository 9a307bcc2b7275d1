"""Bulk joins by a fleet of worker processes on many machines: taskiq + Redis Streams.

Install with `pip install 'acquire-async[redis]'`. The shape:

```text
producer ──enqueue──▶ {ns}:stream ──XREADGROUP──▶ worker processes (any number, any host)
                          ▲                        │ join_all(chunk) with one AcquireClient
                          │ transient: next        │ and a RedisThrottle (shared limit
                          │ generation             │ and 429 cool-down)
                          └────────────────────────┤
                                                   ▼
                     {ns}:status / :results / :counts / :dead  ◀── one Lua script
```

- `JoinQueue`: enqueue ids, watch the counts, read results, list and requeue dead
  letters (the producer's and the operator's side).
- `run_workers`: start worker processes (what `acquire-async worker` runs).
- `make_broker`: the taskiq broker with the task, for your own taskiq app.
- `WorkerSettings`, `Result`, `QueueCounts`.

Every id given to `JoinQueue.enqueue` ends with exactly one final status: `joined`,
`already_joined` or `dead` (with its last error), even when a worker is killed with
`kill -9` mid-chunk: a chunk is acknowledged only after its results are recorded, an
unacknowledged one is redone by another worker after `idle_timeout`, and a redo can only
confirm a success, never add a second outcome (`_store`). See `docs/scaling.md`.

Example:
    ```python
    from acquire_async.worker import JoinQueue, WorkerSettings, run_workers

    async with JoinQueue("redis://localhost:6379/0") as queue:
        await queue.enqueue(range(1000, 6000))
    # elsewhere, on any number of machines (ACQUIRE_API_KEY set):
    run_workers(WorkerSettings(redis_url="redis://…", account_id="mycompany"), processes=2)
    ```
"""

from __future__ import annotations

try:
    import redis  # noqa: F401
    import taskiq  # noqa: F401
    import taskiq_redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "acquire_async.worker needs the 'redis' extra: pip install 'acquire-async[redis]'"
    ) from exc

from ._broker import AcquireStreamBroker
from ._run import run_workers
from ._settings import WorkerSettings
from ._store import JoinQueue, QueueCounts, Result
from ._tasks import make_broker

__all__ = [
    "AcquireStreamBroker",
    "JoinQueue",
    "QueueCounts",
    "Result",
    "WorkerSettings",
    "make_broker",
    "run_workers",
]
