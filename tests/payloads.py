"""The published payloads the tests use, read once from ``tests/fixtures/``."""

from __future__ import annotations

from pathlib import Path

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
