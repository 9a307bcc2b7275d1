"""The `acquire-async` command: bulk joins from a shell, the emulator, and the demo.

Installed with the `cli` extra (`pip install 'acquire-async[cli]'`), so the library itself
stays lean. Commands:

- `join CASE_ID… | --from FILE`: join through `join_many`; one JSON line per outcome on
  stdout, a progress bar on stderr when it is a terminal, a summary at the end.
- `message CASE_ID TEXT`: post one message (never sent twice); one JSON line.
- `reject CASE_ID…`, `close CASE_ID…`: one call per case, in turn; one JSON line each.
- `serve`: the emulator (`acquire_async.testing.FakeAcquire`) for manual testing.
- `demo`: the emulator with 1,000 waiting cases and light faults, joined over real HTTP;
  `demo bot`: the webhook loop on the emulator (invites delivered, the bot joins and greets).
- `bot`: receive Acquire's signed webhooks; join (and greet) the chats they announce; one
  JSON line per thing done (`_bot`).
- `enqueue`, `worker`, `results`, `queue`, `dead` (the `redis` extra too): put ids
  on a Redis queue, run worker processes that join them, read each id's result, watch the
  counts (`--wait`), list or requeue the dead letters (`_queue`).

Exit status: 0 when every case was joined (or already joined), 1 when some failed, 2 for a
usage or configuration error or an account-wide one (the key refused, the URL wrong), 130
after Ctrl-C, 141 when stdout was closed (`… | head`); a one-line message, no traceback.
The API key is read from `ACQUIRE_API_KEY` or `--api-key-file` and never printed.

Modules: `_input` (ids, the stoppable source, `--resume`), `_output` (JSON lines, the
table, the summary, safe terminal text), `_run` (a bulk run or one call per id, their
signals, the progress), `_account` (the account options, the key, the client), `_join`,
`_operations`, `_emulator`, `_bot` and `_queue` (the commands), `_common` (exit
statuses, errors).
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

import click as _click

from acquire_async._version import __version__

from ._bot import bot, demo_bot
from ._common import Group
from ._emulator import demo, serve
from ._input import load_resume, parse_ids
from ._join import join
from ._operations import close, message, reject
from ._output import Tally, summary_lines
from ._queue import dead, enqueue, queue, results, worker

__all__ = ["Tally", "load_resume", "main", "parse_ids", "summary_lines"]


@_click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@_click.version_option(__version__, prog_name="acquire-async")
def main() -> None:
    """Join, message, reject or close Acquire chats; queue joins for workers; run the emulator."""


main.add_command(join)
main.add_command(message)
main.add_command(reject)
main.add_command(close)
main.add_command(serve)
main.add_command(demo)
demo.add_command(demo_bot)
main.add_command(bot)
main.add_command(enqueue)
main.add_command(worker)
main.add_command(results)
main.add_command(queue)
main.add_command(dead)
