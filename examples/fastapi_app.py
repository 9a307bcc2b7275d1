"""A FastAPI app that joins, rejects and closes chats for its callers; routes return cases.

Configuration, from the environment:

    ACQUIRE_API_KEY      the API key (its agent joins)
    ACQUIRE_ACCOUNT_ID   your account id (https://{id}.acquire.io), or instead:
    ACQUIRE_BASE_URL     an API base URL (the emulator: http://127.0.0.1:8081/api/v1)

Run it with `uvicorn examples.fastapi_app:app` (or `fastapi run examples/fastapi_app.py`),
then `curl -X POST http://127.0.0.1:8000/cases/1684/join`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse

from acquire_async import AcquireClient, Case, CloseResult
from acquire_async.errors import (
    AlreadyJoinedError,
    APIError,
    APITimeoutError,
    NotFoundError,
    RateLimitError,
)

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, AcquireClient]]:
    """One client for the whole app, shared by every request, closed at shutdown."""
    async with AcquireClient() as client:  # ACQUIRE_API_KEY, ACQUIRE_BASE_URL or _ACCOUNT_ID
        yield {"acquire": client}  # the lifespan state: request.state.acquire


app = FastAPI(title="Acquire chats", lifespan=lifespan)


def acquire(request: Request) -> AcquireClient:
    client: AcquireClient = request.state.acquire
    return client


Client = Annotated[AcquireClient, Depends(acquire)]
CaseId = Annotated[int, Path(gt=0, lt=2**63)]  # what Acquire takes: a 422 before any call


@app.exception_handler(APIError)
async def acquire_failed(request: Request, exc: APIError) -> JSONResponse:
    """Acquire's failures as HTTP answers. The details go to the log (an SDK error's message
    never holds the API key, but it names your account's URL): callers get a fixed text."""
    if isinstance(exc, NotFoundError):
        return JSONResponse({"detail": "no such case"}, status_code=404)
    if isinstance(exc, AlreadyJoinedError):
        return JSONResponse({"detail": "already joined"}, status_code=409)
    if isinstance(exc, RateLimitError):
        retry = {"Retry-After": str(math.ceil(exc.retry_after))} if exc.retry_after else None
        return JSONResponse({"detail": "rate limited"}, status_code=429, headers=retry)
    if isinstance(exc, APITimeoutError):
        return JSONResponse({"detail": "Acquire did not answer in time"}, status_code=504)
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "Acquire failed"}, status_code=502)


@app.post("/cases/{case_id}/join")
async def join(case_id: CaseId, client: Client) -> Case:
    return await client.join_chat(case_id)


@app.post("/cases/{case_id}/reject")
async def reject(case_id: CaseId, client: Client) -> Case:
    return await client.reject_chat(case_id)


@app.post("/cases/{case_id}/close")
async def close(case_id: CaseId, client: Client) -> CloseResult:
    return await client.close_chat(case_id)
