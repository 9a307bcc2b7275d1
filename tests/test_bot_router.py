"""Router: which handlers an event goes to (names, filters, catch-alls, order, merging)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from acquire_async.bot import Router
from acquire_async.webhooks import parse_event


def event(name: str, case_id: str | None = "1684", status: str | None = None) -> Any:
    data: dict[str, Any] = {}
    if case_id is not None:
        data["caseId"] = case_id
    if status is not None:
        data["status"] = status
    import json

    return parse_event(json.dumps({"event": name, "data": data}).encode())


async def first(event: Any, client: Any) -> None:
    pass


async def second(event: Any, client: Any) -> None:
    pass


async def catch_all(event: Any, client: Any) -> None:
    pass


def test_routes_by_name_in_registration_order_with_catch_alls() -> None:
    router = Router()
    router.add(first, "user:case-invite")
    router.add(catch_all)
    router.add(second, "user:case-invite")
    router.add(second, "case:status")

    assert router.fetch(event("user:case-invite")) == [first, catch_all, second]
    assert router.fetch(event("case:status")) == [catch_all, second]
    assert router.fetch(event("x:unknown")) == [catch_all]
    assert len(router) == 4


def test_filters_compare_event_attributes() -> None:
    router = Router()
    router.add(first, "case:status", status="pending")
    router.add(second, "case:status", status="closed", case_id=7)

    assert router.fetch(event("case:status", status="pending")) == [first]
    assert router.fetch(event("case:status", "7", status="closed")) == [second]
    assert router.fetch(event("case:status", "8", status="closed")) == []
    assert router.fetch(event("case:status")) == []  # no status: no match


def test_a_filter_on_a_missing_attribute_never_matches() -> None:
    router = Router()
    router.add(first, None, no_such_attribute=None)
    assert router.fetch(event("case:status")) == []


def test_register_is_a_decorator_returning_the_handler() -> None:
    router = Router()

    @router.register("case:status", status="pending")
    async def on_pending(event: Any, client: Any) -> None:
        pass

    assert router.fetch(event("case:status", status="pending")) == [on_pending]


def test_routers_merge() -> None:
    one, two = Router(), Router()
    one.add(first, "case:status")
    two.add(second)
    merged = Router(one, two)
    assert merged.fetch(event("case:status")) == [first, second]
    one.add(catch_all)  # a later change to a part does not reach the merged router
    assert len(merged) == 2
    with pytest.raises(TypeError, match="Router"):
        Router(object())  # type: ignore[arg-type]


def test_handlers_must_be_async() -> None:
    router = Router()

    def plain(event: Any, client: Any) -> None:
        pass

    with pytest.raises(TypeError, match="async"):
        router.add(plain, "case:status")  # type: ignore[arg-type]

    class AsyncCallable:
        async def __call__(self, event: Any, client: Any) -> None:
            pass

    router.add(AsyncCallable())
    router.add(functools.partial(first))
    assert len(router) == 2


def test_bad_event_names() -> None:
    router = Router()
    with pytest.raises(TypeError, match="event"):
        router.add(first, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event"):
        router.add(first, "")
    with pytest.raises(ValueError, match="event"):
        router.add(first, " case:status")
