"""The OpenTelemetry Python SDK exports to agenttrace over OTLP/HTTP protobuf;
every span must come out of the file exporter intact, and that file must be
readable by `agenttrace replay`."""

import os

import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (BatchSpanProcessor, SimpleSpanProcessor, SpanExporter,
                                            SpanExportResult)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

import interop_helpers as h

# OTLP Span.SpanKind values; the Python API numbers its enum from INTERNAL = 0.
OTLP_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4,
             SpanKind.CONSUMER: 5}
OTLP_STATUS = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}


class RecordingExporter(SpanExporter):
    """Passes spans to the real OTLP exporter and remembers the spans and each export's result."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []
        self.spans = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        self.spans.extend(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def produce_spans(tracer):
    """A small multi-agent interaction with attributes of every SDK type, events, a link and an error."""
    with tracer.start_as_current_span("background index refresh", kind=SpanKind.CONSUMER,
                                      attributes={"messaging.system": "rabbitmq"}) as bg:
        bg_ctx = bg.get_span_context()

    with tracer.start_as_current_span(
            "invoke_agent coordinator-main", kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "coordinator-main",
                "agent.max_steps": 12,
                "agent.parallel": False,
                "agent.budget_usd": 1.25,
                "agent.delegates": ["planner-agent", "research-agent"],
                "agent.step_limits": [3, 5, 8],
                "agent.thresholds": [0.25, 0.5],
                "agent.flags": [True, False, True],
                "agent.note": "naïve café ☕ 日本語",
            }) as root:
        root.add_event("plan.ready", {"plan.steps": 3, "plan.summary": "search, read, answer"})
        with tracer.start_as_current_span(
                "chat gpt-4o", kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.usage.input_tokens": 1234,
                    "gen_ai.usage.output_tokens": 321,
                    "gen_ai.response.finish_reasons": ["stop"],
                    "gen_ai.agent.name": "coordinator-main",
                }) as llm:
            llm.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop"})
        with tracer.start_as_current_span(
                "execute_tool web_search", kind=SpanKind.INTERNAL,
                links=[Link(bg_ctx, {"link.reason": "uses_index", "link.weight": 0.5})],
                attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"}):
            pass
        with tracer.start_as_current_span("POST /v1/research", kind=SpanKind.PRODUCER) as failing:
            failing.set_attribute("http.response.status_code", 500)
            failing.record_exception(RuntimeError("research-agent unavailable"))
            failing.set_status(Status(StatusCode.ERROR, "delegate failed"))
        root.set_status(Status(StatusCode.OK))


def expected_value(v):
    return list(v) if isinstance(v, tuple) else v


def assert_span_matches(sdk_span, out, resource_attrs, scope):
    ctx = sdk_span.get_span_context()
    what = "span %r" % sdk_span.name
    assert out.trace_id == format(ctx.trace_id, "032x"), what
    assert out.span_id == format(ctx.span_id, "016x"), what
    want_parent = format(sdk_span.parent.span_id, "016x") if sdk_span.parent else ""
    assert out.parent_span_id == want_parent, what
    assert out.name == sdk_span.name
    assert out.kind == OTLP_KIND[sdk_span.kind], what
    assert out.start == sdk_span.start_time and out.end == sdk_span.end_time, what
    assert out.attributes == {k: expected_value(v) for k, v in sdk_span.attributes.items()}, what
    assert out.events == [(e.name, e.timestamp, {k: expected_value(v) for k, v in e.attributes.items()})
                          for e in sdk_span.events], what
    assert out.links == [(format(ln.context.trace_id, "032x"), format(ln.context.span_id, "016x"),
                          {k: expected_value(v) for k, v in ln.attributes.items()}) for ln in sdk_span.links], what
    assert out.status_code == OTLP_STATUS[sdk_span.status.status_code], what
    assert out.status_message == (sdk_span.status.description or ""), what
    assert out.resource == resource_attrs, what
    assert (out.scope_name, out.scope_version) == scope, what


@pytest.mark.parametrize("compression,processor", [
    (Compression.NoCompression, "batch"),
    (Compression.Gzip, "simple"),
], ids=["plain-batch", "gzip-simple"])
def test_sdk_export_arrives_intact_and_replays(start_collector, agenttrace_bin, tmp_path, compression, processor):
    col = start_collector("sdk")
    service = "interop-sdk-%s" % compression.value
    resource = Resource.create({"service.name": service, "service.version": "1.0.0",
                                "deployment.environment": "interop"})
    session = requests.Session()
    session.trust_env = False  # never route loopback traffic through a proxy from the environment
    otlp = OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces", compression=compression, timeout=10,
                            session=session)
    recorder = RecordingExporter(otlp)
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(recorder) if processor == "batch"
                                else SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("agenttrace.interop", "1.2.3")
    produce_spans(tracer)
    assert provider.force_flush(10_000)
    provider.shutdown()

    sdk_spans = recorder.spans
    assert len(sdk_spans) == 5  # background, root, chat, tool, failing delegate
    assert recorder.results and all(r == SpanExportResult.SUCCESS for r in recorder.results), recorder.results

    want = {(format(s.get_span_context().trace_id, "032x"), format(s.get_span_context().span_id, "016x"))
            for s in sdk_spans}
    out = col.wait_for_spans(lambda spans: want <= {s.key for s in spans}, timeout=10)
    by_key = {s.key: s for s in out}
    resource_attrs = {k: expected_value(v) for k, v in resource.attributes.items()}
    for s in sdk_spans:
        c = s.get_span_context()
        assert_span_matches(s, by_key[(format(c.trace_id, "032x"), format(c.span_id, "016x"))],
                            resource_attrs, ("agenttrace.interop", "1.2.3"))
    assert len(out) == len(sdk_spans), "the output has spans nobody sent"

    # Every line is an ExportTraceServiceRequest in OTLP/JSON that protobuf's own parser accepts
    # (no unknown keys), with default values omitted.
    requests_out = h.parse_jsonl(open(col.output, "rb").read(), allow_partial_tail=False)
    for i, req in enumerate(requests_out):
        h.request_to_protobuf(req)
        assert h.explicit_defaults(req) == [], "line %d writes default values: %s" % (
            i + 1, h.explicit_defaults(req)[:10])

    # The file the exporter wrote is valid replay input: replay it into a second output.
    replay_out = str(tmp_path / "replayed.jsonl")
    cfg = h.write_config(str(tmp_path / "replay.yaml"), h.build_config(replay_out))
    r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, "--speed", "0", col.output])
    assert r.returncode == 0, "replay failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    summary = h.parse_replay_output(r.stdout)
    assert (summary.files, summary.spans_read, summary.accepted, summary.rejected) == (1, len(out), len(out), 0)
    assert summary.exporters == {"file": (len(out), 0)}
    replayed = h.read_output_spans(replay_out, allow_partial_tail=False)
    assert sorted(s.key for s in replayed) == sorted(s.key for s in out)
    assert {s.key: s.raw for s in replayed} == {s.key: s.raw for s in out}


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_sdk_exporters_configured_only_by_otel_exporter_otlp_variables(start_collector, monkeypatch, transport):
    """README: `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317` (gRPC), or
    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://localhost:4318/v1/traces` with
    `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf`: the SDK's exporters built without arguments, from the
    environment alone (OpenTelemetry's "OTLP Exporter Configuration"), deliver to the collector."""
    col = start_collector("sdk-env", grpc=h.GRPC_SETTINGS)
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCSpanExporter
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://%s" % col.grpc_address)
        exporter = GRPCSpanExporter()
    else:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", col.endpoint + "/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
        exporter = OTLPSpanExporter()
    recorder = RecordingExporter(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": "env-configured-%s" % transport.split("/")[0]}))
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    tracer = provider.get_tracer("agenttrace.interop.env")
    with tracer.start_as_current_span("configured by the environment"):
        pass
    provider.shutdown()
    assert recorder.results == [SpanExportResult.SUCCESS], recorder.results
    want = {(format(s.get_span_context().trace_id, "032x"), format(s.get_span_context().span_id, "016x"))
            for s in recorder.spans}
    col.wait_for_spans(lambda spans: want <= {s.key for s in spans}, timeout=10)
