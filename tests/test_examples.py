"""The recipes in examples/ run against the emulator (FakeAcquire, real sockets): the aiohttp
app as a process hit over HTTP, the FastAPI app in-process with its lifespan entered, and the
queue worker as a process stopped by a signal mid-run that accounts for every id."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from recipes import EXAMPLES, environment, load, stop

from acquire_async import AcquireClient
from acquire_async.testing import FakeAcquire, Faults

# ------------------------------------------------------------------ aiohttp.web


@pytest.mark.slow
async def test_the_aiohttp_app_joins_and_maps_errors_to_http() -> None:
    async with FakeAcquire(cases=2) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "aiohttp_app.py"),
            env=environment(fake, APP_PORT="0"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 20.0)
            found = re.search(rb"Running on (http://127\.0\.0\.1:\d+)", line)
            assert found, line
            url = found.group(1).decode()
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/cases/1000/join") as response:
                    assert response.status == 200
                    case = await response.json()
                assert case["id"] == 1000 and case["status"] == "active"
                assert any(u.get("userId") == fake.agent_id for u in case["users"])
                assert fake.is_joined(1000)
                for path, status in [
                    ("/cases/1000/join", 409),  # again: already joined
                    ("/cases/5/join", 404),  # no such case
                    (f"/cases/{2**63}/join", 400),  # beyond 64 bits: never sent
                    (f"/cases/{'9' * 5000}/join", 400),  # beyond int()'s digits: never sent
                    ("/cases/x/join", 404),  # not a number: not a route
                ]:
                    async with http.post(url + path) as response:
                        assert response.status == status, path
                        if status != 404 or "x" not in path:
                            assert "error" in await response.json()
            assert [r.case_id for r in fake.requests] == [1000, 1000, 5]
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20.0) == 0
            stderr = await process.stderr.read()
            assert b"Unclosed" not in stderr and b"Traceback" not in stderr, stderr
        finally:
            await stop(process)


# ------------------------------------------------------------------ FastAPI


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """Run the app's lifespan as an ASGI server does, and an HTTP client to call it with.

    httpx's ASGITransport sends no lifespan events; this drives the ASGI lifespan protocol
    and gives each request a copy of the lifespan's state, as uvicorn does.
    """
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    lifespan = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"

    async def with_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    try:
        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http, state
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await lifespan


async def test_the_fastapi_app_returns_cases_and_maps_errors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeAcquire(cases=3, faults=Faults(retry_after=0.01)) as fake:
        monkeypatch.setenv("ACQUIRE_API_KEY", fake.api_key)
        monkeypatch.setenv("ACQUIRE_BASE_URL", fake.base_url)
        monkeypatch.delenv("ACQUIRE_ACCOUNT_ID", raising=False)
        app = load("fastapi_app").app
        async with served(app) as (http, state):
            client = state["acquire"]
            assert isinstance(client, AcquireClient) and not client.closed

            joined = await http.post("/cases/1000/join")
            assert joined.status_code == 200
            case = joined.json()
            assert case["id"] == 1000 and case["status"] == "active"
            assert any(u.get("userId") == fake.agent_id for u in case["users"])
            assert fake.is_joined(1000)

            rejected = await http.post("/cases/1001/reject")
            assert rejected.status_code == 200 and rejected.json()["id"] == 1001
            closed = await http.post("/cases/1002/close")
            assert closed.status_code == 200
            assert closed.json()["closed"][0]["caseId"] == 1002
            assert fake.cases[1002]["status"] == "closed"

            again = await http.post("/cases/1000/join")
            assert (again.status_code, again.json()) == (409, {"detail": "already joined"})
            missing = await http.post("/cases/5/join")
            assert (missing.status_code, missing.json()) == (404, {"detail": "no such case"})
            sent = len(fake.requests)
            for bad in ("0", str(2**63), "x"):
                assert (await http.post(f"/cases/{bad}/join")).status_code == 422, bad
            assert len(fake.requests) == sent  # refused before any call

            fake.script([429] * 4)  # every attempt of the call
            limited = await http.post("/cases/1001/join")
            assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
            fake.script([400])
            with caplog.at_level(logging.WARNING, logger="example_fastapi_app"):
                refused = await http.post("/cases/1001/join")
            assert (refused.status_code, refused.json()) == (502, {"detail": "Acquire failed"})
            assert "ERROR_INVALID_INPUT" in caplog.text  # the details, in the log
            assert fake.api_key not in refused.text + caplog.text

            openapi = await http.get("/openapi.json")
            assert openapi.status_code == 200
            join_answer = openapi.json()["paths"]["/cases/{case_id}/join"]["post"]["responses"]
            schema = join_answer["200"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Case"}
        assert client.closed  # the lifespan closed it


# ------------------------------------------------------------------ the queue worker


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_the_queue_worker_stops_on_a_signal_and_accounts_for_every_id(
    signum: signal.Signals,
) -> None:
    ids = [5, 0, *range(1000, 1030)]  # 5: no such case; 0: not a case id
    async with FakeAcquire(cases=30, already_joined=[1000], faults=Faults(latency=0.3)) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "queue_worker.py"),
            *map(str, ids),
            env=environment(fake, ACQUIRE_WORKERS="3"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        records: list[dict[str, Any]] = []
        try:
            while len(records) < 5:
                line = await asyncio.wait_for(process.stdout.readline(), 20.0)
                assert line, "the example exited early"
                records.append(json.loads(line))
            process.send_signal(signum)
            rest = await asyncio.wait_for(process.stdout.read(), 20.0)
            assert await asyncio.wait_for(process.wait(), 20.0) == 0
        finally:
            await stop(process)
    records += [json.loads(line) for line in rest.splitlines()]
    summary = records.pop()
    outcomes = {record["case_id"]: record["kind"] for record in records}
    assert sorted(record["case_id"] for record in records) == sorted(ids)  # each id once
    assert summary == {"kind": "stopped", **Counter(outcomes.values())}
    assert outcomes[5] == outcomes[0] == "failed" and outcomes[1000] == "already_joined"
    assert summary["left"] > 0 and summary["joined"] > 0
    # The joins in flight at the signal finished, and no left id was ever sent.
    sent = [request.case_id for request in fake.requests]
    assert sorted(sent) == sorted(
        case_id for case_id, kind in outcomes.items() if kind != "left" and case_id != 0
    )
    assert all(request.status is not None for request in fake.requests)
    assert all(fake.is_joined(case_id) for case_id, kind in outcomes.items() if kind == "joined")


@asynccontextmanager
async def never_answering_acquire() -> AsyncIterator[tuple[str, list[int]]]:
    """An API that reads each join and never answers: its base URL and the ids it got."""
    received: list[int] = []

    async def hang(request: web.Request) -> web.Response:
        received.append((await request.json())["caseId"])
        await asyncio.Event().wait()  # until the client goes away (or the server closes)
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/v1", received
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("drain", "signals"), [("0.5", 1), ("60", 2)], ids=["drain-deadline", "second-signal"]
)
async def test_the_queue_worker_bounds_the_drain_and_reports_cut_joins_as_left(
    drain: str, signals: int
) -> None:
    # Joins that never end: after the drain deadline, or at a second signal, they are
    # cancelled and reported as left (in flight), and the process ends at once.
    ids = list(range(1000, 1010))
    async with never_answering_acquire() as (base_url, received):
        env = {**os.environ, "ACQUIRE_API_KEY": "k" * 32, "ACQUIRE_BASE_URL": base_url}
        env.update(ACQUIRE_WORKERS="3", ACQUIRE_DRAIN=drain, PYTHONUNBUFFERED="1")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "queue_worker.py"),
            *map(str, ids),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            for _ in range(400):  # until the three workers' joins are in flight (20 s)
                if len(received) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert len(received) == 3
            for _ in range(signals):
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.2)
            out = await asyncio.wait_for(process.stdout.read(), 10.0)
            assert await asyncio.wait_for(process.wait(), 10.0) == 0
        finally:
            await stop(process)
    records = [json.loads(line) for line in out.splitlines()]
    summary = records.pop()
    in_flight = sorted(r["case_id"] for r in records if r.get("in_flight"))
    assert in_flight == sorted(received)  # the three sent, then cut
    assert sorted(r["case_id"] for r in records) == ids  # each id once
    assert {r["kind"] for r in records} == {"left"}
    assert summary == {"kind": "stopped", "left": 10}
