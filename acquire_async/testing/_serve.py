"""``serve``: run a :class:`FakeAcquire` in the foreground until interrupted (for the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._fake import DEFAULT_API_KEY, FakeAcquire
from ._faults import Faults

__all__ = ["serve"]

_LABELS = {
    "join_chat": "join",
    "reject_chat": "reject",
    "close_chat": "close",
    "add_message": "message",
}


def _print(line: str) -> None:
    print(line, flush=True)


def describe(fake: FakeAcquire, *, default_key: bool) -> list[str]:
    """The lines ``serve`` prints about a started ``fake``. The API key is never shown."""
    ids = sorted(fake.cases)
    span = f" (ids {ids[0]}-{ids[-1]})" if ids else ""
    key = (
        "the default test key (acquire_async.testing.DEFAULT_API_KEY)"
        if default_key
        else "the key given (not shown)"
    )
    faults = fake.faults
    methods: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for (method, path), operation in fake.routes.items():
        methods.setdefault(path, []).append(method)
        names[path] = operation
    routes = [
        f"  {_LABELS.get(names[path], names[path]) + ':':<9}{' or '.join(verbs)} "
        f"{fake.base_url}{path}"
        for path, verbs in methods.items()
    ]
    return [
        f"Fake Acquire chat API on {fake.base_url}",
        *routes,
        f"  cases:   {len(ids)}{span}; the key's agent is {fake.agent_id}",
        f"  api key: {key}",
        f"  faults:  {faults if faults != Faults(seed=faults.seed) else 'none'}",
        "Press Ctrl-C to stop.",
    ]


async def _run(fake: FakeAcquire, announce: Callable[[str], object], default_key: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with fake:
        for line in describe(fake, default_key=default_key):
            announce(line)
        await stop.wait()


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    cases: int | Iterable[Mapping[str, Any]] = 10,
    faults: Faults | None = None,
    *,
    api_key: str = DEFAULT_API_KEY,
    announce: Callable[[str], object] | None = None,
    **options: Any,
) -> None:
    """Run a :class:`FakeAcquire` until Ctrl-C or SIGTERM; blocks the calling thread.

    Prints (through ``announce``, default ``print``) the base URL, the URL of each endpoint,
    the cases and the faults, but never the API key. Other keyword arguments go to
    :class:`FakeAcquire` (``first_case_id``, ``already_joined``, ``agent_id``…)::

        serve(port=8080, cases=1000, faults=Faults(seed=1, error_rates={503: 0.05}))
    """
    fake = FakeAcquire(cases, api_key=api_key, faults=faults, host=host, port=port, **options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(fake, announce or _print, api_key == DEFAULT_API_KEY))
