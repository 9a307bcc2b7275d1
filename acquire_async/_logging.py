"""`ACQUIRE_LOG`: the SDK's logging switched on without code, as `OPENAI_LOG` does.

`ACQUIRE_LOG=info` shows each retry (what failed, the attempt, the wait); `ACQUIRE_LOG=debug`
adds one record per attempt. Read once, when `acquire_async` is imported. It gives the
`acquire_async` logger a level and, if it has no handler yet, one that writes to stderr; the
root logger and other libraries' loggers are left alone. No record holds the API key.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["LOG_ENV", "setup_from_env"]

LOG_ENV = "ACQUIRE_LOG"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def setup_from_env() -> None:
    """Apply `ACQUIRE_LOG` (`debug` or `info`, any case) to the `acquire_async`
    logger; unset or empty does nothing; another value is ignored with a warning.

    Example (a shell):

    ```sh
    ACQUIRE_LOG=info python app.py   # retries show on stderr
    ```
    """
    value = os.environ.get(LOG_ENV, "").strip()
    if not value:
        return
    level = _LEVELS.get(value.lower())
    if level is None:
        warnings.warn(f"{LOG_ENV}={value[:20]!r} is not 'debug' or 'info': ignored", stacklevel=2)
        return
    logger = logging.getLogger("acquire_async")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
