"""What a worker fleet is configured with, checked once, and carried to worker processes."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote

import msgspec

from acquire_async._checks import check_count, check_rate_limit
from acquire_async._config import check_seconds

__all__ = ["SETTINGS_ENV", "WorkerSettings", "check_namespace", "redact_url"]

# Worker processes are started by taskiq's process manager, which imports the broker factory
# by name: the settings travel to them in this environment variable, as JSON. The API key
# never does: it stays in ACQUIRE_API_KEY, which the processes inherit.
SETTINGS_ENV = "ACQUIRE_WORKER_SETTINGS"


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the workers of one queue join: where the queue is, which account, how fast.

    - `redis_url`: the Redis that holds the queue, the results and the shared throttle.
    - `namespace`: prefix of every key of this queue (`{acquire}:stream` …), so several
      queues (or accounts) can share one Redis.
    - `account_id` / `base_url`: as for `AcquireClient`; the API key
      comes from `ACQUIRE_API_KEY` in each worker's environment, never from here.
    - `concurrency`: joins in flight at once per worker process.
    - `rate_limit` / `burst`: the account-wide limit in requests per second, shared by every
      process on every machine through `RedisThrottle`
      (`None`: no limit, but a 429's `Retry-After` still pauses every worker).
    - `max_generations`: how many times an id that failed transiently (a connection error, a
      5xx, a 429 after the client's own retries) is put back on the queue before it is
      dead-lettered with its last error. Permanent failures (not found, invalid) die at once.
    - `idle_timeout`: seconds after which a chunk that a worker read but did not acknowledge
      (it was killed) is reclaimed by another worker. Keep it above a chunk's worst-case run
      time: a chunk still running when it expires is joined twice, which is safe (a join may
      repeat) but wasted work.
    - `shutdown_grace`: on SIGTERM, seconds a chunk in hand may take to finish; past it
      (the API or Redis is down, say) it is stopped and goes back to the queue unfinished,
      so a worker always exits.
    - `chunks_per_process`: chunks a process works on at once, still with at most
      `concurrency` joins in flight: new joins start while a chunk's last ones wait out a
      retry's back-off (with 2, a test of 5,000 ids under faults took 29 s; with 4, 20 s).

    Example:
        ```python
        settings = WorkerSettings(redis_url="redis://localhost:6379/0", account_id="mycompany",
                                  rate_limit=50, concurrency=32)
        ```
    """

    redis_url: str
    namespace: str = "acquire"
    account_id: str | None = None
    base_url: str | None = None
    concurrency: int = 32
    rate_limit: float | None = None
    burst: int = 1
    max_generations: int = 5
    idle_timeout: float = 600.0
    chunks_per_process: int = 4
    shutdown_grace: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.redis_url, str):
            raise TypeError(f"redis_url must be a str, not {type(self.redis_url).__name__}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        check_namespace(self.namespace)
        for name in ("account_id", "base_url"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, not {type(value).__name__}")
        if self.account_id is None and self.base_url is None:
            raise ValueError("give account_id or base_url")
        check_count("concurrency", self.concurrency)
        check_count("burst", self.burst)
        check_count("max_generations", self.max_generations)
        check_count("chunks_per_process", self.chunks_per_process)
        for name in ("idle_timeout", "shutdown_grace"):
            if check_seconds(name, getattr(self, name)) is None:
                raise TypeError(f"{name} must be a number of seconds, not None")
        check_rate_limit(self.rate_limit)

    def __repr__(self) -> str:
        # A Redis password is a secret: never in a repr, a log or an error.
        fields = ", ".join(
            f"{name}={(redact_url(value) if name == 'redis_url' else value)!r}"
            for name, value in ((n, getattr(self, n)) for n in self.__struct_fields__)
        )
        return f"WorkerSettings({fields})"

    def to_env(self) -> dict[str, str]:
        """The environment entry that carries these settings to worker processes."""
        return {SETTINGS_ENV: msgspec.json.encode(self).decode()}

    @classmethod
    def from_env(cls, environ: Any = None) -> WorkerSettings:
        """The settings a worker process was started with (see `to_env`)."""
        raw = (os.environ if environ is None else environ).get(SETTINGS_ENV)
        if not raw:
            raise RuntimeError(
                f"{SETTINGS_ENV} is not set: start workers with `acquire-async worker` "
                "or acquire_async.worker.run_workers()"
            )
        return msgspec.json.decode(raw, type=cls)


def check_namespace(namespace: object) -> str:
    """`namespace` if it can prefix a queue's keys: a non-empty str without braces (they
    would break the `{namespace}` hash tag), spaces or line breaks.

    Examples:
        >>> check_namespace("acquire")
        'acquire'
    """
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    if not namespace or any(c in namespace for c in "{}\r\n "):
        raise ValueError(
            "namespace must be non-empty, without braces, spaces or line breaks "
            f"(got {namespace!r})"
        )
    return namespace


def redact_url(url: str) -> str:
    """`url` with its credentials replaced by `***`, for logs and errors: the user and
    password before `@`, and a `password=` in the query (redis-py takes it there too; for
    a `unix://` socket it is the only place).

    Examples:
        >>> redact_url("redis://:hunter2@db:6379/0")
        'redis://***@db:6379/0'
        >>> redact_url("unix:///run/redis.sock?db=0&password=hunter2")
        'unix:///run/redis.sock?db=0&password=***'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, mark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    if mark:
        fields = []
        for field in query.split("&"):
            name, eq, _ = field.partition("=")
            secret = unquote(name).strip().lower() in ("password", "username", "user")
            fields.append(f"{name}=***" if eq and secret else field)
        query = "&".join(fields)
    return f"{scheme}://{authority}{slash}{path}{mark}{query}"
