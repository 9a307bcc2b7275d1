"""What every command shares: exit statuses, the one-line error, the quiet broken pipe."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ._output import printable

if TYPE_CHECKING:
    from ._output import Tally

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command that a closed pipe stopped."""


def fail(message: str) -> NoReturn:
    """One line `acquire-async: error: …` on stderr, then exit with status 2."""
    click.echo(f"acquire-async: error: {printable(message)}", err=True)
    sys.exit(EXIT_USAGE)


def exit_status(tally: Tally) -> int:
    """2 when the run stopped on an account-wide error, else 130 after Ctrl-C, else 1 when
    an id failed, else 0."""
    if tally.fatal is not None:
        return EXIT_USAGE
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed else EXIT_OK


def reason(exc: BaseException) -> str:
    """A short reason for a failed read: `exc`'s OS message, without the path."""
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


# The library's messages name its parameters; the command's user knows its flags.
_FLAG_WORDS = (
    (
        re.compile(r"\(argument or env ACQUIRE_ACCOUNT_ID\)"),
        "(--account or env ACQUIRE_ACCOUNT_ID)",
    ),
    (
        re.compile(r";? ?pass (?:the key as )?api_key\b"),
        "; give the key in ACQUIRE_API_KEY or --api-key-file",
    ),
    (re.compile(r"\bbase_url\b"), "--base-url"),
    (re.compile(r"\baccount_id\b"), "--account"),
    (re.compile(r"\bapi_key\b"), "the API key in {key}"),
    (re.compile(r"\bjoin_method\b"), "--method"),
    (re.compile(r"\bmax_connections\b"), "--concurrency"),
)


def in_flags(message: str, key_source: str) -> str:
    """A library message about `AcquireClient`'s arguments, worded with the CLI's flags.

    Example: `"base_url must not have a query"` becomes `"--base-url must not have a query"`.
    """
    for pattern, words in _FLAG_WORDS:
        message = pattern.sub(words.replace("{key}", key_source), message)
    return message


class Command(click.Command):
    """A click command whose usage errors (a bad value, a missing argument, an unknown flag)
    are one line `acquire-async: error: …` with exit status 2, like the command's own
    errors, instead of click's usage block. Example:

    ```text
    @click.command(cls=Command)
    def message(...): ...
    ```
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(exc.format_message())


class Group(click.Group):
    """A click group whose commands end quietly on a closed pipe (`… | head -1`) or a
    late Ctrl-C, instead of a traceback or click's `Aborted!`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet()
            sys.exit(EXIT_BROKEN_PIPE)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)


def _quiet() -> None:
    # Whatever is still buffered for a closed pipe would fail again at exit, with an
    # "Exception ignored" message: send it nowhere.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (AttributeError, OSError, ValueError):
                continue
    finally:
        os.close(devnull)
