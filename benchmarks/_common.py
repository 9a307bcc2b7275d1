"""What every section shares: the run configuration, the payloads, optional libraries, loops.

Nothing here measures anything; it only builds inputs and runs coroutines on a chosen loop.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "FIXTURE",
    "LoopFactory",
    "REPO_ROOT",
    "Config",
    "join_payload",
    "list_payload",
    "loop_variants",
    "missing_note",
    "optional",
    "run_on_loop",
]

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "join_chat_response.json"
LIST_SIZE = 50


@dataclass(frozen=True)
class Config:
    """Sizes of one run. :meth:`full` is the contract of the issue; :meth:`tiny` is ``--smoke``."""

    smoke: bool
    repeats: int
    decode_sample_seconds: float  # the length of one decode sample (loops are calibrated to it)
    warmup_joins: int  # joins each network contender makes before it is timed
    throughput_joins: int = 20_000
    throughput_concurrency: int = 64
    latency_joins: int = 5_000
    latency_concurrency: int = 100
    latency_delay: float = 0.020
    memory_joins: int = 200_000
    memory_concurrency: int = 64

    @classmethod
    def full(cls, repeats: int = 5) -> Config:
        """The issue's sizes, ``repeats`` samples per contender."""
        return cls(smoke=False, repeats=repeats, decode_sample_seconds=0.2, warmup_joins=1_000)

    @classmethod
    def tiny(cls) -> Config:
        """Tiny sizes and one repeat: proves the code runs end to end, measures nothing."""
        return cls(
            smoke=True,
            repeats=1,
            decode_sample_seconds=0.002,
            warmup_joins=32,
            throughput_joins=300,
            latency_joins=300,
            memory_joins=2_000,
        )


# --------------------------------------------------------------------------- payloads


@cache
def _fixture_tree() -> Any:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def _compact(tree: Any) -> bytes:
    return json.dumps(tree, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@cache
def join_payload() -> bytes:
    """The seed join response, re-encoded compactly (no whitespace): what the server sends."""
    return _compact(_fixture_tree())


@cache
def list_payload(size: int = LIST_SIZE) -> bytes:
    """``{"data": [case x size]}`` built from the seed case."""
    return _compact({"data": [_fixture_tree()["data"]] * size})


# --------------------------------------------------------------------------- libraries


def optional(name: str) -> ModuleType | None:
    """Import ``name`` if it is installed, else ``None`` (the contender is then skipped)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def missing_note(*names: str) -> str | None:
    """A skip note naming the first of ``names`` that is not installed, or ``None``."""
    for name in names:
        if optional(name) is None:
            return f"skipped: {name} is not installed"
    return None


# --------------------------------------------------------------------------- event loops

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_variants() -> dict[str, LoopFactory | None]:
    """The event loops to run the network contenders on; ``None`` where uvloop is missing."""
    uvloop = optional("uvloop")
    return {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop if uvloop is not None else None,
    }


def run_on_loop(loop_factory: LoopFactory, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh loop from ``loop_factory``, then close it."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())  # type: ignore[arg-type]
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
