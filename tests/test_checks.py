"""Argument checks (``_checks``): account_id, base_url, case_id, texts and flags, refused early."""

from __future__ import annotations

import doctest
import enum

import pytest
from aioresponses import aioresponses
from payloads import JOIN_RESPONSE
from yarl import URL

import acquire_async._checks
from acquire_async import AcquireClient
from acquire_async._checks import (
    check_bool,
    check_optional_bool,
    check_optional_text,
    check_text,
    resolve_base_url,
    validate_account_id,
    validate_case_id,
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACQUIRE_ACCOUNT_ID", raising=False)
    monkeypatch.delenv("ACQUIRE_API_KEY", raising=False)


# --------------------------------------------------------------------------- account_id

GOOD_ACCOUNTS = [
    ("acme", "acme"),
    ("my-co", "my-co"),
    ("A1", "a1"),
    ("ACME", "acme"),
    ("0", "0"),
    ("a" * 63, "a" * 63),
    ("a-b-c9", "a-b-c9"),
]

BAD_ACCOUNTS = [
    "",
    "-a",
    "a-",
    "-",
    "a" * 64,
    "xn--abc",
    "XN--abc",
    "Xn--abc",
    "a.b",
    "acme.",
    "a b",
    " acme",
    "acme ",
    "a_b",
    "\uff45vil",  # fullwidth e
    "ex\u3002com",  # ideographic full stop
    "\u212a",  # Kelvin sign: matches "k" under a non-ASCII IGNORECASE regex
    "ac\u212ame",
    "acme\n",
    "acme\r",
    "acme\x00",
    "acme/x",
    "acme@evil.com",
    "user@acme",
    "acme:80",
    "acme#",
    "acme?x",
    "\u00e9vil",  # évil
    "evil.com/",
    "localhost:1",
    "127.0.0.1",
]


@pytest.mark.parametrize(("account_id", "label"), GOOD_ACCOUNTS)
def test_validate_account_id_accepts_one_label(account_id: str, label: str) -> None:
    assert validate_account_id(account_id) == label


@pytest.mark.parametrize("account_id", BAD_ACCOUNTS)
def test_validate_account_id_refuses(account_id: str) -> None:
    with pytest.raises(ValueError, match="account_id"):
        validate_account_id(account_id)


@pytest.mark.parametrize("account_id", [None, 123, b"acme", ["acme"]])
def test_validate_account_id_non_str_is_a_type_error(account_id: object) -> None:
    with pytest.raises(TypeError, match="account_id must be a str"):
        validate_account_id(account_id)


@pytest.mark.parametrize("account_id", BAD_ACCOUNTS)
def test_client_refuses_bad_account_id_before_any_io(
    account_id: str, mock_http: aioresponses
) -> None:
    with pytest.raises(ValueError, match="account_id"):
        AcquireClient(account_id=account_id, api_key="k")
    assert mock_http.requests == {}


def test_client_non_str_account_id_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        AcquireClient(account_id=123, api_key="k")  # type: ignore[arg-type]


def test_client_without_account_id_or_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="account_id is required"):
        AcquireClient(api_key="k")


@pytest.mark.parametrize(("account_id", "label"), GOOD_ACCOUNTS[:4])
async def test_client_builds_the_acquire_url(
    account_id: str, label: str, mock_http: aioresponses
) -> None:
    url = f"https://{label}.acquire.io/api/v1/crm/messenger/chat/join"
    mock_http.post(url, body=JOIN_RESPONSE)
    async with AcquireClient(account_id=account_id, api_key="k") as client:
        assert client.base_url == f"https://{label}.acquire.io/api/v1"
        await client.join_chat(1684)
    ((method, sent),) = mock_http.requests
    assert method == "POST"
    assert sent.host == f"{label}.acquire.io"
    assert sent.scheme == "https"
    assert sent.port == 443
    assert sent.path == "/api/v1/crm/messenger/chat/join"
    assert str(sent) == url


# --------------------------------------------------------------------------- base_url


@pytest.mark.parametrize(
    ("base_url", "expected_base", "expected_join"),
    [
        (
            "http://127.0.0.1:1/prefix/api/v1",
            "http://127.0.0.1:1/prefix/api/v1",
            "http://127.0.0.1:1/prefix/api/v1/crm/messenger/chat/join",
        ),
        (
            "http://127.0.0.1:1/prefix/api/v1/",
            "http://127.0.0.1:1/prefix/api/v1",
            "http://127.0.0.1:1/prefix/api/v1/crm/messenger/chat/join",
        ),
        (
            "https://proxy.example:8443/api/v1",
            "https://proxy.example:8443/api/v1",
            "https://proxy.example:8443/api/v1/crm/messenger/chat/join",
        ),
        ("http://localhost", "http://localhost", "http://localhost/crm/messenger/chat/join"),
        (
            URL("http://127.0.0.1:8080/x"),
            "http://127.0.0.1:8080/x",
            "http://127.0.0.1:8080/x/crm/messenger/chat/join",
        ),
    ],
)
async def test_base_url_keeps_its_path_prefix(
    base_url: str | URL, expected_base: str, expected_join: str, mock_http: aioresponses
) -> None:
    mock_http.post(expected_join, body=JOIN_RESPONSE)
    async with AcquireClient(base_url=base_url, api_key="k") as client:
        assert client.base_url == expected_base
        case = await client.join_chat(1684)
    assert case.id == 1684
    assert [str(url) for _, url in mock_http.requests] == [expected_join]


def test_base_url_replaces_account_id() -> None:
    client = AcquireClient("acme", "k", base_url="http://127.0.0.1:1/api/v1")
    assert client.base_url == "http://127.0.0.1:1/api/v1"


@pytest.mark.parametrize(
    ("base_url", "match"),
    [
        ("http://user:pw@127.0.0.1/api/v1", "credentials"),
        ("http://user@127.0.0.1/api/v1", "credentials"),
        ("http://127.0.0.1/api/v1?key=1", "query"),
        ("http://127.0.0.1/api/v1#frag", "fragment"),
        ("ftp://127.0.0.1/api/v1", "http"),
        ("file:///etc/passwd", "http"),
        ("127.0.0.1/api/v1", "http"),
        ("http:///api/v1", "host"),
        ("", "http"),
    ],
)
def test_base_url_refused(base_url: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AcquireClient(base_url=base_url, api_key="k")


SECRET = "sk-LEAKCANARY-7f3a9"


@pytest.mark.parametrize(
    "base_url",
    [
        f"ftp://{SECRET}@acme.example/api/v1",
        f"https//{SECRET}@acme.example/api/v1",  # yarl: a relative path, no user part
        f"https:/{SECRET}@acme.example/api/v1",
        f"https:{SECRET}@acme.example/api/v1",
        f"{SECRET}@acme.example/api/v1",
        f"//{SECRET}@acme.example/api/v1",
        f"mailto:{SECRET}@acme.example",
        f"http://{SECRET}@acme.example:notaport/api/v1",  # yarl refuses it while parsing
        f"http://{SECRET}@[::1/api/v1",
        f"http://user:{SECRET}@/api/v1",
        f"http://{SECRET}:x@acme.example/api/v1",
        f"https://{SECRET}@acme.example/api/v1",
        f"https://{SECRET}@acme.example/api/v1?x=1",
        f"ftp://acme.example/api/v1?key={SECRET}",
        f"https//acme.example/api/v1#{SECRET}",
        f"https://sk/{SECRET}@acme.example/api/v1",  # a key with '/' in it: host "sk"
        URL(f"https://{SECRET}@acme.example/api/v1"),
        URL.build(scheme="ftp", user=SECRET, host="acme.example"),
        URL(f"https//{SECRET}@acme.example/api/v1"),
    ],
)
def test_base_url_never_echoes_credentials(base_url: str | URL) -> None:
    with pytest.raises(ValueError) as info:
        AcquireClient(base_url=base_url, api_key="k")
    exc = info.value
    shown = [str(exc), repr(exc), *map(str, exc.args), *map(repr, exc.args)]
    assert not [text for text in shown if SECRET in text]
    assert exc.__cause__ is None and exc.__context__ is None


def test_base_url_with_credentials_says_so_before_the_scheme() -> None:
    for text in (f"ftp://{SECRET}@host/x", f"https//{SECRET}@host/x", f"{SECRET}@host"):
        with pytest.raises(ValueError, match="credentials") as info:
            AcquireClient(base_url=text, api_key="k")
        assert "pass the key as api_key" in str(info.value)


def test_base_url_errors_still_show_a_harmless_url() -> None:
    with pytest.raises(ValueError, match="http\\(s\\) URL with a host") as info:
        AcquireClient(base_url="https//acme.example/api/v1", api_key="k")
    assert "'https//acme.example/api/v1'" in str(info.value)
    with pytest.raises(ValueError, match="not a valid URL") as info:
        AcquireClient(base_url="http://acme.example:notaport/api/v1", api_key="k")
    assert "notaport" in str(info.value)
    assert info.value.__context__ is None


@pytest.mark.parametrize("base_url", ["http://acme.example/a b", "http://acme\r\n.example/x"])
def test_base_url_with_whitespace_or_controls_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="whitespace or control"):
        AcquireClient(base_url=base_url, api_key="k")


@pytest.mark.parametrize("base_url", [b"http://acme.example", 42, ["http://acme.example"]])
def test_base_url_of_the_wrong_type_is_a_type_error(base_url: object) -> None:
    with pytest.raises(TypeError, match=r"base_url must be a str or a yarl\.URL"):
        AcquireClient(base_url=base_url, api_key="k")  # type: ignore[arg-type]


async def test_base_url_with_a_percent_encoded_at_sign_is_fine(mock_http: aioresponses) -> None:
    url = "http://127.0.0.1:1/team%40acme/api/v1"
    async with AcquireClient(base_url=url, api_key="k") as client:
        assert client.base_url.startswith("http://127.0.0.1:1/team")


# --------------------------------------------------------------------------- case_id


@pytest.mark.parametrize("case_id", [True, False, "1", 1.0, None, b"1", [1]])
def test_validate_case_id_type_error(case_id: object) -> None:
    with pytest.raises(TypeError, match="case_id must be an int"):
        validate_case_id(case_id)


@pytest.mark.parametrize("case_id", [0, -1, 2**63, 2**64, -(2**63)])
def test_validate_case_id_value_error(case_id: int) -> None:
    with pytest.raises(ValueError, match="positive 64-bit"):
        validate_case_id(case_id)


@pytest.mark.parametrize("case_id", [1, 1684, 2**63 - 1])
def test_validate_case_id_accepts(case_id: int) -> None:
    assert validate_case_id(case_id) == case_id


class _Case(enum.IntEnum):
    SUPPORT = 1684


class _LyingInt(int):
    # Claims to be in range whatever its value: the comparisons are reflected to it.
    def __lt__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True

    def __le__(self, other: object) -> bool:
        return True

    def __ge__(self, other: object) -> bool:
        return True


def test_validate_case_id_checks_and_returns_the_plain_value_of_an_int_subclass() -> None:
    checked = validate_case_id(_Case.SUPPORT)
    assert checked == 1684 and type(checked) is int
    for value in (-5, 0, 2**63):
        with pytest.raises(ValueError, match="positive 64-bit"):
            validate_case_id(_LyingInt(value))


# --------------------------------------------------------------------------- base URL, directly


def test_resolve_base_url() -> None:
    assert str(resolve_base_url("ACME", None)) == "https://acme.acquire.io/api/v1"
    assert str(resolve_base_url("acme", "http://127.0.0.1:1/x")) == "http://127.0.0.1:1/x"
    with pytest.raises(ValueError, match="account_id is required"):
        resolve_base_url(None, None)


# --------------------------------------------------------------------------- texts and flags


@pytest.mark.parametrize("value", ["Hello!", " ", "héllo 👋", "line\nbreak", "x" * 100_000])
def test_check_text_accepts_any_non_empty_str(value: str) -> None:
    assert check_text("text", value) == value


class _Str(str):
    def __str__(self) -> str:
        return "something else"


def test_check_text_returns_the_plain_value_of_a_str_subclass() -> None:
    checked = check_text("text", _Str("hi"))
    assert checked == "hi" and type(checked) is str


@pytest.mark.parametrize("value", [None, b"hi", 1, ["hi"]])
def test_check_text_of_a_non_str_is_a_type_error_naming_it(value: object) -> None:
    with pytest.raises(TypeError, match=r"^closing_state must be a str, not "):
        check_text("closing_state", value)


@pytest.mark.parametrize(
    ("value", "match"),
    [("", "^text must not be empty$"), ("a\ud800b", "^text must be encodable as UTF-8")],
)
def test_check_text_refuses_empty_and_lone_surrogates(value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_text("text", value)


def test_check_optional_text() -> None:
    assert check_optional_text("channel", None) is None
    assert check_optional_text("channel", "chat") == "chat"
    with pytest.raises(ValueError, match="channel must not be empty"):
        check_optional_text("channel", "")
    with pytest.raises(TypeError, match="channel must be a str"):
        check_optional_text("channel", 1)


@pytest.mark.parametrize("value", [True, False])
def test_check_bool_accepts_bools(value: bool) -> None:
    assert check_bool("archive", value) is value
    assert check_optional_bool("archive", value) is value


@pytest.mark.parametrize("value", [1, 0, "yes", "no", None, 1.0])
def test_check_bool_refuses_look_alikes(value: object) -> None:
    with pytest.raises(TypeError, match=r"^archive must be a bool, not "):
        check_bool("archive", value)


def test_check_optional_bool() -> None:
    assert check_optional_bool("ask_feedback", None) is None
    with pytest.raises(TypeError, match=r"^ask_feedback must be a bool, not int$"):
        check_optional_bool("ask_feedback", 1)


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(acquire_async._checks)
    assert tried > 0 and failures == 0
