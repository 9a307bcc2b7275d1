"""Start worker processes: taskiq's own process manager, pointed at our broker factory."""

from __future__ import annotations

import os

from ._settings import WorkerSettings

__all__ = ["run_workers"]

BROKER_FACTORY = "acquire_async.worker._tasks:worker_broker"


def run_workers(settings: WorkerSettings, *, processes: int = 1, log_level: str = "INFO") -> int:
    """Run `processes` worker processes until SIGTERM or SIGINT; return the exit status.

    taskiq's process manager starts them, restarts one that dies, and on SIGTERM asks each to
    stop: a worker stops reading, finishes the chunks in hand, and exits. A chunk it read but
    did not finish (killed hard) is reclaimed by another worker after `idle_timeout`.

    Example:
        ```python
        run_workers(WorkerSettings(redis_url=url, account_id="mycompany"), processes=2)
        ```
    """
    from taskiq.cli.worker.args import WorkerArgs
    from taskiq.cli.worker.run import run_worker

    from acquire_async._checks import check_count

    if not isinstance(settings, WorkerSettings):
        raise TypeError(f"settings must be a WorkerSettings, not {type(settings).__name__}")
    check_count("processes", processes)
    if not os.environ.get("ACQUIRE_API_KEY"):
        raise ValueError("no API key: set ACQUIRE_API_KEY (worker processes read it from there)")
    os.environ.update(settings.to_env())
    args = WorkerArgs(
        broker=BROKER_FACTORY,
        modules=[],
        tasks_pattern=(),
        workers=processes,
        max_async_tasks=settings.chunks_per_process,
        log_level=log_level.upper(),  # type: ignore[arg-type]
        # Wait for the chunks in hand however long they take (their ack comes after).
        wait_tasks_timeout=None,
        shutdown_timeout=10,
    )
    return run_worker(args) or 0
