"""The network contenders: the same bulk join written with our SDK, raw aiohttp and httpx.

Each contender is an async context manager that opens its client on enter (inside the running
loop) and closes it on exit; ``await contender.run(ids)`` joins every id and returns a
:class:`Tally`. A contender whose library is missing (or, for ours, whose API is not written
yet) reports why through :meth:`Contender.unavailable` instead of failing.

All of them send the same request (``POST …/crm/messenger/chat/join`` with
``{"caseId": <id>, "askJoin": true}`` and a bearer token) and decode every response into the
same msgspec ``Case`` model, so the difference between them is the client machinery alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any, ClassVar, NamedTuple

from ._common import missing_note, optional
from ._server import content_length

__all__ = [
    "CONTENDERS",
    "BareProtocol",
    "Contender",
    "HttpxWorkers",
    "OursGather",
    "OursJoinMany",
    "RawAiohttp",
    "RawAiohttpGather",
    "Tally",
    "envelope_decoder",
    "ours_pending",
]

API_KEY = "bench-key"
JOIN_PATH = "/crm/messenger/chat/join"
HEADERS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "Accept": "application/json",
}
_BODY = b'{"caseId":%d,"askJoin":true}'


class Tally(NamedTuple):
    """How many joins succeeded and failed in one run."""

    ok: int
    failed: int


def envelope_decoder(many: bool = False) -> Any:
    """A msgspec decoder of ``{"data": Case}`` (or ``{"data": [Case, …]}`` when ``many``).

    This is the typed decode every network contender pays for, and ours for the list payload.
    """
    import msgspec

    from acquire_async.models import Case

    data_type: Any = list[Case] if many else Case | None
    envelope = msgspec.defstruct("CaseEnvelope", [("data", data_type, None)], gc=False)
    return msgspec.json.Decoder(envelope)


class Contender:
    """Base of the contenders: configuration, availability and the context-manager shape."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base_url: str, concurrency: int) -> None:
        self.base_url = base_url
        self.url = base_url + JOIN_PATH
        self.concurrency = concurrency

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this contender cannot run here (a skip note), or ``None`` when it can."""
        return missing_note(*cls.requires)

    async def __aenter__(self) -> Contender:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the client; called inside the running loop."""

    async def close(self) -> None:
        """Close the client."""

    async def run(self, ids: Iterable[int]) -> Tally:
        """Join every id in ``ids``; return how many succeeded and failed."""
        raise NotImplementedError


# --------------------------------------------------------------------------- ours


def ours_pending() -> str | None:
    """Why our bulk API cannot be benchmarked yet, or ``None`` when it can."""
    try:
        from acquire_async import AcquireClient
    except ImportError as exc:
        return f"pending: acquire_async.AcquireClient does not import yet ({exc})"
    if not hasattr(AcquireClient, "join_many"):
        return "pending: AcquireClient.join_many is not written yet"
    return None


class OursJoinMany(Contender):
    """Ours: ``AcquireClient.join_many``, lazy and bounded (the recommended way)."""

    name = "ours: join_many"
    requires = ("msgspec", "aiohttp")

    @classmethod
    def unavailable(cls) -> str | None:
        return super().unavailable() or ours_pending()

    async def open(self) -> None:
        from acquire_async import AcquireClient

        self.client = AcquireClient(api_key=API_KEY, base_url=self.base_url)
        await self.client.__aenter__()

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)

    async def run(self, ids: Iterable[int]) -> Tally:
        ok = failed = 0
        async with self.client.join_many(ids, concurrency=self.concurrency) as outcomes:
            async for outcome in outcomes:
                if outcome.ok:
                    ok += 1
                else:
                    failed += 1
        return Tally(ok, failed)


class OursGather(OursJoinMany):
    """Ours, the naive way: one ``join_chat`` task per id up front, ``asyncio.gather``ed."""

    name = "ours: gather(join_chat)"

    async def run(self, ids: Iterable[int]) -> Tally:
        slots = asyncio.Semaphore(self.concurrency)
        join_chat = self.client.join_chat

        async def one(case_id: int) -> Any:
            async with slots:
                return await join_chat(case_id)

        results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
        failed = sum(isinstance(result, BaseException) for result in results)
        return Tally(len(results) - failed, failed)


# --------------------------------------------------------------------------- raw aiohttp


class RawAiohttp(Contender):
    """The floor for any aiohttp client: one session, a semaphore, post, read, decode.

    Tasks are started lazily: the loop waits for a free slot before it creates the next
    one, so at most ``concurrency`` joins (and tasks) exist at once, like ``join_many``.
    """

    name = "raw aiohttp"
    requires = ("aiohttp", "msgspec")

    async def open(self) -> None:
        import aiohttp
        from yarl import URL

        self.decode = envelope_decoder().decode
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency))
        self.join_url = URL(self.url)

    async def close(self) -> None:
        await self.session.close()

    async def join(self, case_id: int) -> bool:
        """One join: ``True`` when the server answered 200 with a case."""
        async with self.session.post(
            self.join_url, data=_BODY % case_id, headers=HEADERS
        ) as response:
            payload = await response.read()
            return response.status == 200 and self.decode(payload).data is not None

    async def run(self, ids: Iterable[int]) -> Tally:
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[bool]] = set()
        tally = [0, 0]

        def done(task: asyncio.Task[bool]) -> None:
            tasks.discard(task)
            slots.release()
            joined = not task.cancelled() and task.exception() is None and task.result()
            tally[0 if joined else 1] += 1

        for case_id in ids:
            await slots.acquire()
            task = asyncio.create_task(self.join(case_id))
            tasks.add(task)
            task.add_done_callback(done)
        while tasks:
            await asyncio.wait(tasks)
        return Tally(*tally)


class RawAiohttpGather(RawAiohttp):
    """Raw aiohttp, the naive way: a task per id up front, a semaphore, ``asyncio.gather``."""

    name = "raw aiohttp: gather"

    async def run(self, ids: Iterable[int]) -> Tally:
        slots = asyncio.Semaphore(self.concurrency)

        async def one(case_id: int) -> bool:
            async with slots:
                return await self.join(case_id)

        results = await asyncio.gather(*(one(i) for i in ids), return_exceptions=True)
        ok = sum(result is True for result in results)
        return Tally(ok, len(results) - ok)


# --------------------------------------------------------------------------- httpx


class HttpxWorkers(Contender):
    """httpx ``AsyncClient`` with a pool of ``concurrency`` connections, same decode."""

    name = "httpx"
    requires = ("httpx", "msgspec")

    async def open(self) -> None:
        httpx = optional("httpx")
        assert httpx is not None
        self.decode = envelope_decoder().decode
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        self.client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))

    async def close(self) -> None:
        await self.client.aclose()

    async def join(self, case_id: int) -> bool:
        """One join: ``True`` when the server answered 200 with a case."""
        response = await self.client.post(self.url, content=_BODY % case_id, headers=HEADERS)
        return response.status_code == 200 and self.decode(response.content).data is not None

    async def run(self, ids: Iterable[int]) -> Tally:
        iterator = iter(ids)
        tally = [0, 0]

        async def worker() -> None:
            for case_id in iterator:  # shared: each worker takes the next id
                try:
                    tally[0 if await self.join(case_id) else 1] += 1
                except Exception:
                    tally[1] += 1

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return Tally(*tally)


# --------------------------------------------------------------------------- the ceiling


class BareProtocol(Contender):
    """No HTTP library at all: the most any Python client could get from this server here.

    ``concurrency`` keep-alive connections, each a hand-written ``asyncio.Protocol`` that
    writes the same request bytes, frames the answer by its ``Content-Length``, checks the
    status line and sends the next join at once; nothing is decoded. Its efficiency in the
    latency benchmark is the ceiling that the server's timers, the kernel and the event loop
    leave, whatever the client costs.
    """

    name = "bare asyncio.Protocol (ceiling)"

    async def open(self) -> None:
        from yarl import URL

        url = URL(self.url)
        head = (
            f"POST {url.raw_path} HTTP/1.1\r\nHost: {url.raw_host}:{url.port}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
            + "Content-Length: %d\r\n\r\n"
        )
        self.head = head.encode("ascii")
        loop = asyncio.get_running_loop()
        self.connections: list[_BareConnection] = []
        for _ in range(self.concurrency):
            _, connection = await loop.create_connection(_BareConnection, url.raw_host, url.port)
            self.connections.append(connection)

    async def close(self) -> None:
        for connection in self.connections:
            connection.transport.close()

    async def run(self, ids: Iterable[int]) -> Tally:
        loop = asyncio.get_running_loop()
        tally = [0, 0]
        source = iter(ids)
        done = loop.create_future()
        busy = [0]

        def send_next(connection: _BareConnection) -> None:
            case_id = next(source, None)
            if case_id is None:
                if busy[0] == 0 and not done.done():
                    done.set_result(None)
                return
            body = _BODY % case_id
            busy[0] += 1
            connection.transport.write(self.head % len(body) + body)

        def answered(connection: _BareConnection, ok: bool) -> None:
            busy[0] -= 1
            tally[0 if ok else 1] += 1
            send_next(connection)

        for connection in self.connections:
            connection.on_answer = answered
            send_next(connection)
        await done
        return Tally(*tally)


class _BareConnection(asyncio.Protocol):
    """One keep-alive connection of :class:`BareProtocol`: frames answers, reports each."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport
        self.on_answer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = content_length(head)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            self.on_answer(self, head.startswith(b"http/1.1 200"))


CONTENDERS: dict[str, type[Contender]] = {
    cls.name: cls
    for cls in (
        OursJoinMany,
        OursGather,
        RawAiohttp,
        RawAiohttpGather,
        HttpxWorkers,
        BareProtocol,
    )
}
