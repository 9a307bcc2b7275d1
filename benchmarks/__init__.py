"""Benchmarks of acquire_async against the alternatives: run ``python -m benchmarks``.

Five sections, each a module with a ``run(config) -> Section`` function:

- :mod:`benchmarks.decode`: decoding the join payload (and a 50-case list) with our msgspec
  models vs ``json``, ``orjson``, pydantic v2 and untyped msgspec.
- :mod:`benchmarks.throughput`: joins per second against a fast local server in another
  process, ours vs a raw aiohttp loop vs httpx, on asyncio's loop and on uvloop.
- :mod:`benchmarks.latency`: how close a client gets to the ideal concurrency / latency when
  the server answers after 20 ms.
- :mod:`benchmarks.memory`: peak RSS growth while joining 200,000 ids from a generator, lazy
  ``join_many`` vs a naive ``asyncio.gather``, each in a fresh process.
- :mod:`benchmarks.scaleout`: 1 vs 2 client processes, ``RedisThrottle``'s cost against
  ``LocalThrottle``, the worker fleet draining a queue, and a shared rate limit's accuracy.

Results go to stdout and ``benchmarks/results/latest.{md,json}`` (see :mod:`benchmarks._report`).
"""
