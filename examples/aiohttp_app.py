"""An aiohttp.web app that joins chats for its callers: `POST /cases/{id}/join`.

Configuration, from the environment:

    ACQUIRE_API_KEY      the API key (its agent joins)
    ACQUIRE_ACCOUNT_ID   your account id (https://{id}.acquire.io), or instead:
    ACQUIRE_BASE_URL     an API base URL (the emulator: http://127.0.0.1:8081/api/v1)
    APP_HOST, APP_PORT   where to listen (127.0.0.1, 8080; port 0 picks a free one)

Run it with `python examples/aiohttp_app.py`, then
`curl -X POST http://127.0.0.1:8080/cases/1684/join`. Ctrl-C or SIGTERM stops it; the
client closes with the app.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from acquire_async import AcquireClient
from acquire_async.errors import AlreadyJoinedError, APIError, APITimeoutError, NotFoundError

CLIENT = web.AppKey("acquire_client", AcquireClient)

log = logging.getLogger(__name__)


async def acquire_client(app: web.Application) -> AsyncIterator[None]:
    """One client for the whole app: opened at startup, closed at cleanup."""
    async with AcquireClient() as client:  # ACQUIRE_API_KEY, ACQUIRE_BASE_URL or _ACCOUNT_ID
        app[CLIENT] = client
        yield


async def join(request: web.Request) -> web.Response:
    """Join the chat and answer with the case, in Acquire's JSON shape."""
    try:
        case = await request.app[CLIENT].join_chat(int(request.match_info["id"]))
    except ValueError as exc:  # not a case id (0, beyond 64 bits, 5,000 digits): nothing sent
        return web.json_response({"error": str(exc)}, status=400)
    except NotFoundError:
        return web.json_response({"error": "no such case"}, status=404)
    except AlreadyJoinedError:
        return web.json_response({"error": "already joined"}, status=409)
    except APITimeoutError:
        return web.json_response({"error": "Acquire did not answer in time"}, status=504)
    except APIError as exc:  # details to the log (never the API key): callers get a fixed text
        log.warning("join %s failed: %s", request.match_info["id"], exc)
        return web.json_response({"error": "Acquire failed"}, status=502)
    return web.json_response(case.to_dict())


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(acquire_client)
    app.router.add_post(r"/cases/{id:\d+}/join", join)
    return app


if __name__ == "__main__":
    host = os.environ.get("APP_HOST", "127.0.0.1")
    port = int(os.environ.get("APP_PORT", "8080"))
    web.run_app(create_app(), host=host, port=port)
