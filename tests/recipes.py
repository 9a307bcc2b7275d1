"""Running the recipes of examples/ in tests: their environment, loading, stopping.

Example:

    env = environment(fake, ACQUIRE_WORKERS="3")
    process = await asyncio.create_subprocess_exec(sys.executable, str(EXAMPLES / "x.py"), env=env)
    try:
        ...
    finally:
        await stop(process)
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from acquire_async.testing import FakeAcquire

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def environment(fake: FakeAcquire, **extra: str) -> dict[str, str]:
    """The process environment of a recipe run against `fake` (unbuffered, so each line it
    prints arrives as it is printed)."""
    env = {**os.environ, "ACQUIRE_API_KEY": fake.api_key, "ACQUIRE_BASE_URL": fake.base_url}
    env.pop("ACQUIRE_ACCOUNT_ID", None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def load(name: str) -> ModuleType:
    """Import `examples/{name}.py` by its path, as `uvicorn` would by its module name."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def stop(process: asyncio.subprocess.Process) -> None:
    """Kill a recipe's process that is still running (a failed test), and reap it."""
    if process.returncode is None:
        process.kill()
        await process.wait()
