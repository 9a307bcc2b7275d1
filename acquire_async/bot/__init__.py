"""Bots: receive Acquire's signed webhooks, join (and greet) the chats they announce.

`Bot` holds an `AcquireClient`, the webhook secret, an auto-join
policy and handlers. Its receiver (`bot.app()`, or `bot.handle` mounted in an existing
`aiohttp.web` app) answers each delivery at once (200, or 401/400/413/415/405/503) and runs
the work afterwards in `concurrency` workers fed by a bounded backlog; a redelivery within
`dedupe_window` runs once. `Bot.submit` is the framework-neutral path (FastAPI,
Starlette) after `acquire_async.webhooks.construct_event`. See `docs/bots.md`.

Example:
    ```python
    import os
    from aiohttp import web
    from acquire_async import AcquireClient
    from acquire_async.bot import Bot

    async def main() -> None:
        async with AcquireClient() as client:
            bot = Bot(client, os.environ["ACQUIRE_WEBHOOK_SECRET"],
                      auto_join=("user:case-invite", "case:status=pending"),
                      greeting="Hello! How can I help?")

            @bot.on("case:status", status="closed")
            async def closed(event, client):
                print("closed", event.case_id)

            runner = web.AppRunner(bot.app(path="/acquire"))
            await runner.setup()
            await web.TCPSite(runner, "0.0.0.0", 8080).start()
            ...  # until asked to stop
            await runner.cleanup()  # stops accepting, drains the work, leaves the client open
    ```
"""

from __future__ import annotations

from ._bot import DEFAULT_AUTO_JOIN, RETRY_AFTER, Bot, BotStats, JoinRule, SubmitResult
from ._dedupe import DEFAULT_DEDUPE_SIZE, Deduper, delivery_key
from ._router import Handler, Router

__all__ = [
    "DEFAULT_AUTO_JOIN",
    "DEFAULT_DEDUPE_SIZE",
    "RETRY_AFTER",
    "Bot",
    "BotStats",
    "Deduper",
    "Handler",
    "JoinRule",
    "Router",
    "SubmitResult",
    "delivery_key",
]
