"""`FakeAcquireThread`: a `FakeAcquire` on a thread and event loop of its own, for sync tests.

A sync test (FastAPI's `TestClient`, `requests`, any code that blocks) blocks the thread it
runs on, so an emulator served by that thread's event loop never answers. This one is served
by its own loop, on its own thread, for as long as the `with` block lasts.

The `FakeAcquire` belongs to that loop: every read and change goes through `call` or `run`,
which run on it and hand back the result (or raise the exception) in the caller's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._fake import FakeAcquire, RecordedRequest
from ._faults import ScriptItem
from ._webhooks import Delivery

__all__ = ["FakeAcquireThread"]

T = TypeVar("T")


class FakeAcquireThread:
    """A `FakeAcquire` served from its own thread and event loop, for sync test clients.

    Takes `FakeAcquire`'s arguments (checked at once, in the caller's thread). `with` starts
    it (the thread, its loop, the socket) and stops it; an error while starting or stopping is
    raised to the caller. The emulator's state lives on its loop: the reads below return
    copies taken there, and `call` / `run` run your own code there.

    Example:
        ```python
        from fastapi.testclient import TestClient

        with FakeAcquireThread(cases=3) as fake:
            os.environ.update(fake.env)  # ACQUIRE_BASE_URL, ACQUIRE_API_KEY
            with TestClient(app) as http:
                assert http.post("/cases/1000/join").status_code == 200
            assert fake.is_joined(1000)
            fake.call(fake.fake.close_case, 1001)
        ```
    """

    def __init__(self, cases: int | Iterable[Mapping[str, Any]] = 0, **options: Any) -> None:
        # Built here so that bad arguments raise before any thread or socket exists; nothing in
        # FakeAcquire's constructor binds to an event loop, and after start only the loop's
        # thread touches it.
        self._fake = FakeAcquire(cases, **options)
        self._thread: threading.Thread | None = None
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        # _lock orders a stop request against the loop thread publishing its loop, so a stop
        # asked for while the thread is still starting is not lost.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._running = False
        self._base_url = ""
        # Futures of run() waiting on the loop. The loop thread cancels those left when its
        # loop ends (under _lock, with _loop_done), so no caller waits for ever on a loop that
        # will never run its callback.
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._loop_done = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAcquireThread:
        """Start the thread, its event loop and the emulator; return `self` once it serves.

        An error while starting (a port in use, say) is raised here, and nothing is left
        running. A `FakeAcquireThread` starts once.

        Example:
            ```python
            fake = FakeAcquireThread(cases=1).start()
            try:
                print(fake.base_url)
            finally:
                fake.stop()
            ```
        """
        if self._thread is not None:
            raise RuntimeError("FakeAcquireThread is already started (it starts once)")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._main, args=(started, self._finished), name="FakeAcquireThread", daemon=True
        )
        self._thread = thread
        try:
            # Inside the try: a Ctrl-C can land in thread.start() itself (it waits for the
            # thread to begin), and the thread is running by then.
            thread.start()
            started.result()
        except BaseException:
            # It failed to start (its loop is gone), or the caller was interrupted while
            # waiting (then the loop may be serving: stop it).
            self._signal_stop()
            if thread.ident is not None:
                thread.join()
            raise
        self._running = True
        self._base_url = self._fake.base_url
        return self

    def stop(self) -> None:
        """Stop the emulator, its loop and its thread, and wait for them. Idempotent.

        An error while closing the emulator is raised here.

        Example:
            ```python
            fake.stop()
            ```
        """
        thread = self._thread
        if thread is None or not self._running:
            return
        self._signal_stop()
        thread.join()
        # Only now: a Ctrl-C during the join leaves it running, and a later stop() tries again.
        self._running = False
        self._finished.result()  # the emulator's close() error, if any

    def __enter__(self) -> FakeAcquireThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _signal_stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            loop, stop = self._loop, self._stop
            if loop is None or stop is None:
                return  # _serve has not published its loop yet: it will see the request
            # A RuntimeError: the loop is closed already, its thread is ending.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def _main(
        self,
        started: concurrent.futures.Future[None],
        finished: concurrent.futures.Future[None],
    ) -> None:
        # Every exception ends up in one of the two futures, none escapes the thread.
        try:
            try:
                asyncio.run(self._serve(started))
            finally:
                with self._lock:
                    self._loop_done = True
                    left, self._pending = self._pending, set()
                for future in left:
                    future.cancel()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
                finished.set_result(None)
            else:
                finished.set_exception(exc)
        else:
            if not started.done():  # cannot happen: _serve settles it first
                started.set_exception(RuntimeError("FakeAcquireThread did not start"))
            finished.set_result(None)

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        stop = asyncio.Event()
        with self._lock:
            self._loop, self._stop = asyncio.get_running_loop(), stop
            if self._stop_requested:
                stop.set()
        try:
            await self._fake.start()
            started.set_result(None)
            await stop.wait()
        finally:
            # Also after a failed start: close() releases whatever start() got to (idempotent).
            await self._fake.close()

    # ------------------------------------------------------------------ the loop

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the emulator's event loop; return its result.

        Its exception is raised in the caller. The way to change the emulator safely from a
        sync test: `fake.fake` is the `FakeAcquire` itself. After `stop()` it runs `fn` in the
        caller's thread (the loop is gone), so the reads below still work after the block.

        Example:
            ```python
            fake.call(fake.fake.close_case, 1000)
            fake.call(fake.fake.requests.clear)
            ```
        """
        thread = self._thread
        if thread is not None and (
            threading.current_thread() is thread
            # Stopped: the loop and its thread are gone, nothing else touches the emulator,
            # so what the test reads after its `with` block is read directly.
            or (not self._running and not thread.is_alive())
        ):
            return fn(*args, **kwargs)

        async def invoke() -> T:
            return fn(*args, **kwargs)

        return self.run(invoke)

    def run(self, coro_fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await `coro_fn(*args, **kwargs)` on the emulator's event loop; return its result.

        It blocks the caller until the coroutine ends; its exception is raised in the caller.
        Not from the emulator's own loop (it would wait for itself): a `RuntimeError`.

        Example:
            ```python
            fake.call(fake.fake.invite, 1000)
            fake.run(fake.fake.webhooks_idle, 5.0)
            ```
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("FakeAcquireThread.run from the emulator's own loop would deadlock")
        with self._lock:
            loop = self._loop
            if not self._running or loop is None or self._stop_requested or self._loop_done:
                raise RuntimeError("FakeAcquireThread is not running: use 'with' or start()")
            future = asyncio.run_coroutine_threadsafe(_awaited(coro_fn, args, kwargs), loop)
            self._pending.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending.discard(future)

    # ------------------------------------------------------------------ reads and common changes

    @property
    def fake(self) -> FakeAcquire:
        """The `FakeAcquire` itself. It belongs to the emulator's loop: touch it only through
        `call` or `run` while it runs.

        Example:
            ```python
            fake.call(fake.fake.mark_joined, 1000)
            ```
        """
        return self._fake

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/api/v1`: the client's `base_url` (a `RuntimeError` before
        start).

        Example:
            ```python
            AcquireClient(api_key=fake.api_key, base_url=fake.base_url)
            ```
        """
        if not self._base_url:
            raise RuntimeError("FakeAcquireThread is not started: use 'with' or start()")
        return self._base_url

    @property
    def api_key(self) -> str:
        """The API key the emulator accepts (not a secret).

        Example:
            ```python
            headers = {"Authorization": f"Bearer {fake.api_key}"}
            ```
        """
        return self._fake.api_key

    @property
    def env(self) -> dict[str, str]:
        """`ACQUIRE_BASE_URL` and `ACQUIRE_API_KEY` for this emulator: what `AcquireClient()`
        reads from the environment. A new dict each time.

        Example:
            ```python
            for name, value in fake.env.items():
                monkeypatch.setenv(name, value)
            ```
        """
        return {"ACQUIRE_BASE_URL": self.base_url, "ACQUIRE_API_KEY": self.api_key}

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order: a copy, taken on the emulator's loop.

        Example:
            ```python
            assert [r.status for r in fake.requests] == [503, 200]
            ```
        """
        return self.call(lambda: list(self._fake.requests))

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt so far, in order: a copy.

        Example:
            ```python
            assert fake.deliveries[-1].delivered
            ```
        """
        return self.call(lambda: list(self._fake.deliveries))

    @property
    def cases(self) -> dict[int, dict[str, Any]]:
        """The store, case id → case dict: a deep copy (change the store with `call`).

        Example:
            ```python
            assert fake.cases[1000]["status"] == "active"
            ```
        """
        return self.call(lambda: copy.deepcopy(self._fake.cases))

    def is_joined(self, case_id: int) -> bool:
        """Whether the key's agent has joined the stored case `case_id`.

        Example:
            ```python
            assert fake.is_joined(1000)
            ```
        """
        return self.call(self._fake.is_joined, case_id)

    def messages(self, case_id: int) -> list[dict[str, Any]]:
        """The messages the case received through add-message, oldest first: a deep copy
        (`KeyError` for a case not in the store).

        Example:
            ```python
            assert len(fake.messages(1000)) == 1
            ```
        """
        return self.call(lambda: copy.deepcopy(self._fake.messages(case_id)))

    def script(self, faults: Iterable[ScriptItem]) -> None:
        """Force exact faults on the next requests, as `FakeAcquire.script` does.

        Example:
            ```python
            fake.script([503, None])
            ```
        """
        items = list(faults)
        self.call(self._fake.script, items)

    def __repr__(self) -> str:
        where = self._base_url or "not started"
        return f"<FakeAcquireThread {where}>"


async def _awaited(
    coro_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    # The awaitable is made here, on the emulator's loop, not in the caller's thread.
    return await coro_fn(*args, **kwargs)
