"""``FakeAcquireThread`` and the ``fake_acquire_thread`` fixture: the emulator for sync tests.

``test_join_through_the_app`` is the example of docs/testing.md (a test checks they agree).

A sync test blocks its thread; these tests block it on purpose (``urllib``, ``asyncio.run``,
FastAPI's ``TestClient``) and the emulator still answers, from its own thread and loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from docexample import assert_example_is_in
from fastapi.testclient import TestClient

from acquire_async import AcquireClient, AlreadyJoinedError
from acquire_async.testing import FakeAcquire, FakeAcquireThread, Faults
from examples.fastapi_app import app

pytest_plugins = ["acquire_async.testing.pytest_plugin"]

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _join(fake: FakeAcquireThread, case_id: int) -> int:
    """A blocking join over HTTP from the test's own thread; the status answered."""
    request = urllib.request.Request(
        fake.base_url + "/crm/messenger/chat/join",
        data=json.dumps({"caseId": case_id, "askJoin": True}).encode(),
        headers={"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "FakeAcquireThread"]


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_blocking_client_is_answered() -> None:
    with FakeAcquireThread(cases=3) as fake:
        assert fake.base_url.startswith("http://127.0.0.1:")
        assert fake.env == {"ACQUIRE_BASE_URL": fake.base_url, "ACQUIRE_API_KEY": fake.api_key}
        assert _join(fake, 1001) == 200
        assert fake.is_joined(1001)
        assert not fake.is_joined(1000)
        assert [(r.case_id, r.status) for r in fake.requests] == [(1001, 200)]
        assert sorted(fake.cases) == [1000, 1001, 1002]
        assert fake.cases[1001]["status"] == "active"


def test_an_async_client_on_another_loop_is_answered() -> None:
    with FakeAcquireThread(cases=2, faults=Faults(sequence=[503])) as fake:

        async def join() -> None:
            async with AcquireClient(api_key=fake.api_key, base_url=fake.base_url) as client:
                await client.join_chat(1000)
                with pytest.raises(AlreadyJoinedError):
                    await client.join_chat(1000)

        asyncio.run(join())
        assert [r.status for r in fake.requests] == [503, 200, 200]
        assert fake.is_joined(1000)


def test_reads_are_copies_and_changes_go_through_call() -> None:
    with FakeAcquireThread(cases=1) as fake:
        fake.cases[1000]["status"] = "closed"  # a copy: the store is untouched
        fake.requests.clear()
        assert _join(fake, 1000) == 200
        fake.requests.clear()
        assert len(fake.requests) == 1
        assert fake.cases[1000]["status"] == "active"
        fake.call(fake.fake.close_case, 1000)
        assert fake.cases[1000]["status"] == "closed"
        assert fake.messages(1000) == []
        with pytest.raises(KeyError):
            fake.messages(5)


def test_call_and_run_use_the_emulators_loop() -> None:
    with FakeAcquireThread() as fake:

        def where() -> tuple[str, asyncio.AbstractEventLoop]:
            return threading.current_thread().name, asyncio.get_running_loop()

        name, loop = fake.call(where)
        assert name == "FakeAcquireThread"
        assert loop is fake.run(_running_loop)
        assert fake.run(asyncio.sleep, 0, "slept") == "slept"
        assert fake.call(dict, a=1) == {"a": 1}
    assert loop.is_closed()


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_errors_in_call_and_run_reach_the_caller() -> None:
    with FakeAcquireThread(cases=1) as fake:
        with pytest.raises(ValueError, match="not in the store"):
            fake.call(fake.fake.invite, 5)

        async def fails() -> None:
            await asyncio.sleep(0)
            raise LookupError("from the loop")

        with pytest.raises(LookupError, match="from the loop"):
            fake.run(fails)
        # run from the emulator's own loop would wait for itself: refused, not a deadlock
        with pytest.raises(RuntimeError, match="deadlock"):
            fake.call(fake.run, asyncio.sleep, 0)
        assert fake.call(fake.call, len, "abc") == 3  # call on the loop runs it in place
        fake.script([503])
        assert _join(fake, 1000) == 503


def test_bad_arguments_raise_before_any_thread() -> None:
    with pytest.raises(ValueError, match="cases"):
        FakeAcquireThread(cases=-1)
    with pytest.raises(TypeError, match="cases"):
        FakeAcquireThread(cases=True)
    with pytest.raises(TypeError):
        FakeAcquireThread(colour="blue")
    assert _emulator_threads() == []


def test_a_start_error_reaches_the_caller_and_leaves_nothing_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fake = FakeAcquireThread(port=port)
        with pytest.raises(OSError):
            fake.__enter__()
        assert _emulator_threads() == []
        assert fake.requests == []  # it never served
        with pytest.raises(RuntimeError, match="not running"):
            fake.run(asyncio.sleep, 0)
        fake.stop()  # nothing to stop: no error


def test_a_ctrl_c_inside_thread_start_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Thread.start() waits for the new thread to begin: a Ctrl-C can land there, with the
    # emulator's thread already running (seen in CI, 1 run in 10 of the test above).
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        start(thread)
        if thread.name == "FakeAcquireThread":
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    fake = FakeAcquireThread()
    with pytest.raises(KeyboardInterrupt):
        fake.start()
    assert _emulator_threads() == []
    assert _refused(fake.fake.port)


def test_a_failure_late_in_the_start_releases_the_socket() -> None:
    fake = FakeAcquireThread()

    async def fails() -> None:
        raise OSError("webhooks failed")

    # The emulator's last step of start(), after it bound its socket.
    fake.fake._webhooks.start = fails  # type: ignore[method-assign]
    with pytest.raises(OSError, match="webhooks failed"):
        fake.start()
    assert _emulator_threads() == []
    assert fake.fake.port != 0
    assert _refused(fake.fake.port)


def test_an_interrupted_start_leaves_nothing_running() -> None:
    fake = FakeAcquireThread()
    start = fake.fake.start
    starting, interrupted = threading.Event(), threading.Event()

    async def slow_start() -> FakeAcquire:
        starting.set()
        # Finish only once the Ctrl-C is sent, so it lands while the caller waits (under load
        # a fixed sleep could end first, and the Ctrl-C would hit a started emulator).
        await asyncio.to_thread(interrupted.wait, 10)
        return await start()

    def interrupt() -> None:
        starting.wait(10)
        # A real SIGINT to the main thread interrupts its wait at once (interrupt_main only
        # sets a flag, seen at the main thread's next bytecode: maybe after start() returned).
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        interrupted.set()

    fake.fake.start = slow_start  # type: ignore[method-assign]
    interrupter = threading.Thread(target=interrupt)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fake.start()
    finally:
        interrupter.join()
    assert _emulator_threads() == []
    assert _refused(fake.fake.port)


def test_a_stop_error_reaches_the_caller_and_everything_is_released() -> None:
    fake = FakeAcquireThread(cases=1)
    close = fake.fake.close

    async def failing_close() -> None:
        await close()
        raise OSError("close failed")

    with pytest.raises(OSError, match="close failed"):
        with fake:
            port = fake.fake.port
            fake.fake.close = failing_close  # type: ignore[method-assign]
    assert _emulator_threads() == []
    assert _refused(port)


def test_stop_releases_the_thread_the_loop_and_the_port() -> None:
    fake = FakeAcquireThread(cases=1)
    with fake:
        port = fake.fake.port
        loop = fake.call(asyncio.get_running_loop)
        assert _join(fake, 1000) == 200  # a kept-alive connection is open at exit
        assert len(_emulator_threads()) == 1
    assert _emulator_threads() == []
    assert loop.is_closed()
    assert _refused(port)
    fake.stop()  # idempotent
    assert [r.case_id for r in fake.requests] == [1000]  # still readable after the block
    with pytest.raises(RuntimeError, match="starts once"):
        fake.start()


def test_an_error_in_the_block_still_stops_it() -> None:
    with pytest.raises(ZeroDivisionError):
        with FakeAcquireThread() as fake:
            _ = 1 / 0
    assert _emulator_threads() == []
    assert repr(fake).startswith("<FakeAcquireThread http://127.0.0.1:")


def test_repr_and_base_url_before_start() -> None:
    fake = FakeAcquireThread(api_key="k-123")
    assert repr(fake) == "<FakeAcquireThread not started>"
    assert fake.api_key == "k-123"
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.env


def test_webhooks_from_a_sync_test() -> None:
    received: list[Any] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        try:
            with FakeAcquireThread(cases=1) as fake:
                url = f"http://127.0.0.1:{server.server_address[1]}/"
                fake.call(fake.fake.add_webhook, url, events=["user:case-invite"])
                fake.call(fake.fake.invite, 1000)
                fake.run(fake.fake.webhooks_idle, 5.0)
                assert [d.delivered for d in fake.deliveries] == [True]
        finally:
            server.shutdown()
            serving.join()
    assert received == [{"event": "user:case-invite", "data": {"caseId": "1000", "userId": "25"}}]


# ---------------------------------------------------------------------- the fixture


def test_the_fixture_in_a_sync_test(fake_acquire_thread: FakeAcquireThread) -> None:
    # (the acquire_fake marker is tested in test_pytest_plugin.py: this module loads the
    # plugin itself, after the markers are checked)
    assert sorted(fake_acquire_thread.cases) == list(range(1000, 1010))
    assert _join(fake_acquire_thread, 1000) == 200
    assert fake_acquire_thread.is_joined(1000)


async def test_the_fixture_in_an_async_test(fake_acquire_thread: FakeAcquireThread) -> None:
    async with AcquireClient(**_client_args(fake_acquire_thread)) as client:
        await client.join_chat(1005)
    assert fake_acquire_thread.is_joined(1005)


def _client_args(fake: FakeAcquireThread) -> dict[str, str]:
    return {"api_key": fake.api_key, "base_url": fake.base_url}


async def test_the_async_fixture_still_works(fake_acquire: FakeAcquire) -> None:
    assert len(fake_acquire.cases) == 10


# ---------------------------------------------------------------------- the documented example


def test_join_through_the_app(
    fake_acquire_thread: FakeAcquireThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_acquire_thread.env.items():
        monkeypatch.setenv(name, value)  # what the app's AcquireClient() reads
    with TestClient(app) as http:  # runs the lifespan, which opens the app's client
        joined = http.post("/cases/1000/join")
        again = http.post("/cases/1000/join")
        unknown = http.post("/cases/99/join")
    assert joined.status_code == 200
    assert joined.json()["id"] == 1000
    assert again.status_code == 409  # AlreadyJoinedError, as the app maps it
    assert unknown.status_code == 404
    assert fake_acquire_thread.is_joined(1000)
    assert [r.case_id for r in fake_acquire_thread.requests] == [1000, 1000, 99]


def test_the_documented_example_is_this_file() -> None:
    assert_example_is_in(DOCS / "testing.md", "## Sync tests: `FakeAcquireThread`", Path(__file__))


def test_reads_work_after_the_block_as_with_the_async_fake() -> None:
    with FakeAcquireThread(cases=2) as fake:
        assert _join(fake, 1000) == 200
    assert [r.case_id for r in fake.requests] == [1000]
    assert fake.is_joined(1000)
    assert not fake.is_joined(1001)
    assert sorted(fake.cases) == [1000, 1001]
    with pytest.raises(RuntimeError, match="not running"):
        fake.run(asyncio.sleep, 0)  # there is no loop to await on


def test_a_run_the_loop_never_got_to_is_cancelled_at_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race of a run() against stop(): its callback reaches a loop that is shutting down
    # and is never run. Simulated here by a schedule that goes nowhere; the caller must get an
    # answer when the loop ends, not wait for ever.
    scheduled = threading.Event()

    def lost(coro: Any, loop: asyncio.AbstractEventLoop) -> concurrent.futures.Future[Any]:
        coro.close()
        scheduled.set()
        return concurrent.futures.Future()

    outcome: list[BaseException] = []
    with FakeAcquireThread(cases=1) as fake:
        monkeypatch.setattr(asyncio, "run_coroutine_threadsafe", lost)

        def caller() -> None:
            try:
                fake.run(asyncio.sleep, 0)
            except BaseException as exc:
                outcome.append(exc)

        waiting = threading.Thread(target=caller, daemon=True)  # daemon: if it hangs
        waiting.start()
        assert scheduled.wait(10)
    waiting.join(10)
    assert not waiting.is_alive(), "run() still waits after stop()"
    assert [type(exc) for exc in outcome] == [concurrent.futures.CancelledError]
