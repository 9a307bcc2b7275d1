"""OpenTelemetry's aiohttp instrumentation, for real: no span ever holds the API key.

The instrumentation copies request headers into span attributes when asked to
(``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST=".*"``, or
``create_trace_config(captured_request_headers=[...])``). These tests turn that on, join
through a real server on 127.0.0.1, and search every span (attributes, events, status) for
the key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import pytest
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from acquire_async import AcquireClient, RetryPolicy
from acquire_async.testing import FakeAcquire

KEY = "sk-OTEL-CANARY-7f3a9c1e5b"
CAPTURE_REQUEST = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"
CAPTURE_RESPONSE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"
SANITIZE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
# Per join: a dropped connection (an exception span), a 503 (an error span), then a success,
# so every path of the instrumentation runs.
SCRIPT = ["drop_before_read", 503, None, "drop_before_read", 503, None]
POLICY = RetryPolicy(max_attempts=3, backoff_base=0.001, max_retry_after=1.0)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    # A provider of the test's own, passed explicitly: the global one can be set only once.
    # A value length limit, as production setups often have (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT):
    # opentelemetry-api < 1.45 drops a header value that is a str subclass (our RedactedStr),
    # unless a limit makes it slice the value into a plain str first. With the limit, the key
    # reaches the span on every version, so these tests can fail on every version.
    tracer_provider = TracerProvider(span_limits=SpanLimits(max_span_attribute_length=4096))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


@pytest.fixture
def capture_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request and response header captured, nothing sanitised: the worst setting."""
    monkeypatch.setenv(CAPTURE_REQUEST, ".*")
    monkeypatch.setenv(CAPTURE_RESPONSE, ".*")
    monkeypatch.delenv(SANITIZE, raising=False)


@pytest.fixture
def instrumented(provider: TracerProvider, capture_all: None) -> Iterator[None]:
    """``AioHttpClientInstrumentor().instrument()``: every ClientSession created is traced.

    The instrumentor patches ``aiohttp.ClientSession.__init__`` process-wide (and reads the
    capture variables now, at ``instrument()``); undone at teardown so no other test module
    gets traced sessions.
    """
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()


def _flatten(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(_flatten(item) for item in value)
    # str(), not repr(): the header value is a RedactedStr, whose repr hides the key anyway.
    return str(value)


def _span_text(span: ReadableSpan) -> str:
    """Everything a span exporter would ship, as text: names and values."""
    parts = [span.name, span.status.description or ""]
    for name, value in (span.attributes or {}).items():
        parts += [name, _flatten(value)]
    for event in span.events:
        parts.append(event.name)
        for name, value in (event.attributes or {}).items():
            parts += [name, _flatten(value)]
    return "\n".join(parts)


def _assert_no_key(spans: Sequence[ReadableSpan], fake: FakeAcquire) -> None:
    # So the test can fail: one span per request the server got, each with the request
    # headers really captured into it.
    assert len(spans) == len(fake.requests) >= 6, [s.name for s in spans]
    for span in spans:
        attributes = span.attributes or {}
        assert "http.request.header.user_agent" in attributes, sorted(attributes)
        text = _span_text(span)
        assert KEY not in text, f"span {span.name!r} holds the key"
        assert KEY[3:] not in text  # not even a fragment
        assert "Bearer" not in text


async def _join(fake: FakeAcquire, **client_options: Any) -> None:
    async with AcquireClient(
        api_key=KEY, base_url=fake.base_url, retry=POLICY, **client_options
    ) as client:
        for case_id in (1000, 1001):
            await client.join_chat(case_id)


async def _join_one(fake: FakeAcquire, **client_options: Any) -> None:
    async with AcquireClient(api_key=KEY, base_url=fake.base_url, **client_options) as client:
        await client.join_chat(1000)


async def test_instrumentor_capturing_every_header_records_no_key(
    instrumented: None, exporter: InMemorySpanExporter
) -> None:
    async with FakeAcquire(cases=2, api_key=KEY) as fake:
        fake.script(SCRIPT)
        await _join(fake)
        # The key still reached the server: hidden from tracing, not from the wire.
        assert all(r.authorized for r in fake.requests if r.status is not None)
    _assert_no_key(exporter.get_finished_spans(), fake)


async def test_trace_config_capturing_every_header_records_no_key(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    config = create_trace_config(
        tracer_provider=provider,
        captured_request_headers=[".*"],
        captured_response_headers=[".*"],
    )
    async with FakeAcquire(cases=2, api_key=KEY) as fake:
        fake.script(SCRIPT)
        await _join(fake, trace_configs=[config])
    _assert_no_key(exporter.get_finished_spans(), fake)


async def test_documented_trace_config_ignores_the_capture_variables(
    provider: TracerProvider, exporter: InMemorySpanExporter, capture_all: None
) -> None:
    # The route docs/observability.md shows: create_trace_config() does not read the capture
    # variables (only instrument() does), so it records no header at all.
    config = create_trace_config(tracer_provider=provider)
    async with FakeAcquire(cases=1, api_key=KEY) as fake:
        await _join_one(fake, trace_configs=[config])
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    assert not [n for n in spans[0].attributes or {} if n.startswith("http.request.header.")]
    assert KEY not in _span_text(spans[0])


async def test_borrowed_session_keeps_its_middlewares_and_sends_the_key(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: list[set[str]] = []

    async def record(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        seen.append(set(request.headers))
        return await handler(request)

    config = create_trace_config(tracer_provider=provider, captured_request_headers=[".*"])
    async with FakeAcquire(cases=2, api_key=KEY) as fake:
        fake.script(SCRIPT)
        async with aiohttp.ClientSession(trace_configs=[config], middlewares=(record,)) as http:
            await _join(fake, session=http)
        assert all(r.authorized for r in fake.requests if r.status is not None)
    _assert_no_key(exporter.get_finished_spans(), fake)
    # The session's own middleware ran on every attempt and saw what goes on the wire: the
    # key and the trace context the instrumentation injected.
    assert len(seen) == len(fake.requests)
    assert all({"Authorization", "traceparent"} <= headers for headers in seen), seen


async def test_sanitize_variable_redacts_authorization_for_any_aiohttp_client(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    capture_all: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What docs/observability.md recommends for the other aiohttp clients of a process: with
    # the sanitize variable, even a plain session that sends the key gets "[REDACTED]".
    monkeypatch.setenv(SANITIZE, "authorization")
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with FakeAcquire(cases=1, api_key=KEY) as fake:
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    fake.join_url,
                    json={"caseId": 1000, "askJoin": True},
                    headers={"Authorization": f"Bearer {KEY}"},
                )
                response.release()
                assert response.status == 200
    finally:
        instrumentor.uninstrument()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert KEY not in _span_text(span)
