"""Argument checks: what a caller passes is refused early, before any I/O.

A wrong type is a `TypeError`, a wrong value a `ValueError`; both name the parameter.
Messages never echo what could be a secret (the credentials of a `base_url`).
"""

from __future__ import annotations

import inspect
import math
import re

from yarl import URL

__all__ = [
    "check_count",
    "check_hook",
    "ACQUIRE_DOMAIN",
    "MAX_ID",
    "check_base_url",
    "check_bool",
    "check_optional_bool",
    "check_optional_text",
    "check_text",
    "resolve_base_url",
    "validate_account_id",
    "validate_case_id",
]

ACQUIRE_DOMAIN = "acquire.io"
MAX_ID = 2**63 - 1

# One DNS label, ASCII only. re.ASCII matters: under IGNORECASE without it, the Kelvin sign
# "K" (U+212A) matches "k". fullmatch, not "$", so a trailing newline cannot slip through.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE | re.ASCII)


def validate_account_id(account_id: object) -> str:
    """Return `account_id` lower-cased if it is exactly one DNS label, else raise.

    It becomes the host `{account_id}.acquire.io`; anything looser would let a crafted value
    send the API key to another host.

    Examples:
        >>> validate_account_id("MyCompany")
        'mycompany'
    """
    if not isinstance(account_id, str):
        raise TypeError(f"account_id must be a str, not {type(account_id).__name__}")
    if not account_id.isascii() or _LABEL.fullmatch(account_id) is None:
        raise ValueError(
            "account_id must be one DNS label: 1-63 ASCII letters, digits or '-', "
            f"not starting or ending with '-' (got {account_id!r})"
        )
    if account_id[:4].lower() == "xn--":
        raise ValueError(f"account_id must not be an IDNA ('xn--') label (got {account_id!r})")
    return account_id.lower()


def validate_case_id(case_id: object) -> int:
    """Return `case_id` as a plain `int` if it is a positive int that fits in 64 bits.

    A `bool`, or anything that is not an `int` (`"1684"`, `1684.0`, `numpy.int64`),
    is a `TypeError`; an int out of range a `ValueError`.

    Examples:
        >>> validate_case_id(1684)
        1684
    """
    if type(case_id) is not int:
        if isinstance(case_id, bool) or not isinstance(case_id, int):
            raise TypeError(f"case_id must be an int, not {type(case_id).__name__}")
        # An int subclass (an IntEnum, say) becomes its plain value: a subclass may override
        # the comparisons below, and what is checked must be what is sent.
        case_id = int.__index__(case_id)
    if not 0 < case_id <= MAX_ID:
        raise ValueError(f"case_id must be a positive 64-bit integer (got {case_id})")
    return case_id


def resolve_base_url(account_id: str | None, base_url: str | URL | None) -> URL:
    """The API's base URL: `base_url` checked, else `https://{account_id}.acquire.io/api/v1`.

    Examples:
        >>> str(resolve_base_url("acme", None))
        'https://acme.acquire.io/api/v1'
    """
    if base_url is not None:
        return check_base_url(base_url)
    if account_id is None:
        raise ValueError(
            "account_id is required (argument or env ACQUIRE_ACCOUNT_ID) unless base_url is given"
        )
    label = validate_account_id(account_id)
    host = f"{label}.{ACQUIRE_DOMAIN}"
    url = URL.build(scheme="https", host=host, path="/api/v1")
    if url.host != host:  # defence in depth: the label check above should make this impossible
        raise ValueError(f"account_id {account_id!r} does not make the host {host!r}")
    return url


def check_base_url(base_url: object) -> URL:
    """`base_url` as a `URL` if it is a plain http(s) URL with a host, else raise.

    Messages never echo what could be a secret: credentials (anything with an `@`, refused
    before any other check, since a typo'd scheme such as `https//KEY@host` does not even
    parse as having a user part), a query or a fragment.

    Examples:
        >>> str(check_base_url("http://127.0.0.1:8080/api/v1"))
        'http://127.0.0.1:8080/api/v1'
    """
    if isinstance(base_url, URL):
        text = str(base_url)
    elif isinstance(base_url, str):
        text = base_url
    else:
        raise TypeError(f"base_url must be a str or a yarl.URL, not {type(base_url).__name__}")
    if "@" in text:
        raise ValueError(
            "base_url must not carry credentials (it contains '@'; percent-encode a real '@' "
            "in a path as %40); pass the key as api_key"
        )
    if "?" in text or "#" in text:
        raise ValueError("base_url must not have a query or a fragment")
    if not text.isprintable() or any(char.isspace() for char in text):
        raise ValueError(f"base_url must not contain whitespace or control characters ({text!r})")
    url: URL | None = None
    reason = ""
    try:
        url = URL(text) if isinstance(base_url, str) else base_url
    except ValueError as exc:  # raised outside this block: yarl's error is not chained
        reason = str(exc)
    if url is None:
        raise ValueError(f"base_url is not a valid URL: {reason} (got {text!r})")
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL with a host (got {text!r})")
    if url.user is not None or url.password is not None:  # defence in depth: no '@' above
        raise ValueError("base_url must not carry credentials; pass api_key")
    if url.query_string or url.fragment:
        raise ValueError("base_url must not have a query or a fragment")
    return url


def check_bool(name: str, value: object) -> bool:
    """`value` if it is a `bool` (not `0`/`1`, not `"yes"`), else `TypeError`.

    Examples:
        >>> check_bool("archive", True)
        True
    """
    if type(value) is not bool:
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def check_optional_bool(name: str, value: object) -> bool | None:
    """`value` if it is `None` or a `bool`, else `TypeError`.

    Examples:
        >>> check_optional_bool("ask_feedback", None) is None
        True
    """
    return None if value is None else check_bool(name, value)


def check_text(name: str, value: object) -> str:
    """`value` as a plain `str` if it is a non-empty string that UTF-8 can encode.

    A non-`str` is a `TypeError`; `""` or a lone surrogate (`"\\ud800"`, which no
    JSON body can carry) a `ValueError`.

    Examples:
        >>> check_text("text", "Hello!")
        'Hello!'
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    # A str subclass becomes its plain value: what is checked must be what is sent.
    text = str.__str__(value)
    if not text:
        raise ValueError(f"{name} must not be empty")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{name} must be encodable as UTF-8 (it holds a lone surrogate)"
            ) from None
    return text


def check_optional_text(name: str, value: object) -> str | None:
    """`value` if it is `None`, else `check_text` of it.

    Examples:
        >>> check_optional_text("channel", None) is None
        True
    """
    return None if value is None else check_text(name, value)


def check_count(name: str, value: object) -> int:
    """`value` if it is an `int` >= 1 (not a `bool`): a size, a count, a concurrency.

    Examples:
        >>> check_count("max_connections", 100)
        100
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (got {value})")
    return value


def check_delay(name: str, value: object) -> float:
    """`value` as a float if it is a finite number of seconds >= 0: a wait, a window, a
    grace period (`_config.check_seconds` is the one for timeouts, which must be > 0).

    Examples:
        >>> check_delay("retry_delay", 0)
        0.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
    return float(value)


def check_rate_limit(value: object) -> float | None:
    """`value` if it is `None` or a finite number > 0: requests per second.

    Examples:
        >>> check_rate_limit(50)
        50
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "rate_limit must be a number of requests per second or None, "
            f"not {type(value).__name__}"
        )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"rate_limit must be a finite number > 0 (got {value!r})")
    return value


def check_hook(name: str, hook: object) -> None:
    """`hook` must be `None` or a plain callable: hooks are called inline, never awaited.

    Examples:
        >>> check_hook("on_request", print)
    """
    if hook is None:
        return
    if not callable(hook):
        raise TypeError(f"{name} must be a callable or None, not {type(hook).__name__}")
    if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise TypeError(
            f"{name} must be a plain function: hooks are called inline and never awaited "
            "(schedule a task from it for async work)"
        )
