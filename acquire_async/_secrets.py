"""Holders that keep the API key out of ``repr``, tracebacks and logs.

Error trackers (Sentry and friends) capture the ``repr`` of every local in every frame of a
traceback. So the key never sits in a plain ``str`` local or in a plain header dict: it lives in
a :class:`Secret`, and the header value sent on the wire is a :class:`RedactedStr`, a ``str``
whose ``repr`` hides it while aiohttp still writes the real text.
"""

from __future__ import annotations

from typing import NoReturn

__all__ = ["RedactedStr", "Secret", "validate_api_key"]

_REDACTED = "'**********'"


class RedactedStr(str):
    """A ``str`` whose ``repr`` is redacted. Its value (what aiohttp sends) is unchanged."""

    __slots__ = ()

    def __repr__(self) -> str:
        return _REDACTED

    def __reduce__(self) -> NoReturn:
        raise TypeError("a redacted secret cannot be pickled")


class Secret:
    """The API key, revealed only by :meth:`reveal`.

    ``repr``, ``str`` and ``vars()`` of the holder never show the value; it cannot be pickled.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call it only where the value is sent."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_REDACTED})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def validate_api_key(secret: Secret) -> Secret:
    """Check the key inside ``secret``; return it. Messages never contain the key.

    It takes the key already wrapped, and reads it only inside expressions, so that no frame
    of a traceback (captured with its locals, as Sentry does) holds it in a plain local.
    """
    kind = type(secret.reveal())
    if kind is not str:
        raise TypeError(f"api_key must be a str, not {kind.__name__}")
    if not secret.reveal():
        raise ValueError("api_key is empty")
    # A key is sent in a header: printable ASCII only, so CR/LF cannot split the request.
    if not (secret.reveal().isascii() and secret.reveal().isprintable()):
        raise ValueError("api_key must be printable ASCII (no CR, LF or other controls)")
    if secret.reveal() != secret.reveal().strip():
        raise ValueError("api_key has leading or trailing whitespace")
    return secret
