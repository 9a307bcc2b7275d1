"""Request bodies (``_bodies``): each builder's exact bytes and the published requests."""

from __future__ import annotations

import doctest
import json
from collections.abc import Callable
from typing import Any

import pytest
from payloads import EXAMPLES, FIXTURES
from yarl import URL

import acquire_async._bodies
from acquire_async._bodies import (
    ADD_MESSAGE_PATH,
    CLOSE_PATH,
    JOIN_PATH,
    REJECT_PATH,
    add_message_body,
    close_body,
    endpoint_url,
    join_body,
    reject_body,
    request_headers,
)
from acquire_async._secrets import Secret

# --------------------------------------------------------------------------- join body


def test_join_body_exact_bytes() -> None:
    assert join_body(1684, True) == b'{"caseId":1684,"askJoin":true}'
    assert join_body(1684, False) == b'{"caseId":1684,"askJoin":false}'
    assert join_body(2**63 - 1, True) == b'{"caseId":9223372036854775807,"askJoin":true}'


@pytest.mark.parametrize("case_id", [1, 7, 1684, 2**63 - 1])
@pytest.mark.parametrize("ask_join", [True, False])
def test_join_body_round_trips(case_id: int, ask_join: bool) -> None:
    decoded = json.loads(join_body(case_id, ask_join))
    assert decoded == {"caseId": case_id, "askJoin": ask_join}
    assert type(decoded["askJoin"]) is bool


def test_join_body_matches_the_documented_request() -> None:
    documented = json.loads((FIXTURES / "join_chat_request.json").read_bytes())
    assert json.loads(join_body(1684, True)) == documented


# --------------------------------------------------------------------------- reject body


def test_reject_body_exact_bytes() -> None:
    assert reject_body(1681) == b'{"caseId":1681}'
    assert reject_body(2**63 - 1) == b'{"caseId":9223372036854775807}'


@pytest.mark.parametrize(
    ("case_id", "error"),
    [(True, TypeError), ("5", TypeError), (0, ValueError), (2**63, ValueError)],
)
def test_reject_body_checks_the_case_id(case_id: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="case_id"):
        reject_body(case_id)


# --------------------------------------------------------------------------- close body

CLOSE_DEFAULTS: dict[str, Any] = {
    "closing_state": "handled",
    "archive": True,
    "ask_feedback": None,
    "leave_only": None,
    "force_close": None,
    "leave_event": None,
}


def _close(case_id: Any = 5, **changes: Any) -> bytes:
    return close_body(case_id, **{**CLOSE_DEFAULTS, **changes})


def test_close_body_exact_bytes() -> None:
    assert _close() == b'{"caseId":5,"closingState":"handled","archive":"yes"}'
    assert _close(archive=False) == b'{"caseId":5,"closingState":"handled","archive":"no"}'


def test_close_body_sends_each_flag_only_when_chosen() -> None:
    flags = {"ask_feedback": "askFeedback", "leave_only": "leaveOnly"}
    flags |= {"force_close": "forceClose", "leave_event": "leaveEvent"}
    for name, wire in flags.items():
        for value in (True, False):
            sent = json.loads(_close(**{name: value}))
            assert sent == {"caseId": 5, "closingState": "handled", "archive": "yes", wire: value}
    everything = json.loads(_close(**dict.fromkeys(flags, False)))
    assert set(everything) == {"caseId", "closingState", "archive", *flags.values()}


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"case_id": False}, TypeError, "case_id"),
        ({"case_id": -1}, ValueError, "case_id"),
        ({"closing_state": None}, TypeError, "closing_state must be a str"),
        ({"closing_state": ""}, ValueError, "closing_state must not be empty"),
        ({"archive": None}, TypeError, "archive must be a bool"),
        ({"archive": "yes"}, TypeError, "archive must be a bool"),
        ({"ask_feedback": 1}, TypeError, "ask_feedback must be a bool"),
        ({"leave_only": "no"}, TypeError, "leave_only must be a bool"),
        ({"force_close": 0}, TypeError, "force_close must be a bool"),
        ({"leave_event": []}, TypeError, "leave_event must be a bool"),
    ],
)
def test_close_body_checks_every_argument(
    changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    case_id = changes.pop("case_id", 5)
    with pytest.raises(error, match=match):
        _close(case_id, **changes)


# --------------------------------------------------------------------------- add-message body


def _message(case_id: Any = 9, text: Any = "Hi", **changes: Any) -> bytes:
    options: dict[str, Any] = {"type": "message", "channel": None, "translate_lang_key": None}
    return add_message_body(case_id, text, **{**options, **changes})


def test_add_message_body_exact_bytes() -> None:
    assert _message() == b'{"caseId":9,"message":{"type":"message","message":"Hi"}}'
    assert _message(channel="chat", translate_lang_key="en", type="note") == (
        b'{"caseId":9,"message":{"type":"note","message":"Hi","translateLangKey":"en"},'
        b'"channel":"chat"}'
    )


@pytest.mark.parametrize(
    "text",
    [
        'she said "hi"',
        "back\\slash \\u0041 and \\n",
        "line\nbreak\ttab\r\x00\x1f\x7f",
        "</script><script>alert(1)</script>",
        "\u2028\u2029 separators",
        "héllo 👋 日本語",
        '{"caseId": 1}',
        "x" * 100_000,
    ],
)
def test_add_message_body_carries_any_text_exactly(text: str) -> None:
    body = _message(text=text)
    assert json.loads(body) == {"caseId": 9, "message": {"type": "message", "message": text}}
    assert b"\n" not in body and b"\x00" not in body  # control characters are escaped


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"case_id": 1.0}, TypeError, "case_id"),
        ({"case_id": 0}, ValueError, "case_id"),
        ({"text": None}, TypeError, "text must be a str"),
        ({"text": b"Hi"}, TypeError, "text must be a str"),
        ({"text": ""}, ValueError, "text must not be empty"),
        ({"text": "\udc00"}, ValueError, "text must be encodable as UTF-8"),
        ({"type": None}, TypeError, "type must be a str"),
        ({"type": ""}, ValueError, "type must not be empty"),
        ({"channel": 1}, TypeError, "channel must be a str"),
        ({"channel": ""}, ValueError, "channel must not be empty"),
        ({"translate_lang_key": b"en"}, TypeError, "translate_lang_key must be a str"),
        ({"translate_lang_key": ""}, ValueError, "translate_lang_key must not be empty"),
    ],
)
def test_add_message_body_checks_every_argument(
    changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _message(**changes)


# --------------------------------------------------------------------------- published requests

# Keys of a published request the SDK never sends: ``meta`` (``{"additionalProp1": {}}``, a
# Swagger placeholder), ``mentionUsers`` (``["00"]``, another) and ``delay``: Acquire documents
# none of their meanings, and no client method offers them.
NOT_SENT = {"meta", "mentionUsers", "delay"}

Build = Callable[[dict[str, Any]], bytes]
# Each published request of the four operations: how the SDK builds the same request from
# its values, and what the SDK's body has that the published one lacks.
PUBLISHED: dict[str, tuple[Build, dict[str, Any]]] = {
    # The first join example predates askJoin; the SDK always sends it (true by default).
    "crm-messenger-chat-join__request-body__2021-03-10_3dc25cf.json": (
        lambda p: join_body(p["caseId"], True),
        {"askJoin": True},
    ),
    "crm-messenger-chat-join__request-body__2021-03-24_0837fed.json": (
        lambda p: join_body(p["caseId"], p["askJoin"]),
        {},
    ),
    "crm-messenger-chat-join__request-body__FINAL-POST-version__2021-04-01_498d8f1.json": (
        lambda p: join_body(p["caseId"], p["askJoin"]),
        {},
    ),
    "crm-messenger-chat-reject__request-body__2021-03-10_3a7099a.json": (
        lambda p: reject_body(p["caseId"]),
        {},
    ),
    "crm-messenger-chat-reject__request-body__2021-03-24_02cecce.json": (
        lambda p: reject_body(p["caseId"]),
        {},
    ),
    # The first close example sends the case alone; the SDK always sends closingState and
    # archive (close_chat's defaults, the values of the later example).
    "crm-messenger-chat-close__request-body__2021-03-10_e192be6.json": (
        lambda p: close_body(p["caseId"], **CLOSE_DEFAULTS),
        {"closingState": "handled", "archive": "yes"},
    ),
    "crm-messenger-chat-close__request-body__2021-03-24_45d0c14.json": (
        lambda p: close_body(
            p["caseId"],
            closing_state=p["closingState"],
            archive=p["archive"] == "yes",
            ask_feedback=p["askFeedback"],
            leave_only=p["leaveOnly"],
            force_close=p["forceClose"],
            leave_event=p["leaveEvent"],
        ),
        {},
    ),
    **{
        f"crm-messenger-chat-add-message__request-body__{version}.json": (
            lambda p: add_message_body(
                p["caseId"],
                p["message"]["message"],
                type=p["message"]["type"],
                channel=p.get("channel"),
                translate_lang_key=p["message"].get("translateLangKey"),
            ),
            {},
        )
        for version in ("2021-03-10_6050ecf", "2021-03-30_9989aa3", "2021-04-08_2e833b0")
    },
}
OPERATIONS = ("join", "reject", "close", "add-message")


def test_every_published_request_of_the_four_operations_is_listed() -> None:
    published = {
        path.name
        for operation in OPERATIONS
        for path in EXAMPLES.glob(f"crm-messenger-chat-{operation}__request-body__*.json")
    }
    assert published == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_the_sdk_builds_each_published_request(name: str) -> None:
    build, added = PUBLISHED[name]
    published = json.loads((EXAMPLES / name).read_bytes())
    ours = json.loads(build(published))
    expected = {key: value for key, value in published.items() if key not in NOT_SENT} | added
    assert ours == expected


def test_only_one_published_request_has_keys_the_sdk_does_not_send() -> None:
    dropped = {
        name: NOT_SENT & set(json.loads((EXAMPLES / name).read_bytes())) for name in PUBLISHED
    }
    assert {name: keys for name, keys in dropped.items() if keys} == {
        "crm-messenger-chat-add-message__request-body__2021-03-30_9989aa3.json": NOT_SENT,
        "crm-messenger-chat-close__request-body__2021-03-24_45d0c14.json": {"meta"},
    }


# --------------------------------------------------------------------------- URLs and headers


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://acme.acquire.io/api/v1", "https://acme.acquire.io/api/v1/crm/messenger/chat/"),
        (
            "http://127.0.0.1:1/prefix/api/v1/",
            "http://127.0.0.1:1/prefix/api/v1/crm/messenger/chat/",
        ),
        ("http://localhost", "http://localhost/crm/messenger/chat/"),
    ],
)
def test_endpoint_url_keeps_the_base_path(base: str, url: str) -> None:
    for path, tail in (
        (JOIN_PATH, "join"),
        (REJECT_PATH, "reject"),
        (CLOSE_PATH, "close"),
        (ADD_MESSAGE_PATH, "add-message"),
    ):
        assert str(endpoint_url(URL(base), path)) == url + tail


def test_request_headers_hide_the_key_in_a_repr() -> None:
    headers = request_headers(Secret("sk-SECRET"), "acquire-async/1")
    assert headers["Authorization"] == "Bearer sk-SECRET"
    assert "sk-SECRET" not in repr(headers)
    assert headers["Content-Type"] == headers["Accept"] == "application/json"
    assert headers["User-Agent"] == "acquire-async/1"


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(acquire_async._bodies)
    assert tried > 0 and failures == 0
