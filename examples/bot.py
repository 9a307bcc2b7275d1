"""A complete bot: receive Acquire's webhooks, join every chat it is invited to, greet it.

Configuration, from the environment:

    ACQUIRE_API_KEY          the API key (its agent joins and greets)
    ACQUIRE_ACCOUNT_ID       your account id (https://{id}.acquire.io), or instead:
    ACQUIRE_BASE_URL         an API base URL (the emulator: http://127.0.0.1:8081/api/v1)
    ACQUIRE_WEBHOOK_SECRET   the webhook's HMAC key, as entered in Acquire
    ACQUIRE_BOT_HOST         the address to listen on (127.0.0.1: put a TLS proxy in front)
    ACQUIRE_BOT_PORT         the port to listen on (8080; 0 picks a free one); path /acquire
    ACQUIRE_BOT_GREETING     the greeting ("Hello! How can I help?")

Run it with ``python examples/bot.py``; stop it with Ctrl-C or SIGTERM (the work in hand
finishes first). Each thing the bot does is printed as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from aiohttp import web

from acquire_async import AcquireClient
from acquire_async.bot import Bot
from acquire_async.webhooks import WebhookEvent


def show(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


async def main() -> None:
    host = os.environ.get("ACQUIRE_BOT_HOST", "127.0.0.1")
    port = int(os.environ.get("ACQUIRE_BOT_PORT", "8080"))
    greeting = os.environ.get("ACQUIRE_BOT_GREETING", "Hello! How can I help?")
    async with AcquireClient() as client:  # ACQUIRE_API_KEY, ACQUIRE_BASE_URL or _ACCOUNT_ID
        bot = Bot(
            client,
            os.environ["ACQUIRE_WEBHOOK_SECRET"],
            auto_join=("user:case-invite",),
            greeting=greeting,
            on_record=show,
        )

        @bot.on("case:status", status="closed")
        async def closed(event: WebhookEvent, client: AcquireClient) -> None:
            print(json.dumps({"kind": "closed", "case_id": event.case_id}), flush=True)

        # drain_timeout: how long the work in hand may take at shutdown; shutdown_timeout:
        # how long aiohttp waits for requests still arriving (aiohttp's default is 60 s).
        runner = web.AppRunner(
            bot.app(path="/acquire", drain_timeout=10.0),
            handle_signals=False,
            shutdown_timeout=2.0,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            port = runner.addresses[0][1]  # the one bound, when 0 asked for any
            print(json.dumps({"kind": "listening", "port": port}), flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            # Stops accepting (503), lets the work in hand finish, then closes the bot; the
            # client closes after it, when the "async with" ends.
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
