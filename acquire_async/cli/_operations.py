"""`acquire-async message`, `reject` and `close`: one call per case, in turn.

Each runs through `._run.run_each`: one JSON line per case on stdout, the account-wide
stop rule and the graceful Ctrl-C of `join`. `message` never sends its text twice.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from acquire_async._checks import check_text, validate_case_id
from acquire_async._client import AcquireClient
from acquire_async._engine import Response
from acquire_async._retry import NOT_ACTED_STATUSES
from acquire_async.errors import APIError, APIStatusError, InternalServerError
from acquire_async.models import Case, CloseResult, Message

from ._account import account_options, make_client
from ._common import Command, exit_status, fail
from ._input import IdSource, argument_lines, parse_ids
from ._output import PipeConsole, Tally
from ._run import GRACE, Stopper, run_each

MAX_TEXT = 1 << 20
"""Bytes of message text read from stdin, at most."""

MAYBE_POSTED = (
    "the message may have been posted; it was not sent again: check the chat before sending "
    "it again"
)
"""The hint of a failed `message` whose text may have reached Acquire."""

_CANCELLED = "interrupted before the answer came: it may or may not have happened"


# --------------------------------------------------------------------------- arguments


def case_ids(arguments: tuple[str, ...]) -> list[int]:
    """The `CASE_ID` arguments as ints; a one-line error (exit 2) for any that is not a
    positive 64-bit integer, before anything is sent.

    Example: `case_ids(("1684", "1685"))` is `[1684, 1685]`.
    """
    ids: list[int] = []
    for item in parse_ids(argument_lines(arguments)):
        try:
            ids.append(validate_case_id(item))
        except (TypeError, ValueError):
            shown = repr(item) if isinstance(item, str) else str(item)
            fail(f"CASE_ID must be a positive integer, not {shown}")
    if not ids:
        fail("give at least one CASE_ID")
    return ids


def text_option(name: str, value: str | None) -> str | None:
    """`value` checked as the SDK checks it (not empty, UTF-8), errors naming `name`."""
    if value is None:
        return None
    try:
        return check_text(name, value)
    except ValueError as exc:
        fail(str(exc))


def message_text(text: str) -> str:
    """`TEXT`, or with `-` the text on stdin (UTF-8, at most `MAX_TEXT` bytes,
    the line ends at its end dropped); a one-line error (exit 2) when empty or unreadable."""
    if text != "-":
        return text_option("TEXT", text) or ""
    try:
        raw = sys.stdin.buffer.read(MAX_TEXT + 1)
    except OSError as exc:
        fail(f"cannot read TEXT from stdin: {exc.strerror or exc}")
    if len(raw) > MAX_TEXT:
        fail(f"TEXT on stdin is longer than {MAX_TEXT:,} bytes")
    try:
        read = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        fail("TEXT on stdin is not UTF-8")
    # `echo hi |` and an editor's file end with a line end the visitor should not see.
    read = read.rstrip("\r\n")
    if not read:
        fail("TEXT on stdin is empty")
    return read


# --------------------------------------------------------------------------- lines


def may_have_happened(error: BaseException) -> bool:
    """Whether the call that failed with `error` may have happened all the same.

    `True` after a cancellation, a connection lost after the request left, a timeout, an
    answer that did not decode, or a server error (5xx but 503); `False` when nothing
    reached the server (`request_sent` is false) or the server answered that it refused
    (a 4xx, a 503, an error code).
    """
    if isinstance(error, asyncio.CancelledError):
        return True
    if not isinstance(error, APIError) or not error.request_sent:
        return False
    if isinstance(error, APIStatusError):
        return isinstance(error, InternalServerError) and error.status not in NOT_ACTED_STATUSES
    return True


def _failure(case_id: int, error: BaseException) -> dict[str, Any]:
    cancelled = isinstance(error, asyncio.CancelledError)
    return {
        "case_id": case_id,
        "ok": False,
        "error": type(error).__name__,
        "message": _CANCELLED if cancelled else str(error),
        # Unknown after a cancellation, so true: false is only for what provably never left.
        "request_sent": cancelled or (isinstance(error, APIError) and error.request_sent),
        "attempts": getattr(error, "attempts", None),
    }


def message_line(
    case_id: int, response: Response[Message] | None, error: BaseException | None
) -> dict[str, Any]:
    """The JSON line of `message`: the posted message, or the error and whether the
    message may have been posted all the same (`maybe_posted`, with a `hint`)."""
    if response is None:
        failure = _failure(case_id, error or asyncio.CancelledError())
        maybe = may_have_happened(error or asyncio.CancelledError())
        attempts = failure.pop("attempts")
        return {
            **failure,
            "maybe_posted": maybe,
            "hint": MAYBE_POSTED if maybe else None,
            "attempts": attempts,
        }
    posted = response.data
    return {
        "case_id": posted.case_id if posted.case_id is not None else case_id,
        "ok": True,
        "id": posted.id,
        "type": posted.type,
        "message": posted.message,
        "date_created": posted.date_created.isoformat() if posted.date_created else None,
        "attempts": response.attempts,
    }


def _result_line(
    case_id: int, fields: dict[str, Any], attempts: int | None, error: BaseException | None
) -> dict[str, Any]:
    if error is None:
        return {
            "case_id": case_id,
            "ok": True,
            **fields,
            "attempts": attempts,
            "error": None,
            "message": None,
            "request_sent": None,
        }
    failure = _failure(case_id, error)
    return {
        "case_id": case_id,
        "ok": False,
        **dict.fromkeys(fields),
        "attempts": failure["attempts"],
        "error": failure["error"],
        "message": failure["message"],
        "request_sent": failure["request_sent"],
    }


def reject_line(
    case_id: int, response: Response[Case] | None, error: BaseException | None
) -> dict[str, Any]:
    """The JSON line of `reject`: the case's `status`, or the error."""
    case = response.data if response is not None else None
    attempts = response.attempts if response is not None else None
    return _result_line(
        case_id, {"status": case.status if case is not None else None}, attempts, error
    )


def close_line(
    case_id: int, response: Response[CloseResult] | None, error: BaseException | None
) -> dict[str, Any]:
    """The JSON line of `close`: `forever_closed` and `left_user`, or the error."""
    result = response.data if response is not None else None
    fields = {
        "forever_closed": result.forever_closed if result is not None else None,
        "left_user": result.left_user if result is not None else None,
    }
    attempts = response.attempts if response is not None else None
    return _result_line(case_id, fields, attempts, error)


# --------------------------------------------------------------------------- the run


def run_calls(
    client: AcquireClient,
    ids: list[int],
    call: Callable[[int], Awaitable[Any]],
    line: Callable[[int, Any, BaseException | None], dict[str, Any]],
    *,
    action: str,
    noun: str,
) -> Tally:
    """Call `call` for each of `ids` in turn (`run_each`) with Ctrl-C handled; the
    account-wide error, if one stopped the run, as the last line on stderr."""
    tally = Tally()
    source = IdSource(ids, threaded=False)
    stopper = Stopper(source, tally, PipeConsole(stderr=True), GRACE, noun=noun)

    async def work() -> None:
        async with client:
            await run_each(
                client, source, stopper, call, line, action=action, out=sys.stdout, tally=tally
            )

    try:
        asyncio.run(stopper.run(work()))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was installed
        tally.interrupted = True
    sys.stdout.flush()
    if tally.interrupted and tally.done + tally.cancelled < len(ids):
        click.echo(
            f"interrupted: {tally.done + tally.cancelled} of {len(ids)} cases were reported; "
            "the rest were not started",
            err=True,
        )
    if tally.fatal is not None:
        click.echo(f"acquire-async: error: {tally.fatal}", err=True)
    return tally


# --------------------------------------------------------------------------- the commands


@click.command(cls=Command)
@click.argument("case_id", metavar="CASE_ID")
@click.argument("text")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["message", "note"]),
    default="message",
    show_default=True,
    help="message: the visitor sees it; note: agents only.",
)
@click.option("--channel", help="The channel to post on (chat…); the server's default otherwise.")
@click.option("--translate-lang-key", help="A language to translate to (en…), when given.")
@account_options
def message(
    case_id: str,
    text: str,
    kind: str,
    channel: str | None,
    translate_lang_key: str | None,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
) -> None:
    """Post TEXT to the chat CASE_ID as the key's agent. TEXT - reads it from stdin.

    One JSON line on stdout. Never sent twice: if the answer is lost after the request
    left, the line says "maybe_posted": true and the command exits 1 without sending it
    again: check the chat before you do.
    """
    (target,) = case_ids((case_id,))
    channel = text_option("--channel", channel)
    translate_lang_key = text_option("--translate-lang-key", translate_lang_key)
    client = make_client(account, base_url, api_key_file)
    body = message_text(text)

    def post(case: int) -> Awaitable[Response[Message]]:
        return client.add_message_response(
            case, body, type=kind, channel=channel, translate_lang_key=translate_lang_key
        )

    lines: list[dict[str, Any]] = []

    def line(case: int, response: Any, error: BaseException | None) -> dict[str, Any]:
        lines.append(message_line(case, response, error))
        return lines[-1]

    tally = run_calls(client, [target], post, line, action="post messages", noun="message")
    if lines and lines[-1].get("maybe_posted"):
        click.echo(f"acquire-async: case {target}: {MAYBE_POSTED}", err=True)
    sys.exit(exit_status(tally))


@click.command(cls=Command)
@click.argument("case_ids_", nargs=-1, required=True, metavar="CASE_ID...")
@account_options
def reject(
    case_ids_: tuple[str, ...],
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
) -> None:
    """Reject chats for the key's agent: one JSON line per case on stdout."""
    ids = case_ids(case_ids_)
    client = make_client(account, base_url, api_key_file)
    tally = run_calls(
        client,
        ids,
        client.reject_chat_response,
        reject_line,
        action="reject chats",
        noun="request",
    )
    sys.exit(exit_status(tally))


@click.command(cls=Command)
@click.argument("case_ids_", nargs=-1, required=True, metavar="CASE_ID...")
@click.option("--closing-state", help='The closing state (default "handled").')
@click.option("--no-archive", is_flag=True, help='Send archive: "no" (default "yes").')
@click.option(
    "--ask-feedback/--no-ask-feedback", default=None, help="Send askFeedback (not sent if unset)."
)
@click.option("--leave-only", is_flag=True, help="Send leaveOnly: true.")
@click.option("--force-close", is_flag=True, help="Send forceClose: true.")
@click.option(
    "--leave-event/--no-leave-event", default=None, help="Send leaveEvent (not sent if unset)."
)
@account_options
def close(
    case_ids_: tuple[str, ...],
    closing_state: str | None,
    no_archive: bool,
    ask_feedback: bool | None,
    leave_only: bool,
    force_close: bool,
    leave_event: bool | None,
    account: str | None,
    base_url: str | None,
    api_key_file: Path | None,
) -> None:
    """Close chats: one JSON line per case on stdout. Optional flags are sent only when given."""
    ids = case_ids(case_ids_)
    # The client always sends closingState; "handled" is its default, and Acquire's example.
    state = text_option("--closing-state", closing_state)
    client = make_client(account, base_url, api_key_file)

    def close_one(case: int) -> Awaitable[Response[CloseResult]]:
        return client.close_chat_response(
            case,
            archive=not no_archive,
            ask_feedback=ask_feedback,
            leave_only=True if leave_only else None,
            force_close=True if force_close else None,
            leave_event=leave_event,
            closing_state=state if state is not None else "handled",
        )

    tally = run_calls(client, ids, close_one, close_line, action="close chats", noun="request")
    sys.exit(exit_status(tally))
