"""`Router`: which handlers an event goes to, in the manner of gidgethub's router.

A route is an event name (or `None`: every event) plus filters: attribute values the event
must have (`status="pending"` compares `event.status`). The router only matches; it runs
nothing, so the bot decides how handlers are awaited, isolated and logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from acquire_async._client import AcquireClient
    from acquire_async.webhooks import WebhookEvent

__all__ = ["Handler", "Router"]

Handler = Callable[["WebhookEvent", "AcquireClient"], Awaitable[None]]
"""`async def handler(event, client) -> None`: what `Router.register` accepts."""

H = TypeVar("H", bound=Handler)

_MISSING = object()


class Router:
    """Handlers by event name and attribute filters, in registration order.

    `Router(*others)` starts with the routes of other routers (build handlers in several
    modules, merge them in one bot). A handler is `async def handler(event, client)`.

    Example:
        ```python
        router = Router()

        @router.register("case:status", status="pending")
        async def on_pending(event, client):
            await client.join_chat(event.case_id)

        bot = Bot(client, secret, router=router)
        ```
    """

    def __init__(self, *others: Router) -> None:
        self._routes: list[tuple[str | None, tuple[tuple[str, Any], ...], Handler]] = []
        for other in others:
            if not isinstance(other, Router):
                raise TypeError(f"routers must be Router objects, not {type(other).__name__}")
            self._routes.extend(other._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"<Router {len(self._routes)} route(s)>"

    def add(self, handler: Handler, event: str | None = None, **filters: Any) -> None:
        """Route `event` (`None`: every event) to `handler` when every filter matches.

        `filters` name attributes of the event (`status`, `case_id`…); an event without
        the attribute does not match. Raises `TypeError` for a handler that is not an
        `async def` or an event name that is not a `str`, `ValueError` for `""`.

        Example:
            ```python
            router.add(on_invite, "user:case-invite")
            ```
        """
        if event is not None:
            if not isinstance(event, str):
                raise TypeError(f"event must be a str or None, not {type(event).__name__}")
            if not event or event != event.strip():
                raise ValueError(f"event must be a non-empty name without spaces (got {event!r})")
        if not _is_async(handler):
            raise TypeError(
                "handler must be an async function: async def handler(event, client) -> None"
            )
        self._routes.append((event, tuple(filters.items()), handler))

    def register(self, event: str | None = None, **filters: Any) -> Callable[[H], H]:
        """Decorator form of `add`; returns the handler unchanged.

        Example:
            ```python
            @router.register("user:case-invite")
            async def on_invite(event, client): ...
            ```
        """

        def decorator(handler: H) -> H:
            self.add(handler, event, **filters)
            return handler

        return decorator

    def fetch(self, event: WebhookEvent) -> list[Handler]:
        """The handlers `event` goes to, in registration order (catch-alls included).

        Example:
            ```python
            for handler in router.fetch(event):
                await handler(event, client)
            ```
        """
        name = event.event
        return [
            handler
            for route_event, filters, handler in self._routes
            if (route_event is None or route_event == name)
            and all(getattr(event, key, _MISSING) == value for key, value in filters)
        ]


def _is_async(handler: object) -> bool:
    # iscoroutinefunction sees through functools.partial; an object with an async __call__
    # counts too.
    return callable(handler) and (
        inspect.iscoroutinefunction(handler)
        or inspect.iscoroutinefunction(getattr(handler, "__call__", None))  # noqa: B004
    )
