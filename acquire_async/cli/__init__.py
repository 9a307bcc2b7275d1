"""The ``acquire-async`` command: bulk joins from a shell, the emulator, and the demo.

Installed with the ``cli`` extra (``pip install 'acquire-async[cli]'``), so the library itself
stays lean. Commands:

- ``join CASE_ID… | --from FILE``: join through ``join_many``; one JSON line per outcome on
  stdout, a progress bar on stderr when it is a terminal, a summary at the end.
- ``serve``: the emulator (``acquire_async.testing.FakeAcquire``) for manual testing.
- ``demo``: the emulator with 1,000 waiting cases and light faults, joined over real HTTP.

Exit status: 0 when every case was joined (or already joined), 1 when some failed, 2 for a
usage or configuration error (a one-line message, no traceback), 130 after Ctrl-C. The API
key is read from ``ACQUIRE_API_KEY`` or ``--api-key-file`` and never printed.

Modules: ``_input`` (ids, the reader thread, ``--resume``), ``_output`` (JSON lines, table,
summary), ``_run`` (a bulk run and its signals), ``_commands`` (the click commands).
"""

from __future__ import annotations

import sys

try:
    import click  # noqa: F401
    import rich  # noqa: F401
except ImportError:  # pragma: no cover - depends on the install
    print(
        "acquire-async: error: this command needs the 'cli' extra: "
        "pip install 'acquire-async[cli]'",
        file=sys.stderr,
    )
    sys.exit(2)

from ._commands import main
from ._input import load_resume, parse_ids, read_in_thread
from ._output import Tally, summary_lines

__all__ = ["Tally", "load_resume", "main", "parse_ids", "read_in_thread", "summary_lines"]
