"""Optional integrations, each behind its own extra.

- `acquire_async.contrib.redis`: `RedisThrottle`, one
  rate limit and one 429 cool-down shared by every process of an account
  (`pip install 'acquire-async[redis]'`).

Importing this package imports nothing optional; each module imports its own dependency.
"""
