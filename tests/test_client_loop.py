"""A client belongs to the event loop of its first call; another loop gets a clear error."""

from __future__ import annotations

import asyncio

import pytest
from stubs import StubTransport, answer

from acquire_async import AcquireClient
from acquire_async.testing import FakeAcquireThread

KEY = "test-key-123"
MESSAGE = "bound to the event loop it was first used on"


def test_a_second_event_loop_gets_a_clear_error_not_aiohttps() -> None:
    with FakeAcquireThread(cases=5) as fake:  # serves while this thread runs loops in turn
        client = AcquireClient(api_key=fake.api_key, base_url=fake.base_url)
        first = asyncio.new_event_loop()
        try:
            case = first.run_until_complete(client.join_chat(1000))
            assert case.id == 1000

            async def from_another_loop() -> None:
                with pytest.raises(RuntimeError, match=MESSAGE):
                    await client.join_chat(1001)
                with pytest.raises(RuntimeError, match=MESSAGE):
                    async with client.join_many([1002]) as outcomes:
                        [o async for o in outcomes]

            asyncio.run(from_another_loop())
            # Nothing was sent from the second loop, and the client still works on its own.
            assert [r.case_id for r in fake.requests] == [1000]
            assert first.run_until_complete(client.join_chat(1003)).id == 1003
        finally:
            first.run_until_complete(client.aclose())
            first.close()


def test_every_operation_checks_the_loop() -> None:
    client = AcquireClient(api_key=KEY, base_url="http://x.test", transport=StubTransport(answer))

    async def use() -> None:
        await client.join_chat(1)

    async def others() -> None:
        for call in (
            client.join_chat(1),
            client.reject_chat(1),
            client.close_chat(1),
            client.add_message(1, "hi"),
            client.join_all([1]),
        ):
            with pytest.raises(RuntimeError, match=MESSAGE):
                await call
        with pytest.raises(RuntimeError, match=MESSAGE):
            async with client:
                pass

    asyncio.run(use())
    asyncio.run(others())


def test_a_client_built_outside_any_loop_binds_to_its_first_loop() -> None:
    # Built at import time of an app, used inside asyncio.run(): the usual shape.
    client = AcquireClient(api_key=KEY, base_url="http://x.test", transport=StubTransport())

    async def main() -> None:
        async with client:
            pass

    asyncio.run(main())


def test_aclose_from_another_loop_says_so_and_the_right_loop_still_closes_it() -> None:
    with FakeAcquireThread(cases=5) as fake:  # serves while this thread runs loops in turn
        client = AcquireClient(api_key=fake.api_key, base_url=fake.base_url)
        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(client.join_chat(1000))  # a pooled connection is open
            with pytest.raises(RuntimeError, match="must be closed there"):
                asyncio.run(client.aclose())
            assert not client.closed
        finally:
            first.run_until_complete(client.aclose())  # closes it (no ResourceWarning)
            first.close()
        assert client.closed
