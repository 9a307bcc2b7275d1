"""What every command that calls Acquire shares: `--account`, `--base-url`,
`--api-key-file`, the key, and the client built from them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from acquire_async._client import AcquireClient

from ._common import fail, in_flags, reason

F = TypeVar("F", bound=Callable[..., Any])


def account_options(command: F) -> F:
    """Add `--account`, `--base-url` and `--api-key-file` to a command.

    Example:
        ```python
        @click.command()
        @account_options
        def reject(account, base_url, api_key_file): ...
        ```
    """
    for option in reversed(
        (
            click.option(
                "--account",
                envvar="ACQUIRE_ACCOUNT_ID",
                help="Account id (env ACQUIRE_ACCOUNT_ID).",
            ),
            click.option(
                "--base-url",
                envvar="ACQUIRE_BASE_URL",
                help="API base URL instead of https://ACCOUNT.acquire.io/api/v1 "
                "(env ACQUIRE_BASE_URL).",
            ),
            click.option(
                "--api-key-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="File holding the API key (default: env ACQUIRE_API_KEY).",
            ),
        )
    ):
        command = option(command)
    return command


def read_key(path: Path | None) -> str:
    """The API key: the stripped text of `path`, else `ACQUIRE_API_KEY`; a one-line
    error (exit 2) when there is none or the file cannot be read."""
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the API key file {str(path)!r}: {reason(exc)}")
        if not key:
            fail(f"the API key file {str(path)!r} is empty")
        return key
    key = os.environ.get("ACQUIRE_API_KEY", "")
    if not key:
        fail("no API key: set ACQUIRE_API_KEY or pass --api-key-file")
    return key


def make_client(
    account: str | None, base_url: str | None, api_key_file: Path | None, **options: Any
) -> AcquireClient:
    """An `AcquireClient` from the account options (and `options` for the client); a
    bad value is a one-line error naming the flag (exit 2). The key is never printed.

    Example:
        ```python
        client = make_client(account, base_url, api_key_file, max_connections=1)
        ```
    """
    try:
        return AcquireClient(account or None, read_key(api_key_file), base_url=base_url, **options)
    except (TypeError, ValueError) as exc:
        fail(in_flags(str(exc), "--api-key-file" if api_key_file else "ACQUIRE_API_KEY"))
