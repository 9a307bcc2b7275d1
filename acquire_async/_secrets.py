"""Holders that keep the API key and webhook secrets out of `repr`, tracebacks and logs.

Error trackers (Sentry and friends) capture the `repr` of every local in every frame of a
traceback. So the key never sits in a plain `str` local or in a plain header dict: it lives in
a `Secret`, and the header value sent on the wire is a `RedactedStr`, a `str`
whose `repr` hides it while aiohttp still writes the real text.
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar

__all__ = ["RedactedStr", "Redactor", "Secret", "validate_api_key"]

_REDACTED = "'**********'"

T = TypeVar("T", str, bytes)


class RedactedStr(str):
    """A `str` whose `repr` is redacted. Its value (what aiohttp sends) is unchanged."""

    __slots__ = ()

    def __repr__(self) -> str:
        return _REDACTED

    def __reduce__(self) -> NoReturn:
        raise TypeError("a redacted secret cannot be pickled")


class Secret(Generic[T]):
    """A secret (the API key: `Secret[str]`; a webhook's HMAC key: `Secret[bytes]`),
    revealed only by `reveal`.

    `repr`, `str` and `vars()` of the holder never show the value; it cannot be pickled.
    """

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value: T = value

    def reveal(self) -> T:
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


def validate_api_key(secret: Secret[str]) -> Secret[str]:
    """Check the key inside `secret`; return it. Messages never contain the key.

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


_MASK = "**********"
# A key cut short (an excerpt of an echoed body) still leaks that much of it: any prefix at
# least this long is masked too.
_MIN_PREFIX = 8


class Redactor:
    """Masks one secret, and the ways servers re-encode it, in text the SDK surfaces.

    A server that echoes the key ("Invalid API key: …", an echo endpoint behind a wrong
    `base_url`) would otherwise put it in an error's message, `body`, logs and the CLI's
    output. The variants covered: the key as is, JSON-escaped (`\\"`, `\\/`), as Python's
    `repr` writes it, percent-encoded, and any prefix of 8 characters or more (an excerpt
    cut inside the key). Keys shorter than 4 characters are not masked: every message would
    be riddled with masks, and no real key is that short.
    """

    __slots__ = ("_bytes", "_prefixes", "_texts")

    def __init__(self, secret: Secret[str]) -> None:
        from urllib.parse import quote

        texts: set[str] = set()
        prefixes: list[str] = []
        if len(secret.reveal()) >= 4:
            texts = {
                secret.reveal(),
                secret.reveal().replace("\\", "\\\\").replace('"', '\\"'),
                secret.reveal().replace("\\", "\\\\").replace('"', '\\"').replace("/", "\\/"),
                repr(secret.reveal())[1:-1],
                quote(secret.reveal(), safe=""),
            }
            prefixes = [
                secret.reveal()[:n] for n in range(len(secret.reveal()) - 1, _MIN_PREFIX - 1, -1)
            ]
        # Longest first, so a variant that contains another is masked whole.
        self._texts = tuple(sorted(texts, key=len, reverse=True)) + tuple(prefixes)
        self._bytes = tuple(text.encode("utf-8", "replace") for text in self._texts)
        self._prefixes = len(prefixes)

    def __repr__(self) -> str:
        return "Redactor(**********)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Redactor cannot be pickled")

    def text(self, value: str) -> str:
        """`value` with every variant of the secret masked."""
        for needle in self._texts:
            if needle in value:
                value = value.replace(needle, _MASK)
        return value

    def data(self, value: bytes) -> bytes:
        """`value` (a body excerpt) with every variant of the secret masked."""
        mask = _MASK.encode()
        for needle in self._bytes:
            if needle in value:
                value = value.replace(needle, mask)
        return value

    def scrub(self, error: BaseException) -> bool:
        """Mask the secret in an exception's `args` and in its text and bytes attributes.

        Returns `True` when something was masked: the caller then also drops what still
        holds the raw text (the traceback's frames keep the response body in their locals).
        """
        if not self._texts:
            return False
        masked = False
        args = tuple(self._value(arg) for arg in error.args)
        if args != error.args:
            error.args = args
            masked = True
        for name, value in list(vars(error).items()):
            if isinstance(value, (str, bytes)):
                clean = self._value(value)
                if clean != value:
                    setattr(error, name, clean)
                    masked = True
        notes = getattr(error, "__notes__", None)
        if isinstance(notes, list):
            clean_notes = [self._value(note) for note in notes]
            if clean_notes != notes:
                notes[:] = clean_notes
                masked = True
        return masked

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.data(value)
        return value
