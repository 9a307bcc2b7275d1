"""`serve`: run a `FakeAcquire` in the foreground until interrupted (for the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._fake import DEFAULT_API_KEY, FakeAcquire
from ._faults import Faults
from ._webhooks import WebhookFaults

__all__ = ["announce_webhook", "describe", "serve"]

_LABELS = {
    "join_chat": "join",
    "reject_chat": "reject",
    "close_chat": "close",
    "add_message": "message",
}


def _print(line: str) -> None:
    print(line, flush=True)


def _signed(signed: bool) -> str:
    return "signed" if signed else "unsigned"


def describe(fake: FakeAcquire, *, default_key: bool) -> list[str]:
    """The lines `serve` prints about a started `fake`. The API key is never shown."""
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
    # The URL and whether it is signed; never the secret.
    hooks = [
        f"  webhook: {hook.url} ({', '.join(hook.events)}; {_signed(hook.signed)})"
        for hook in fake.webhooks
    ]
    return [
        f"Fake Acquire chat API on {fake.base_url}",
        *routes,
        f"  cases:   {len(ids)}{span}; the key's agent is {fake.agent_id}",
        f"  api key: {key}",
        f"  faults:  {faults if faults != Faults(seed=faults.seed) else 'none'}",
        *hooks,
        "Press Ctrl-C to stop.",
    ]


def announce_webhook(
    fake: FakeAcquire,
    url: str,
    *,
    secret: str | None = None,
    invite: bool = False,
    faults: WebhookFaults | None = None,
) -> None:
    """Register a webhook on `fake` (started or not) for another process (a bot), then deliver
    `case:status` for every stored case, as if they had just arrived (**assumed**, like
    `add_case`'s), and `user:case-invite` for every open one if
    `invite`. The default faults retry 5 times a second apart, so a bot started a moment
    after the emulator still gets them:

    ```python
    announce_webhook(fake, "http://127.0.0.1:8081/acquire", secret=os.environ["SECRET"])
    ```
    """
    fake.add_webhook(url, secret=secret, faults=faults or _SERVE_FAULTS)
    for case_id in sorted(fake.cases):
        fake.deliver_status(case_id)
    if invite:
        for case_id, case in sorted(fake.cases.items()):
            if case.get("status") != "closed":
                fake.invite(case_id)


# Another process may start after the emulator: retry for a few seconds, not a fraction of one.
_SERVE_FAULTS = WebhookFaults(retries=5, retry_delay=1.0)


async def _run(fake: FakeAcquire, say: Callable[[str], object], default_key: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with fake:
        for line in describe(fake, default_key=default_key):
            say(line)
        await stop.wait()


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    cases: int | Iterable[Mapping[str, Any]] = 10,
    faults: Faults | None = None,
    *,
    api_key: str = DEFAULT_API_KEY,
    announce: Callable[[str], object] | None = None,
    webhook: str | None = None,
    webhook_secret: str | None = None,
    invite: bool = False,
    **options: Any,
) -> None:
    """Run a `FakeAcquire` until Ctrl-C or SIGTERM; blocks the calling thread.

    Prints (through `announce`, default `print`) the base URL, the URL of each endpoint,
    the cases and the faults, but never the API key. Other keyword arguments go to
    `FakeAcquire` (`first_case_id`, `already_joined`, `agent_id`…).

    With `webhook`, the emulator also delivers webhooks there (signed with
    `webhook_secret`), starting with a `case:status` for every case and, with `invite`,
    an invite for every open one (see `announce_webhook`):

    ```python
    serve(port=8080, cases=1000, faults=Faults(seed=1, error_rates={503: 0.05}))
    serve(cases=5, webhook="http://127.0.0.1:8081/acquire", webhook_secret=secret)
    ```
    """
    fake = FakeAcquire(cases, api_key=api_key, faults=faults, host=host, port=port, **options)
    if webhook is not None:
        # Before start: bad arguments fail before serving, and the deliveries wait for it.
        announce_webhook(fake, webhook, secret=webhook_secret, invite=invite)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(fake, announce or _print, api_key == DEFAULT_API_KEY))
