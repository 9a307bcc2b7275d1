"""The published payloads the tests use, read once from ``tests/fixtures/``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acquire_async import Case
from acquire_async._protocol import JOIN_CODES, decode_case

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = FIXTURES / "acquire-examples"
# The seed join response, byte for byte as published (pretty-printed).
JOIN_RESPONSE = (FIXTURES / "join_chat_response.json").read_bytes()
# Acquire's "already joined" envelope, documented as sent with HTTP 200.
ALREADY_JOINED = (
    EXAMPLES / "crm-messenger-chat-join__ERROR-CHAT_ALREADY_JOINED__documented-under-httpCode200__"
    "2021-03-10_3dc25cf.json"
).read_bytes()
JOIN_URL = "https://acme.acquire.io/api/v1/crm/messenger/chat/join"


class Reply:
    """What one request got back: status, headers, raw body, and the JSON if it was JSON."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json: Any = json.loads(body)
        except ValueError:
            self.json = None

    @property
    def code(self) -> str | None:
        error = self.json.get("error") if isinstance(self.json, dict) else None
        return error.get("code") if isinstance(error, dict) else None

    @property
    def data(self) -> Any:
        return self.json["data"]

    def decode(self) -> Case:
        return decode_case(self.status, self.headers, self.body, codes=JOIN_CODES)
