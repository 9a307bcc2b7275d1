"""``join_many``: one outcome per item, laziness, bounded memory, cancellation and cleanup."""

from __future__ import annotations

import asyncio
import enum
import gc
import sys
import tracemalloc
from collections import UserString
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from faultserver import FaultServer, sleep_then, status
from stubs import StubTransport, answer

import acquire_async as aa
from acquire_async.testing import MockResponse

FAST = aa.RetryPolicy(backoff_base=0.001, backoff_cap=0.01)
KEY = "test-key-0123456789"
# The stub transport behind each `client` fixture, to script its answers.
STUBS: dict[aa.AcquireClient, StubTransport] = {}


def acquired(client: aa.AcquireClient) -> int:
    session = client.transport.session  # type: ignore[attr-defined]
    return 0 if session is None else len(session.connector._acquired)  # type: ignore[union-attr]


def stub_joins(client: aa.AcquireClient, delay: float = 0.0) -> list[int]:
    """Replace the HTTP join with an in-memory one; returns the ids it was asked for."""
    stub = STUBS[client]

    async def join(case_id: int) -> MockResponse:
        await asyncio.sleep(delay)
        return answer(case_id)

    stub.respond = join
    return stub.seen


@pytest.fixture
async def client() -> AsyncIterator[aa.AcquireClient]:
    stub = StubTransport()
    async with aa.AcquireClient(
        api_key=KEY, base_url="http://127.0.0.1:9/api/v1", transport=stub
    ) as client:
        STUBS[client] = stub
        yield client
    del STUBS[client]


async def test_one_outcome_per_item_in_every_situation() -> None:
    mixed: list[Any] = [1, 2, 2, -1, "abc", None, 3.0, True, 0, 2**63, 503, 404, 1]
    async with FaultServer() as server:
        server.default = _by_case({503: status(503), 404: status(404)})
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url, retry=FAST) as client:
            outcomes = await client.join_all(mixed, concurrency=4)
    assert sorted(map(repr, (o.case_id for o in outcomes))) == sorted(map(repr, mixed))
    by_id: dict[str, list[aa.JoinOutcome]] = {}
    for outcome in outcomes:
        by_id.setdefault(repr(outcome.case_id), []).append(outcome)
    for bad in ("-1", "'abc'", "None", "3.0", "True", "0", repr(2**63)):
        [outcome] = by_id[bad]
        assert isinstance(outcome.error, aa.InvalidCaseIdError)
        assert isinstance(outcome.error, ValueError)
        assert outcome.attempts == 0 and not outcome.ok
    assert isinstance(by_id["503"][0].error, aa.InternalServerError)
    assert by_id["503"][0].attempts == FAST.max_attempts
    assert isinstance(by_id["404"][0].error, aa.NotFoundError)
    # Duplicates: one join, one "already joined"; both ok.
    for dup in ("1", "2"):
        pair = by_id[dup]
        assert len(pair) == 2 and all(o.ok for o in pair)
        assert sorted(o.already_joined for o in pair) == [False, True]
        assert [o.case.id for o in pair if o.case is not None] == [int(dup)]
    # Nothing invalid was sent.
    assert server.requests == 4 + FAST.max_attempts + 1


def _by_case(actions: dict[int, Any]) -> Any:
    from faultserver import ok

    async def action(request: Any, server: FaultServer, case_id: int) -> Any:
        return await actions.get(case_id, ok)(request, server, case_id)

    return action


async def test_input_is_pulled_lazily(client: aa.AcquireClient) -> None:
    stub_joins(client, delay=0.001)
    pulled = 0

    def ids() -> Iterator[int]:
        nonlocal pulled
        for i in range(1, 1_000_001):
            pulled += 1
            yield i

    seen = 0
    async with client.join_many(ids(), concurrency=8) as outcomes:
        async for _ in outcomes:
            seen += 1
            # Ahead of the consumer by at most the in-flight joins and the queued outcomes.
            assert pulled <= seen + 2 * 8 + 1
            if seen == 500:
                break
    assert pulled < 600


async def test_async_iterable_input(client: aa.AcquireClient) -> None:
    seen = stub_joins(client)

    async def ids() -> AsyncIterator[int]:
        for i in range(1, 101):
            await asyncio.sleep(0)
            yield i

    outcomes = await client.join_all(ids(), concurrency=10)
    assert sorted(o.case_id for o in outcomes) == list(range(1, 101))
    assert sorted(seen) == list(range(1, 101))


async def test_failing_source_finishes_what_it_gave_then_raises(
    client: aa.AcquireClient,
) -> None:
    stub_joins(client, delay=0.001)

    def ids() -> Iterator[int]:
        yield from range(1, 51)
        raise OSError("queue backend went away")

    got: list[int] = []
    with pytest.raises(OSError, match="queue backend"):
        async with client.join_many(ids(), concurrency=8) as outcomes:
            async for outcome in outcomes:
                got.append(outcome.case_id)
    assert sorted(got) == list(range(1, 51))


@pytest.mark.slow
async def test_memory_stays_bounded_for_100k_ids(client: aa.AcquireClient) -> None:
    stub_joins(client)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        count = 0
        async with client.join_many(iter(range(1, 100_001)), concurrency=64) as outcomes:
            async for _ in outcomes:
                count += 1
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 5_000_000, f"peak growth {peak} bytes"


async def test_server_side_peak_never_exceeds_concurrency() -> None:
    async with FaultServer(default=sleep_then(0.005)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            outcomes = await client.join_all(range(1, 301), concurrency=7)
    assert len(outcomes) == 300 and all(o.ok for o in outcomes)
    assert 2 <= server.peak <= 7


async def test_break_cancels_in_flight_and_releases_connections(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = [sleep_then(0)] * 3
    async with FaultServer(script=script, default=sleep_then(30)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            async with client.join_many(range(1, 1000), concurrency=16) as outcomes:
                async for _ in outcomes:
                    break
            assert acquired(client) == 0
            assert server.requests < 40
    gc.collect()
    assert "Task was destroyed" not in caplog.text


async def test_aclose_on_the_iterator_releases_connections() -> None:
    async with FaultServer(default=sleep_then(30)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            stream = client.join_many(range(1, 100), concurrency=8)
            waiter = asyncio.ensure_future(stream.__anext__())
            while server.requests < 8:
                await asyncio.sleep(0.005)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await stream.aclose()
            assert acquired(client) == 0


async def test_cancelling_the_consumer_releases_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FaultServer(default=sleep_then(30)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:

            async def consume() -> None:
                async with client.join_many(range(1, 100), concurrency=8) as outcomes:
                    async for _ in outcomes:
                        pass

            task = asyncio.ensure_future(consume())
            while server.requests < 8:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert acquired(client) == 0
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not [t for t in leftover if "worker" in repr(t)]
    gc.collect()
    assert "Task was destroyed" not in caplog.text


async def test_cancelled_join_chat_releases_its_connection() -> None:
    async with FaultServer(default=sleep_then(30)) as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            task = asyncio.ensure_future(client.join_chat(1))
            while server.requests < 1:
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert acquired(client) == 0


async def test_a_hook_exception_is_not_swallowed() -> None:
    def boom(event: object) -> None:
        raise RuntimeError("hook failed")

    async with (
        FaultServer() as server,
        aa.AcquireClient(api_key=KEY, base_url=server.base_url, on_request=boom) as client,
    ):
        with pytest.raises(RuntimeError, match="hook failed"):
            await client.join_all([1, 2, 3])


@pytest.mark.parametrize(
    ("concurrency", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), (1.5, TypeError)],
)
async def test_bad_concurrency(client: aa.AcquireClient, concurrency: Any, error: type) -> None:
    with pytest.raises(error, match="concurrency"):
        client.join_many([1], concurrency=concurrency)


async def test_bad_source(client: aa.AcquireClient) -> None:
    with pytest.raises(TypeError, match="iterable"):
        client.join_many(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable"):
        client.join_many("123")


@pytest.mark.parametrize(
    "source",
    [
        "1684",
        b"1684",
        bytearray(b"\xe8\x03"),  # iterated, it would join cases 232 and 3
        memoryview(b"\xe8\x03"),
        UserString("1684"),
    ],
    ids=["str", "bytes", "bytearray", "memoryview", "UserString"],
)
async def test_text_and_bytes_are_refused_as_case_ids(
    client: aa.AcquireClient, source: Any
) -> None:
    seen = stub_joins(client)
    with pytest.raises(TypeError, match="case_ids must be an iterable of ints") as info:
        client.join_many(source)
    assert type(source).__name__ in str(info.value)
    with pytest.raises(TypeError, match="case_ids"):
        await client.join_all(source)
    assert seen == []


async def test_an_int_subclass_is_joined_as_its_checked_plain_value(
    client: aa.AcquireClient,
) -> None:
    class Lying(int):
        def __gt__(self, other: object) -> bool:  # "0 < x" asks x.__gt__ first
            return True

    class Case(enum.IntEnum):
        SUPPORT = 1684

    seen = stub_joins(client)
    outcomes = await client.join_all([Case.SUPPORT, Lying(-5)])
    by_type = {type(o.case_id): o for o in outcomes}
    assert by_type[Case].ok  # the outcome keeps the item as it was given
    assert isinstance(by_type[Lying].error, aa.InvalidCaseIdError)
    assert seen == [1684] and type(seen[0]) is int


async def test_numpy_style_ints_are_invalid_items_not_joins(client: aa.AcquireClient) -> None:
    # Decision: only real ints (not bool) are case ids. An object that merely converts to an
    # int (numpy.int64, Decimal, anything with __index__) is an invalid item: reported, never
    # sent.
    class Index:
        def __index__(self) -> int:
            return 1684

    seen = stub_joins(client)
    [outcome] = await client.join_all([Index()])
    assert isinstance(outcome.error, aa.InvalidCaseIdError)
    assert "case_id must be an int" in str(outcome.error)
    assert seen == []


async def test_outcome_fields_on_success() -> None:
    async with FaultServer() as server:
        async with aa.AcquireClient(api_key=KEY, base_url=server.base_url) as client:
            [outcome] = await client.join_all([77])
    assert outcome.ok and not outcome.already_joined
    assert outcome.case is not None and outcome.case.id == 77
    assert outcome.attempts == 1 and outcome.elapsed > 0
    with pytest.raises(AttributeError):
        outcome.case_id = 5  # type: ignore[misc]


async def test_outcomes_flow_while_an_async_source_waits(client: aa.AcquireClient) -> None:
    stub_joins(client)
    more = asyncio.Event()

    async def ids() -> AsyncIterator[int]:
        yield 1
        yield 2
        await more.wait()  # a queue that is empty for now
        yield 3

    got: list[int] = []
    async with client.join_many(ids(), concurrency=4) as outcomes:
        async for outcome in outcomes:
            got.append(outcome.case_id)
            if len(got) == 2:
                more.set()  # both outcomes arrived although the source was still waiting
    assert sorted(got) == [1, 2, 3]


async def test_at_most_concurrency_joins_exist_at_once(client: aa.AcquireClient) -> None:
    live = peak = 0

    async def join(case_id: int) -> MockResponse:
        nonlocal live, peak
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(0.001)
        live -= 1
        return answer(case_id)

    STUBS[client].respond = join
    tasks_before = len(asyncio.all_tasks())
    most_tasks = 0
    async with client.join_many(range(1, 2001), concurrency=10) as outcomes:
        async for _ in outcomes:
            most_tasks = max(most_tasks, len(asyncio.all_tasks()) - tasks_before)
            await asyncio.sleep(0)  # a slow consumer must not let work pile up
    assert peak <= 10
    assert most_tasks <= 10


async def test_a_deadline_never_swallows_the_callers_cancellation() -> None:
    # The caller is cancelled in the very step in which its join finishes (here by a hook;
    # in life by a TaskGroup sibling or a shutdown). With or without a deadline, the caller
    # must see CancelledError, not a result (asyncio.wait_for on 3.10/3.11 drops it).
    outer: list[asyncio.Task[str]] = []

    def cancel_the_caller(event: object) -> None:
        outer[0].cancel()

    async def caller(client: aa.AcquireClient, timeout: float | None) -> str:
        try:
            await client.join_chat(1, timeout=timeout)
            await asyncio.sleep(0)  # a cancelled task must not get here
        except asyncio.CancelledError:
            return "cancelled"
        return "returned"

    async with FaultServer() as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, on_response=cancel_the_caller
        ) as client:
            for timeout in (None, 5.0):
                server.joined.clear()
                outer[:] = [asyncio.ensure_future(caller(client, timeout))]
                assert await outer[0] == "cancelled", timeout


async def test_a_crash_reports_the_joins_that_finished_then_raises() -> None:
    def boom(event: Any) -> None:
        if event.case_id == 8:
            raise RuntimeError("hook failed")

    got: list[int] = []
    async with FaultServer(default=sleep_then(0.01)) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, on_response=boom
        ) as client:
            with pytest.raises(RuntimeError, match="hook failed"):
                async with client.join_many(range(1, 101), concurrency=10) as outcomes:
                    async for outcome in outcomes:
                        got.append(outcome.case_id)
    # Only joins that happened were reported (those cancelled at the crash have no outcome).
    assert set(got) <= server.joined - {8}
    assert len(got) < 100  # and no new join was started after the crash


async def test_a_join_cancelled_from_outside_is_still_one_outcome(
    client: aa.AcquireClient,
) -> None:
    async def join(case_id: int) -> MockResponse:
        if case_id == 3:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # e.g. an application-wide "cancel all tasks" on shutdown
        await asyncio.sleep(0.001)
        return answer(case_id)

    STUBS[client].respond = join
    outcomes = await client.join_all(range(1, 11), concurrency=4)
    assert sorted(o.case_id for o in outcomes) == list(range(1, 11))
    [three] = [o for o in outcomes if o.case_id == 3]
    assert isinstance(three.error, aa.APIConnectionError)
    assert "cancelled" in str(three.error)


async def test_no_join_starts_after_a_crash(client: aa.AcquireClient) -> None:
    crashed = [False]
    started_after: list[int] = []

    async def join(case_id: int) -> MockResponse:
        if crashed[0]:
            started_after.append(case_id)
        await asyncio.sleep(0.01 if case_id != 4 else 0.02)
        if case_id == 4:
            crashed[0] = True
            raise RuntimeError("bug in join")
        return answer(case_id)

    STUBS[client].respond = join
    got: list[int] = []
    with pytest.raises(RuntimeError, match="bug in join"):
        async with client.join_many(range(1, 100), concurrency=4) as outcomes:
            async for outcome in outcomes:
                got.append(outcome.case_id)
                await asyncio.sleep(0.03)  # a slow consumer: outcomes queue up
    assert started_after == []
    assert sorted(got) == [1, 2, 3]


async def test_a_crash_is_raised_even_while_an_async_source_waits() -> None:
    def boom(event: Any) -> None:
        if event.case_id == 2:
            raise RuntimeError("hook failed")

    never = asyncio.Event()

    async def ids() -> AsyncIterator[int]:
        yield 1
        yield 2
        await never.wait()  # an empty queue, for good
        yield 3

    async with FaultServer() as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, on_response=boom
        ) as client:
            with pytest.raises(RuntimeError, match="hook failed"):
                await asyncio.wait_for(client.join_all(ids(), concurrency=4), 5)


async def test_an_async_source_runs_in_one_task_and_context(client: aa.AcquireClient) -> None:
    import contextvars

    stub_joins(client)
    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    tasks: set[asyncio.Task[Any] | None] = set()
    seen: list[int] = []

    async def ids() -> AsyncIterator[int]:
        for i in range(1, 6):
            tasks.add(asyncio.current_task())
            seen.append(var.get())
            var.set(i)  # a source's own state survives from one item to the next
            await asyncio.sleep(0)
            yield i

    outcomes = await client.join_all(ids(), concurrency=2)
    assert sorted(o.case_id for o in outcomes) == [1, 2, 3, 4, 5]
    assert len(tasks) == 1
    assert seen == [0, 1, 2, 3, 4]


async def test_a_deadline_passes_an_outside_cancellation_at_expiry() -> None:
    from acquire_async import _engine

    budget = 0.2

    async def caller(client: aa.AcquireClient) -> str:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # An outside cancellation (a TaskGroup sibling failing, a shutdown) that lands in
        # the same loop pass as the deadline's backstop.
        loop.call_later(budget + _engine._DEADLINE_GRACE, task.cancel)
        try:
            await client.join_chat(1, timeout=budget)  # waits for the only slot
        except asyncio.CancelledError:
            return "cancelled"
        except aa.APITimeoutError:
            return "swallowed"
        return "returned"

    async with FaultServer(default=sleep_then(10)) as server:
        async with aa.AcquireClient(
            api_key=KEY,
            base_url=server.base_url,
            max_concurrency=1,
            retry=aa.RetryPolicy.disabled(),
        ) as client:
            blocker = asyncio.ensure_future(client.join_chat(2))
            while server.requests < 1:
                await asyncio.sleep(0.005)
            results = [await asyncio.ensure_future(caller(client)) for _ in range(3)]
            blocker.cancel()
            await asyncio.gather(blocker, return_exceptions=True)
    assert results == ["cancelled"] * 3


async def test_a_crash_cancels_the_joins_in_flight_at_once_and_starts_no_more() -> None:
    # A hook that fails from the 60th request on, hundreds of ids, and answers that take 10 s
    # after the first 40: the stream must stop sending at the crash, cancel the joins under
    # way instead of waiting for their answers, and raise the first error with the later
    # ones attached.
    calls = 0

    def hook(event: Any) -> None:
        nonlocal calls
        calls += 1
        if calls >= 60:
            raise RuntimeError(f"hook failed on request {calls}")

    got: list[aa.JoinOutcome] = []
    async with FaultServer(script=[sleep_then(0)] * 40, default=sleep_then(10)) as server:
        async with aa.AcquireClient(
            api_key=KEY, base_url=server.base_url, on_request=hook
        ) as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(RuntimeError) as info:
                async with client.join_many(range(1, 501), concurrency=50) as outcomes:
                    async for outcome in outcomes:
                        got.append(outcome)
            elapsed = loop.time() - started
            # Requests written before the crash may still be read by the server (it runs in
            # this loop); after that, not one more arrives.
            await asyncio.sleep(0.2)
            seen = server.requests
            await asyncio.sleep(0.5)
            assert server.requests == seen
            assert acquired(client) == 0
            assert calls == 59 + 1 + len(info.value.__acquire_later__)  # type: ignore[attr-defined]
    assert elapsed < 3, elapsed  # far sooner than the 10 s answers it cancelled
    assert 40 <= seen <= 59
    assert len(got) == 40 and all(o.ok for o in got)  # the fast ones, and nothing else
    exc = info.value
    assert str(exc) == "hook failed on request 60"  # the first error
    later = exc.__acquire_later__  # type: ignore[attr-defined]
    assert [str(e) for e in later] == [
        f"hook failed on request {60 + i}" for i in range(1, 1 + len(later))
    ]


async def test_later_errors_are_attached_to_the_first_not_dropped(
    client: aa.AcquireClient,
) -> None:
    started: list[int] = []

    async def join(case_id: int) -> MockResponse:
        started.append(case_id)
        if case_id in (5, 6):  # two bugs in the same instant
            raise RuntimeError(f"bug in join {case_id}")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if case_id in (8, 9):  # and two more while being cancelled
                raise ValueError(f"cleanup of {case_id} failed") from None
            raise
        return answer(case_id)

    STUBS[client].respond = join
    loop = asyncio.get_running_loop()
    begun = loop.time()
    with pytest.raises(RuntimeError, match="bug in join 5") as info:
        async with client.join_many(range(1, 301), concurrency=20) as outcomes:
            async for _ in outcomes:
                pass
    assert loop.time() - begun < 1
    assert sorted(started) == list(range(1, 21))  # nothing started after the crash
    later = info.value.__acquire_later__  # type: ignore[attr-defined]
    assert [str(e) for e in later] == [
        "bug in join 6",
        "cleanup of 8 failed",
        "cleanup of 9 failed",
    ]
    if sys.version_info >= (3, 11):
        [note] = info.value.__notes__
        assert "3 later error(s)" in note and "cleanup of 9 failed" in note
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []


async def test_a_crash_without_later_errors_has_an_empty_tuple(client: aa.AcquireClient) -> None:
    async def join(case_id: int) -> MockResponse:
        if case_id == 3:
            raise KeyError("bug")
        await asyncio.sleep(0)
        return answer(case_id)

    STUBS[client].respond = join
    with pytest.raises(KeyError) as info:
        await client.join_all(range(1, 10), concurrency=4)
    assert info.value.__acquire_later__ == ()  # type: ignore[attr-defined]
    assert not getattr(info.value, "__notes__", None)


async def test_a_failing_source_after_a_crash_is_attached_too(client: aa.AcquireClient) -> None:
    async def join(case_id: int) -> MockResponse:
        if case_id == 2:
            raise RuntimeError("bug in join")
        await asyncio.sleep(0)
        return answer(case_id)

    def ids() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("queue backend went away")

    STUBS[client].respond = join
    with pytest.raises(RuntimeError, match="bug in join") as info:
        await client.join_all(ids(), concurrency=4)
    [source_error] = info.value.__acquire_later__  # type: ignore[attr-defined]
    assert isinstance(source_error, OSError)
