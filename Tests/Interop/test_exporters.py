"""The zipkin, jaeger and otlp exporters against fake backends that validate every field against the
peers' own schemas (fakes.py), with the expected output computed from the OTLP input by
mapping_oracle.py, which follows docs/exporter-mappings.md.

  1. mapping     spans from the OpenTelemetry Python SDK (plus one hand-built request for value types the
                 SDK cannot produce) go into the collector over OTLP/HTTP and leave through six exporters
                 at once: zipkin (JSON), zipkin/proto (protobuf, gzip), jaeger, otlp (gRPC, gzip,
                 headers), otlp/http (protobuf, headers) and otlp/json (http/json, gzip, traces_endpoint).
  2. faults      every backend answers 503 (Retry-After: 1) / UNAVAILABLE for ~3 s, then recovers; and
                 429 (Retry-After: 1) / RESOURCE_EXHAUSTED with RetryInfo twice: the delay is honoured.
  3. permanent   400 / INVALID_ARGUMENT / 404 / RESOURCE_EXHAUSTED without RetryInfo: batches dropped,
                 counted, not retried. And OTLP/HTTP 502 and 504 (retried) next to 400 (not), attempts counted.
  4. crash       with `storage`: backend down, spans queued, kill -9, restart, backend up: all arrive.
"""

import collections
import email.utils
import math
import os
import time

import grpc
import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import (Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags,
                                 TraceState)

import fakes
import interop_helpers as h
import mapping_oracle as mo
from conftest import _Collectors

SENT = "agenttrace_exporter_sent_spans_total"
FAILED = "agenttrace_exporter_send_failed_spans_total"
RETRIED = "agenttrace_exporter_retried_spans_total"
QUEUE_SIZE = "agenttrace_exporter_queue_size"
QUEUE_CAPACITY = "agenttrace_exporter_queue_capacity"
PERSISTED = "agenttrace_exporter_persisted_bytes"
EXPORTER_METRICS = (SENT, FAILED, RETRIED, QUEUE_SIZE, QUEUE_CAPACITY, PERSISTED)

RETRY = {"enabled": True, "initial_interval": "100ms", "max_interval": "1s", "max_elapsed_time": "60s"}


def sending_queue(**kw):
    q = {"enabled": True, "queue_size": 1000, "num_consumers": 2}
    q.update(kw)
    return q


def collector_config(exporters, send_batch_size=512, timeout="200ms"):
    """OTLP/HTTP receiver -> batch -> the given exporters (a dict name -> settings)."""
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"batch": {"send_batch_size": send_batch_size, "timeout": timeout}},
        "exporters": exporters,
        "service": {
            "admin": {"endpoint": "127.0.0.1:0"},
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                     "exporters": list(exporters)}},
        },
    }


def zipkin_exporter(fake, fmt="json", compression="none", **kw):
    d = {"endpoint": fake.url, "format": fmt, "compression": compression, "timeout": "5s",
         "sending_queue": sending_queue(), "retry_on_failure": dict(RETRY)}
    d.update(kw)
    return d


def jaeger_exporter(fake, **kw):
    d = {"endpoint": fake.address, "timeout": "5s", "sending_queue": sending_queue(),
         "retry_on_failure": dict(RETRY)}
    d.update(kw)
    return d


def otlp_grpc_exporter(fake, compression="gzip", **kw):
    d = {"endpoint": fake.address, "protocol": "grpc", "compression": compression, "timeout": "5s",
         "headers": {"x-tenant": "acme"}, "sending_queue": sending_queue(), "retry_on_failure": dict(RETRY)}
    d.update(kw)
    return d


def otlp_http_exporter(fake, protocol="http/protobuf", compression="none", **kw):
    d = {"endpoint": fake.base_url, "protocol": protocol, "compression": compression, "timeout": "5s",
         "headers": {"x-tenant": "acme"}, "sending_queue": sending_queue(), "retry_on_failure": dict(RETRY)}
    d.update(kw)
    return d


class ConfiguredCollectors(_Collectors):
    """conftest's collector manager, with a whole config instead of build_config's keywords."""

    def launch(self, name, config):
        workdir = os.path.join(str(self.base_dir), "%s-%d" % (name, len(self.started)))
        c = h.Collector(self.binary, workdir)
        c.config = config
        h.write_config(c.config_path, config)
        self.started.append(c)
        c.start()
        return c


@pytest.fixture
def collectors(agenttrace_bin, tmp_path):
    cs = ConfiguredCollectors(agenttrace_bin, tmp_path)
    yield cs
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="module")
def module_collectors(agenttrace_bin, tmp_path_factory):
    cs = ConfiguredCollectors(agenttrace_bin, tmp_path_factory.mktemp("exporters"))
    yield cs
    problems = cs.stop_all()
    assert not problems, "\n\n".join(problems)


def close_all(fs):
    for f in fs:
        try:
            f.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# Spans in: the Python SDK and one hand-built request
# ---------------------------------------------------------------------------

class RecordingExporter(SpanExporter):
    def __init__(self, inner):
        self.inner = inner
        self.results = []
        self.batches = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        self.batches.append((list(spans), result))
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)

    def acknowledged_requests(self):
        """The ExportTraceServiceRequests the collector answered with success, as the SDK encoded them."""
        return [encode_spans(spans) for spans, result in self.batches if result == SpanExportResult.SUCCESS]


def sdk_provider(col, resource, limits=None):
    session = requests.Session()
    session.trust_env = False  # never route loopback traffic through a proxy from the environment
    rec = RecordingExporter(OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces", timeout=10, session=session))
    provider = TracerProvider(resource=resource, span_limits=limits) if limits else TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(rec))
    return provider, rec


def finish(provider, rec):
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert rec.results and all(r == SpanExportResult.SUCCESS for r in rec.results), \
        "the collector did not accept the SDK's export: %r" % rec.results
    return rec.acknowledged_requests()


def produce_sdk_spans(col):
    """Three resources (one without service.name, one with span limits) and every mapped feature."""
    sent = []

    # A: the main agent, two scopes (one with version and attributes), every kind and status.
    res_a = Resource.create({"service.name": "coordinator-main", "service.namespace": "agents",
                             "deployment.environment": "interop", "host.cpu.count": 4, "agent.ratio": 0.5,
                             "agent.enabled": True, "agent.tags": ["x", "y"]})
    prov, rec = sdk_provider(col, res_a)
    tracer = prov.get_tracer("agent.planner", "1.2.3", attributes={"scope.team": "planning"})
    bare = prov.get_tracer("agent.bare")
    with bare.start_as_current_span("background index refresh", kind=SpanKind.CONSUMER,
                                    attributes={"messaging.system": "rabbitmq", "error": False}) as bg:
        bg_ctx = bg.get_span_context()
    with tracer.start_as_current_span(
            "invoke_agent coordinator", kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": "invoke_agent", "agent.max_steps": 12, "agent.parallel": False,
                        "agent.budget_usd": 1.25, "agent.delegates": ["planner-agent", "research-agent"],
                        "agent.step_limits": [3, 5, 8], "agent.thresholds": [0.25, 0.5],
                        "agent.flags": [True, False], "agent.note": "naïve café ☕ \"quoted\" a|b"}) as root:
        root_ctx = root.get_span_context()
        root.add_event("start")
        root.add_event("plan.ready", {"plan.steps": 3, "plan.summary": "search|read|answer",
                                      "plan.scores": [0.5, 1.5]})
        with tracer.start_as_current_span(
                "chat gpt-4o", kind=SpanKind.CLIENT,
                attributes={"gen_ai.system": "openai", "gen_ai.request.temperature": 0.2,
                            "gen_ai.usage.input_tokens": 1234, "peer.service": "openai-api",
                            "server.address": "api.openai.com", "network.peer.address": "10.1.2.3",
                            "network.peer.port": 443}) as llm:
            llm.set_status(Status(StatusCode.ERROR, "rate limited"))
        with tracer.start_as_current_span(
                "publish tasks", kind=SpanKind.PRODUCER,
                links=[Link(bg_ctx, {"link.reason": "uses_index", "link.weight": 0.5}), Link(bg_ctx)],
                attributes={"server.address": "broker.local", "network.peer.address": "2001:db8::1",
                            "network.peer.port": 5672, "error": "will be replaced"}) as pub:
            pub.set_status(Status(StatusCode.ERROR))
        with tracer.start_as_current_span("execute_tool vector_search", kind=SpanKind.INTERNAL,
                                          attributes={"db.name": "vectors", "gen_ai.tool.name": "search"}):
            pass
        with tracer.start_as_current_span("delegate again", kind=SpanKind.INTERNAL,
                                          links=[Link(root_ctx, {"opentracing.ref_type": "child_of"})]):
            pass
        # A link to the parent without opentracing.ref_type: Jaeger's parent reference is FOLLOWS_FROM.
        with tracer.start_as_current_span("follow up", kind=SpanKind.INTERNAL, links=[Link(root_ctx)]):
            pass
        # CONSUMER: server.address is the broker this span itself reads from, not a caller.
        with tracer.start_as_current_span("consume tasks", kind=SpanKind.CONSUMER,
                                          attributes={"server.address": "broker.local", "server.port": 5672,
                                                      "messaging.system": "rabbitmq"}):
            pass
        root.set_status(Status(StatusCode.OK))
    remote = SpanContext(trace_id=0x4bf92f3577b34da6a3ce929d0e0e4736, span_id=0x00f067aa0ba902b7, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED),
                         trace_state=TraceState([("vendor", "v1"), ("other", "x")]))
    # SERVER: server.address is this service's own host; the caller is client.address / the peer socket.
    with tracer.start_as_current_span("handle remote call", kind=SpanKind.SERVER,
                                      context=trace_api.set_span_in_context(NonRecordingSpan(remote)),
                                      attributes={"server.address": "agents.example.com", "server.port": 8443,
                                                  "client.address": "gateway.internal",
                                                  "network.peer.address": "10.0.0.5",
                                                  "network.peer.port": 40123}) as srv:
        srv.set_status(Status(StatusCode.OK))  # the SDK drops descriptions of OK
    sent += finish(prov, rec)

    # B: a resource without service.name (built without the SDK defaults).
    prov, rec = sdk_provider(col, Resource({"deployment.environment": "interop", "agent.kind": "anonymous"}))
    with prov.get_tracer("anon").start_as_current_span("anonymous work"):
        pass
    sent += finish(prov, rec)

    # C: span limits, so that every dropped count is non-zero.
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1,
                        max_link_attributes=1)
    prov, rec = sdk_provider(col, Resource.create({"service.name": "limited-svc"}), limits)
    with prov.get_tracer("limited", "0.1").start_as_current_span(
            "over the limits", kind=SpanKind.CLIENT,
            links=[Link(bg_ctx, {"a": 1, "b": 2}), Link(root_ctx)],
            attributes={"k1": "v1", "k2": "v2", "k3": "v3", "k4": "v4"}) as sp:
        sp.add_event("first", {"e1": 1, "e2": 2})
        sp.add_event("second")
    sent += finish(prov, rec)
    return sent


def kv(key, **value):
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))


def arr(*values):
    return common_pb2.ArrayValue(values=list(values))


def kvlist(*kvs):
    return common_pb2.KeyValueList(values=list(kvs))


def raw_request(now_ns):
    """Value types and shapes the Python SDK cannot produce: maps, bytes, nested arrays, unset values,
    odd doubles, UNSPECIFIED kind, a trace id whose high half is zero, sub-microsecond times, string ports,
    an IPv4-mapped IPv6 address, an event with an `event` attribute, span flags."""
    S = common_pb2.AnyValue
    resource = resource_pb2.Resource(attributes=[
        kv("service.name", string_value="raw-svc"),
        kv("raw.bytes", bytes_value=b"\x00\x01\xfe\xff"),
        kv("raw.map", kvlist_value=kvlist(kv("a", string_value="x"), kv("n", int_value=7))),
    ])
    scope = common_pb2.InstrumentationScope(name="raw-scope", attributes=[kv("scope.bool", bool_value=True)])
    t1 = bytes.fromhex("0000000000000000" + "00000000000000ab")
    t2 = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    s1 = trace_pb2.Span(
        trace_id=t1, span_id=bytes.fromhex("00000000000000cd"), name="raw unspecified", kind=0,
        start_time_unix_nano=now_ns + 1999, end_time_unix_nano=now_ns + 2499, flags=0x301,
        attributes=[
            kv("m", kvlist_value=kvlist(kv("a", string_value="x"), kv("n", int_value=1), kv("d", double_value=2.0),
                                        kv("l", array_value=arr(S(int_value=1), S(string_value="two"),
                                                                S(bool_value=True))),
                                        kv("inner", kvlist_value=kvlist(kv("k", string_value="v"))))),
            kv("b", bytes_value=b"\x01\x02\x03"),
            kv("d.int", double_value=2.0), kv("d.small", double_value=1e-7), kv("d.big", double_value=1e21),
            kv("d.plain", double_value=123456.789), kv("d.neg", double_value=-0.5),
            kv("i.neg", int_value=-42), kv("i.big", int_value=9007199254740993),
            common_pb2.KeyValue(key="unset", value=common_pb2.AnyValue()),
            kv("mixed", array_value=arr(S(bytes_value=b"\xff"), S(double_value=0.1), S(), S(array_value=arr(S(int_value=2))))),
            kv("empty.list", array_value=arr()),
        ],
        events=[trace_pb2.Span.Event(time_unix_nano=now_ns + 2100, name="with map",
                                     attributes=[kv("detail", kvlist_value=kvlist(kv("q", string_value="r")))])],
        status=trace_pb2.Status(code=1, message="fine"))
    s2 = trace_pb2.Span(
        trace_id=t2, span_id=bytes.fromhex("1111111111111111"), parent_span_id=bytes.fromhex("2222222222222222"),
        name="", kind=1, start_time_unix_nano=now_ns + 123456789, end_time_unix_nano=now_ns + 3123456789,
        trace_state="congo=t61rcWkgMzE",
        attributes=[kv("net.peer.ip", string_value="::ffff:192.0.2.5"), kv("net.peer.port", int_value=8080)],
        events=[trace_pb2.Span.Event(time_unix_nano=now_ns + 223456789, name="named",
                                     attributes=[kv("event", string_value="custom"), kv("x", int_value=1)]),
                trace_pb2.Span.Event(time_unix_nano=now_ns + 323456789, name="")],
        status=trace_pb2.Status(code=0, message="ignored when unset"))
    s3 = trace_pb2.Span(
        trace_id=t2, span_id=bytes.fromhex("3333333333333333"), parent_span_id=bytes.fromhex("1111111111111111"),
        name="raw client", kind=3, start_time_unix_nano=now_ns + 200000000, end_time_unix_nano=now_ns + 200000000,
        attributes=[kv("peer.service", string_value=""), kv("server.address", string_value="srv"),
                    kv("network.peer.address", string_value="10.0.0.9"),
                    kv("network.peer.port", string_value="9090")],
        links=[trace_pb2.Span.Link(trace_id=t1, span_id=bytes.fromhex("00000000000000cd"), trace_state="a=b",
                                   attributes=[kv("why", string_value="because")], dropped_attributes_count=2)])
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource, schema_url="https://opentelemetry.io/schemas/1.21.0",
        scope_spans=[trace_pb2.ScopeSpans(scope=scope, spans=[s1, s2, s3],
                                          schema_url="https://opentelemetry.io/schemas/1.21.0")])])


def keyed(requests_):
    """{span key: OTLPSpan} of ExportTraceServiceRequests."""
    out = {}
    for r in requests_:
        for s in fakes.otlp_spans_of(r):
            assert s.key not in out, "span %s sent twice" % (s.key,)
            out[s.key] = s
    return out


def send_sdk_spans(col, n, name="load"):
    """n spans in one trace from the SDK; returns the acknowledged requests."""
    prov, rec = sdk_provider(col, Resource.create({"service.name": "load-svc"}))
    tracer = prov.get_tracer("load")
    with tracer.start_as_current_span("%s root" % name, kind=SpanKind.SERVER):
        for i in range(n - 1):
            with tracer.start_as_current_span("%s child %d" % (name, i), kind=SpanKind.CLIENT,
                                              attributes={"i": i, "peer.service": "downstream"}):
                pass
    return finish(prov, rec)


# ---------------------------------------------------------------------------
# Helpers for checks
# ---------------------------------------------------------------------------

class Scenario:
    """What a module fixture did: its collector, fakes and the spans it sent; or why it could not run."""

    def __init__(self):
        self.error = None
        self.collector = None
        self.fakes = {}
        self.sent = {}
        self.metrics = None
        self.notes = []

    def require(self):
        if self.error:
            pytest.fail(self.error, pytrace=False)


def metric(ms, name, exporter):
    return ms.value(name, exporter=exporter, default=None)


def metrics_text(ms, exporter):
    return ", ".join("%s=%s" % (n.replace("agenttrace_exporter_", ""), metric(ms, n, exporter))
                     for n in EXPORTER_METRICS)


def wait_metrics(col, predicate, timeout):
    deadline = time.monotonic() + timeout
    ms = col.scrape()
    while not predicate(ms) and time.monotonic() < deadline:
        time.sleep(0.1)
        ms = col.scrape()
    return ms


def check_arrivals(fake, sent, exact_once=True):
    """Every sent span arrived in an accepted request; nothing unknown arrived; duplicates only as allowed."""
    problems = []
    accepted = fake.accepted_counts()
    failed = fake.attempt_counts(accepted=False)
    missing = sorted(set(sent) - set(accepted))
    if missing:
        problems.append("%d of %d spans never arrived at %s (accepted), e.g. %s"
                        % (len(missing), len(sent), fake.name, [sent[k].span.name for k in missing[:5]]))
    unknown = sorted(set(accepted) - set(sent))
    if unknown:
        problems.append("%s received spans nobody sent: %s" % (fake.name, unknown[:5]))
    for k, n in sorted(accepted.items()):
        allowed = 1 if exact_once else 1 + failed.get(k, 0)
        if k in sent and n > allowed:
            problems.append("span %r arrived %d times at %s (allowed %d: once, plus once per failed attempt "
                            "that carried it)" % (sent[k].span.name, n, fake.name, allowed))
    return problems


def fail_if(problems, fake=None, limit=40):
    if problems:
        extra = ("\n\n" + fake.describe()) if fake is not None else ""
        more = "\n... and %d more" % (len(problems) - limit) if len(problems) > limit else ""
        pytest.fail("\n".join(problems[:limit]) + more + extra, pytrace=False)


# ---------------------------------------------------------------------------
# 1. Mapping
# ---------------------------------------------------------------------------

MAPPING_EXPORTERS = ("zipkin", "zipkin/proto", "jaeger", "otlp", "otlp/http", "otlp/json")


@pytest.fixture(scope="module")
def mapping(module_collectors):
    sc = Scenario()
    fs = {
        "zipkin": fakes.ZipkinFake().start(),
        "zipkin/proto": fakes.ZipkinFake().start(),
        "jaeger": fakes.JaegerFake().start(),
        "otlp": fakes.OTLPGrpcFake().start(),
        "otlp/http": fakes.OTLPHttpFake().start(),
        "otlp/json": fakes.OTLPHttpFake(path="/custom/traces").start(),
    }
    sc.fakes = fs
    exporters = {
        "zipkin": zipkin_exporter(fs["zipkin"], "json", "none"),
        "zipkin/proto": zipkin_exporter(fs["zipkin/proto"], "proto", "gzip"),
        "jaeger": jaeger_exporter(fs["jaeger"]),
        "otlp": otlp_grpc_exporter(fs["otlp"], "gzip"),
        "otlp/http": otlp_http_exporter(fs["otlp/http"], "http/protobuf", "none"),
        "otlp/json": otlp_http_exporter(fs["otlp/json"], "http/json", "gzip",
                                        traces_endpoint=fs["otlp/json"].url),
    }
    try:
        try:
            run_mapping(sc, module_collectors, exporters)
        except AssertionError as e:
            sc.error = "the mapping scenario could not run:\n%s" % e
        yield sc
    finally:
        close_all(fs.values())


def run_mapping(sc, module_collectors, exporters):
    col = sc.collector = module_collectors.launch("mapping", collector_config(exporters))
    sent = produce_sdk_spans(col)
    raw = raw_request(time.time_ns())
    r = col.post_traces(raw.SerializeToString())
    assert r.status == 200, "the collector refused the hand-built request: %d %r" % (r.status, r.body[:300])
    sent.append(raw)
    sc.sent = keyed(sent)
    for f in sc.fakes.values():
        f.wait_for_keys(sc.sent, timeout=15)
    sc.metrics = wait_metrics(col, lambda ms: all(ms.value(SENT, exporter=n) >= len(sc.sent)
                                                  for n in MAPPING_EXPORTERS), timeout=5)


@pytest.mark.parametrize("name,encoding", [("zipkin", "json"), ("zipkin/proto", "proto")],
                         ids=["json", "proto-gzip"])
def test_zipkin_mapping(mapping, name, encoding):
    mapping.require()
    fake = mapping.fakes[name]
    problems = list(fake.violations)
    problems += check_arrivals(fake, mapping.sent)
    want_ct = "application/json" if encoding == "json" else "application/x-protobuf"
    want_ce = "" if encoding == "json" else "gzip"
    for i, r in enumerate(fake.snapshot()):
        if fakes._media_type(r.content_type) != want_ct or r.content_encoding.lower() != want_ce:
            problems.append("request #%d: Content-Type %r, Content-Encoding %r (want %s, %r)"
                            % (i + 1, r.content_type, r.content_encoding, want_ct, want_ce))
        if r.answer != 202:
            problems.append("request #%d was answered %s" % (i + 1, r.answer))
    seen = set()
    for zs in fake.accepted_spans():
        if zs.key in mapping.sent and zs.key not in seen:
            seen.add(zs.key)
            problems += mo.zipkin_mismatches(mapping.sent[zs.key], zs.span)
    fail_if(problems, fake)


def test_jaeger_mapping(mapping):
    mapping.require()
    fake = mapping.fakes["jaeger"]
    problems = list(fake.violations)
    problems += check_arrivals(fake, mapping.sent)
    seen = set()
    for i, r in enumerate(fake.accepted_requests()):
        resources = {mapping.sent[s.key].resource.SerializeToString(deterministic=True)
                     for s in r.spans if s.key in mapping.sent}
        if len(resources) > 1:
            problems.append("PostSpans request #%d mixes spans of %d resources in one Batch (want one Batch "
                            "per resource)" % (i + 1, len(resources)))
        for js in r.spans:
            if js.key in mapping.sent and js.key not in seen:
                seen.add(js.key)
                problems += mo.jaeger_mismatches(mapping.sent[js.key], js)
    for st in fake.streams():
        if st.headers.get("content-type", "").split(";")[0] not in ("application/grpc", "application/grpc+proto"):
            problems.append("gRPC stream %d: content-type %r" % (st.stream_id, st.headers.get("content-type")))
        if st.headers.get("te") != "trailers":
            problems.append("gRPC stream %d: te %r (want trailers)" % (st.stream_id, st.headers.get("te")))
    problems += fake.sniffer.errors
    fail_if(problems, fake)


def test_otlp_grpc_forwarding(mapping):
    mapping.require()
    fake = mapping.fakes["otlp"]
    problems = list(fake.violations)
    problems += check_arrivals(fake, mapping.sent)
    for i, r in enumerate(fake.snapshot()):
        if r.headers.get("x-tenant") != "acme":
            problems.append("Export call #%d: metadata x-tenant = %r (want acme from `headers:`)"
                            % (i + 1, r.headers.get("x-tenant")))
    streams = fake.streams()
    if not streams:
        problems.append("the sniffer saw no Export stream")
    for st in streams:
        if st.headers.get("grpc-encoding") != "gzip":
            problems.append("Export stream %d: grpc-encoding %r (want gzip, `compression: gzip`)"
                            % (st.stream_id, st.headers.get("grpc-encoding")))
        if any(flag != 1 for flag in st.message_flags):
            problems.append("Export stream %d: message compressed-flags %r (want 1)" % (st.stream_id, st.message_flags))
        if st.headers.get("content-type", "").split(";")[0] not in ("application/grpc", "application/grpc+proto"):
            problems.append("Export stream %d: content-type %r" % (st.stream_id, st.headers.get("content-type")))
    problems += fake.sniffer.errors
    seen = set()
    for s in fake.accepted_spans():
        if s.key in mapping.sent and s.key not in seen:
            seen.add(s.key)
            problems += mo.otlp_mismatches(mapping.sent[s.key], s)
    fail_if(problems, fake)


@pytest.mark.parametrize("name,content_type,encoding,path", [
    ("otlp/http", "application/x-protobuf", "", "/v1/traces"),
    ("otlp/json", "application/json", "gzip", "/custom/traces"),
], ids=["protobuf", "json-gzip-traces_endpoint"])
def test_otlp_http_forwarding(mapping, name, content_type, encoding, path):
    mapping.require()
    fake = mapping.fakes[name]
    problems = list(fake.violations)
    problems += check_arrivals(fake, mapping.sent)
    for i, r in enumerate(fake.snapshot()):
        if (r.path, fakes._media_type(r.content_type), r.content_encoding.lower()) != (path, content_type, encoding):
            problems.append("request #%d: POST %s, Content-Type %r, Content-Encoding %r (want %s, %s, %r)"
                            % (i + 1, r.path, r.content_type, r.content_encoding, path, content_type, encoding))
        if r.headers.get("x-tenant") != "acme":
            problems.append("request #%d: header x-tenant = %r (want acme)" % (i + 1, r.headers.get("x-tenant")))
    seen = set()
    for s in fake.accepted_spans():
        if s.key in mapping.sent and s.key not in seen:
            seen.add(s.key)
            problems += mo.otlp_mismatches(mapping.sent[s.key], s)
    fail_if(problems, fake)


def test_mapping_metrics(mapping):
    mapping.require()
    ms = mapping.metrics
    problems = []
    n = len(mapping.sent)
    for name in MAPPING_EXPORTERS:
        missing = [m for m in EXPORTER_METRICS if not ms.has(m, exporter=name)]
        if missing:
            problems.append("exporter %s: no series %s" % (name, ", ".join('%s{exporter="%s"}' % (m, name)
                                                                           for m in missing)))
        if ms.value(SENT, exporter=name) != n or ms.value(FAILED, exporter=name) != 0:
            problems.append("exporter %s: want sent=%d failed=0; got %s" % (name, n, metrics_text(ms, name)))
        if ms.has(QUEUE_CAPACITY, exporter=name) and ms.value(QUEUE_CAPACITY, exporter=name) != 1000:
            problems.append("exporter %s: queue_capacity %s (want 1000, sending_queue.queue_size)"
                            % (name, ms.value(QUEUE_CAPACITY, exporter=name)))
    fail_if(problems)


# ---------------------------------------------------------------------------
# 2. Transient failures: retried until the backend recovers
# ---------------------------------------------------------------------------

FAULT_EXPORTERS = ("zipkin", "jaeger", "otlp", "otlp/http")
# Next to them, in the same collector: the other retryable answers that carry a delay.
DELAY_EXPORTERS = ("zipkin/429", "otlp/retryinfo")
FAULT_SECONDS = 10.0  # as long as the fault test asks
N_FAULT = 20


@pytest.fixture(scope="module")
def faults(module_collectors):
    sc = Scenario()
    fs = {"zipkin": fakes.ZipkinFake().start(), "jaeger": fakes.JaegerFake().start(),
          "otlp": fakes.OTLPGrpcFake().start(), "otlp/http": fakes.OTLPHttpFake().start(),
          "zipkin/429": fakes.ZipkinFake().start(), "otlp/retryinfo": fakes.OTLPGrpcFake().start()}
    sc.fakes = fs
    fs["zipkin"].script.fail_for(FAULT_SECONDS, 503, retry_after=1)
    fs["otlp/http"].script.fail_for(FAULT_SECONDS, 503, retry_after=1)
    fs["jaeger"].script.fail_for(FAULT_SECONDS, grpc.StatusCode.UNAVAILABLE)
    fs["otlp"].script.fail_for(FAULT_SECONDS, grpc.StatusCode.UNAVAILABLE)
    fs["zipkin/429"].script.fail_next(2, 429, retry_after=1)
    fs["otlp/retryinfo"].script.fail_next(2, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=1)
    exporters = {"zipkin": zipkin_exporter(fs["zipkin"]), "jaeger": jaeger_exporter(fs["jaeger"]),
                 "otlp": otlp_grpc_exporter(fs["otlp"]), "otlp/http": otlp_http_exporter(fs["otlp/http"]),
                 "zipkin/429": zipkin_exporter(fs["zipkin/429"]),
                 "otlp/retryinfo": otlp_grpc_exporter(fs["otlp/retryinfo"])}
    try:
        try:
            col = sc.collector = module_collectors.launch("faults", collector_config(exporters))
            sc.sent = keyed(send_sdk_spans(col, N_FAULT, "fault"))
            for f in fs.values():
                f.wait_for_keys(sc.sent, timeout=FAULT_SECONDS + 12)
            sc.metrics = wait_metrics(col, lambda ms: all(ms.value(SENT, exporter=n) >= N_FAULT
                                                          for n in exporters), timeout=3)
        except AssertionError as e:
            sc.error = "the fault scenario could not run:\n%s" % e
        yield sc
    finally:
        close_all(fs.values())


def delay_violations(fake):
    """Re-sends of the same spans sooner than the Retry-After / RetryInfo delay the failed answer asked for."""
    by_batch = collections.defaultdict(list)
    for r in fake.snapshot():
        by_batch[frozenset(r.span_ids())].append(r)
    out = []
    for attempts in by_batch.values():
        for a, b in zip(attempts, attempts[1:]):
            delay = a.failure.retry_after if a.failure is not None else None
            if delay is not None and b.time - a.time < delay - 0.1:
                out.append("%s re-sent %.2f s after a %s asking to wait %s s (must wait at least that long)"
                           % (fake.name, b.time - a.time, a.answer, delay))
    return out


@pytest.mark.parametrize("name", FAULT_EXPORTERS + DELAY_EXPORTERS)
def test_transient_failure_is_retried(faults, name):
    faults.require()
    fake = faults.fakes[name]
    problems = list(fake.violations)
    failed_attempts = [r for r in fake.snapshot() if not r.accepted]
    if not failed_attempts:
        problems.append("%s never got a request while it was failing, so nothing was retried" % name)
    problems += check_arrivals(fake, faults.sent, exact_once=False)
    ms = faults.metrics
    if not ms.value(RETRIED, exporter=name) > 0:
        problems.append("%s{exporter=%r} did not move (got %s)" % (RETRIED, name, metrics_text(ms, name)))
    if ms.value(SENT, exporter=name) != N_FAULT or ms.value(FAILED, exporter=name) != 0:
        problems.append("want sent=%d failed=0 after recovery; got %s" % (N_FAULT, metrics_text(ms, name)))
    problems += delay_violations(fake)
    fail_if(problems, fake)


# ---------------------------------------------------------------------------
# 3. Permanent errors: dropped, counted, never retried
# ---------------------------------------------------------------------------

N_PERMANENT = 10


@pytest.fixture(scope="module")
def permanent(module_collectors):
    sc = Scenario()
    fs = {"zipkin": fakes.ZipkinFake().start(), "jaeger": fakes.JaegerFake().start(),
          "otlp": fakes.OTLPGrpcFake().start(), "otlp/http": fakes.OTLPHttpFake().start(),
          "otlp/exhausted": fakes.OTLPGrpcFake().start(), "otlp/http404": fakes.OTLPHttpFake().start()}
    sc.fakes = fs
    fs["otlp/exhausted"].script.fail_always(grpc.StatusCode.RESOURCE_EXHAUSTED, message="no RetryInfo")
    fs["otlp/http404"].script.fail_always(404, message="not here")
    fs["zipkin"].script.fail_always(400, message="bad spans")
    fs["otlp/http"].script.fail_always(400, message="bad spans")
    fs["jaeger"].script.fail_always(grpc.StatusCode.INVALID_ARGUMENT, message="bad spans")
    fs["otlp"].script.fail_always(grpc.StatusCode.INVALID_ARGUMENT, message="bad spans")
    exporters = {"zipkin": zipkin_exporter(fs["zipkin"]), "jaeger": jaeger_exporter(fs["jaeger"]),
                 "otlp": otlp_grpc_exporter(fs["otlp"]), "otlp/http": otlp_http_exporter(fs["otlp/http"]),
                 "otlp/exhausted": otlp_grpc_exporter(fs["otlp/exhausted"]),
                 "otlp/http404": otlp_http_exporter(fs["otlp/http404"])}
    try:
        try:
            col = sc.collector = module_collectors.launch("permanent", collector_config(exporters))
            sc.sent = keyed(send_sdk_spans(col, N_PERMANENT, "permanent"))
            wait_metrics(col, lambda ms: all(ms.value(FAILED, exporter=n) >= N_PERMANENT
                                             for n in exporters), timeout=10)
            time.sleep(1.0)  # any (wrong) retry with initial_interval 100ms shows up by now
            sc.metrics = col.scrape()
        except AssertionError as e:
            sc.error = "the permanent-error scenario could not run:\n%s" % e
        yield sc
    finally:
        close_all(fs.values())


@pytest.mark.parametrize("name", FAULT_EXPORTERS + ("otlp/exhausted", "otlp/http404"))
def test_permanent_error_drops_batch(permanent, name):
    permanent.require()
    fake = permanent.fakes[name]
    problems = list(fake.violations)
    attempts = fake.attempt_counts()
    missing = sorted(set(permanent.sent) - set(attempts))
    if missing:
        problems.append("%d of %d spans were never even attempted" % (len(missing), len(permanent.sent)))
    retried = {k: n for k, n in attempts.items() if n > 1}
    if retried:
        problems.append("spans were re-sent after a permanent error: %s"
                        % ", ".join("%s x%d" % (permanent.sent[k].span.name if k in permanent.sent else k, n)
                                    for k, n in sorted(retried.items())[:5]))
    ms = permanent.metrics
    if (ms.value(FAILED, exporter=name), ms.value(SENT, exporter=name), ms.value(RETRIED, exporter=name)) != \
            (N_PERMANENT, 0, 0):
        problems.append("want send_failed=%d sent=0 retried=0; got %s" % (N_PERMANENT, metrics_text(ms, name)))
    fail_if(problems, fake)


N_STATUS = 5


def test_http_status_retry_classification(collectors):
    """OTLP/HTTP "Retryable response codes": 429, 502, 503, 504 are retried; any other 4xx is not. One
    exporter per answer: 502 and 504 twice, then success (every span arrives, after exactly two failed
    attempts); 400 always (one attempt per batch, dropped and counted failed)."""
    fs = {"otlp/502": fakes.OTLPHttpFake().start(), "otlp/504": fakes.OTLPHttpFake().start(),
          "otlp/400": fakes.OTLPHttpFake().start()}
    try:
        fs["otlp/502"].script.fail_next(2, 502, message="bad gateway")
        fs["otlp/504"].script.fail_next(2, 504, message="gateway timeout")
        fs["otlp/400"].script.fail_always(400, message="bad spans")
        col = collectors.launch("status-retry", collector_config({n: otlp_http_exporter(f) for n, f in fs.items()}))
        sent = keyed(send_sdk_spans(col, N_STATUS, "status"))
        problems = []
        for name in ("otlp/502", "otlp/504"):
            fake = fs[name]
            missing = fake.wait_for_keys(sent, timeout=15)
            if missing:
                problems.append("%s: %d of %d spans never accepted after the retries" % (name, len(missing), len(sent)))
            failed = [r for r in fake.snapshot() if not r.accepted]
            if [r.answer for r in failed] != [int(name[-3:])] * 2:
                problems.append("%s: want exactly two failed attempts answered %s, got %s"
                                % (name, name[-3:], [r.answer for r in failed]))
            problems += check_arrivals(fake, sent, exact_once=False)
        ms = wait_metrics(col, lambda ms: ms.value(FAILED, exporter="otlp/400") >= N_STATUS
                          and all(ms.value(SENT, exporter=n) >= N_STATUS for n in ("otlp/502", "otlp/504")), timeout=10)
        time.sleep(1.0)  # a (wrong) retry of the 400 after initial_interval 100ms would show by now
        ms = col.scrape()
        for name in ("otlp/502", "otlp/504"):
            if not (ms.value(SENT, exporter=name) == N_STATUS and ms.value(FAILED, exporter=name) == 0
                    and ms.value(RETRIED, exporter=name) > 0):
                problems.append("%s: want sent=%d failed=0 retried>0; got %s" % (name, N_STATUS, metrics_text(ms, name)))
        fake = fs["otlp/400"]
        attempts = fake.attempt_counts()
        if set(attempts) != set(sent) or any(n != 1 for n in attempts.values()):
            problems.append("otlp/400: want every span attempted exactly once, got %s" % sorted(attempts.values()))
        if (ms.value(FAILED, exporter="otlp/400"), ms.value(SENT, exporter="otlp/400"),
                ms.value(RETRIED, exporter="otlp/400")) != (N_STATUS, 0, 0):
            problems.append("otlp/400: want send_failed=%d sent=0 retried=0; got %s"
                            % (N_STATUS, metrics_text(ms, "otlp/400")))
        for f in fs.values():
            problems += f.violations
        fail_if(problems, fs["otlp/400"])
    finally:
        close_all(fs.values())


# ---------------------------------------------------------------------------
# 4. Crash with a persistent queue
# ---------------------------------------------------------------------------

def dir_listing(path):
    out = []
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out.append("%s (%d bytes)" % (os.path.relpath(p, path), os.path.getsize(p)))
    return out if os.path.isdir(path) else "directory does not exist"


N_CRASH = 30


def test_persistent_queue_survives_kill_9(collectors, tmp_path):
    ports = {"zipkin": fakes.ReservedPort(), "jaeger": fakes.ReservedPort()}
    storage = {"zipkin": str(tmp_path / "queue-zipkin"), "jaeger": str(tmp_path / "queue-jaeger")}
    exporters = {
        "zipkin": {"endpoint": "http://127.0.0.1:%d/api/v2/spans" % ports["zipkin"].port, "format": "json",
                   "compression": "none", "timeout": "5s", "sending_queue": sending_queue(storage=storage["zipkin"]),
                   "retry_on_failure": dict(RETRY)},
        "jaeger": {"endpoint": "127.0.0.1:%d" % ports["jaeger"].port, "timeout": "5s",
                   "sending_queue": sending_queue(storage=storage["jaeger"]), "retry_on_failure": dict(RETRY)},
    }
    config = collector_config(exporters, send_batch_size=N_CRASH)
    fs = []
    try:
        col = collectors.launch("crash-before", config)
        sent = keyed(send_sdk_spans(col, N_CRASH, "crash"))
        assert len(sent) == N_CRASH

        def queued(ms):
            return (ms.total("agenttrace_pipeline_queue_spans") == 0
                    and ms.total("agenttrace_processor_batch_batches_sent_total") >= 1
                    and all(ms.value(QUEUE_SIZE, exporter=n) >= 1 or ms.value(PERSISTED, exporter=n) > 0
                            for n in exporters))
        ms = wait_metrics(col, queued, timeout=10)
        assert queued(ms), ("the spans never showed up as queued (backend down): %s"
                            % "; ".join("%s: %s" % (n, metrics_text(ms, n)) for n in exporters))
        time.sleep(0.3)
        ms = col.scrape()
        assert all(ms.value(SENT, exporter=n) == 0 for n in exporters), "sent with the backend down?"
        problems = []
        for n in exporters:
            if not ms.value(PERSISTED, exporter=n) > 0:
                problems.append("before the crash, with %d spans queued in `storage` %s, persisted_bytes is %s "
                                "(want > 0); files there: %s" % (N_CRASH, storage[n], metric(ms, PERSISTED, n),
                                                                 dir_listing(storage[n])))

        col.proc.kill()  # SIGKILL: no shutdown, no flush
        col.proc.wait(timeout=10)
        col.stop_requested = True

        col2 = collectors.launch("crash-after", config)
        for n in exporters:
            ports[n].release()
        fs = [fakes.ZipkinFake(port=ports["zipkin"].port).start(), fakes.JaegerFake(port=ports["jaeger"].port).start()]
        for f in fs:
            f.wait_for_keys(sent, timeout=20)
            problems += list(f.violations)
            problems += check_arrivals(f, sent, exact_once=False)
        ms = wait_metrics(col2, lambda m: all(m.value(PERSISTED, exporter=n) == 0 and m.value(QUEUE_SIZE, exporter=n) == 0
                                              for n in exporters), timeout=5)
        for n in exporters:
            if ms.value(PERSISTED, exporter=n) != 0 or ms.value(QUEUE_SIZE, exporter=n) != 0:
                problems.append("after delivery the %s queue did not drain: %s" % (n, metrics_text(ms, n)))
        fail_if(problems, fs[0])
    finally:
        close_all(fs)
        for p in ports.values():
            p.release()


def test_acknowledged_spans_survive_kill_9_while_still_in_the_batch_processor(collectors, tmp_path):
    """With `storage`, a span is on disk before the receiver acknowledges it: killing the collector while the
    spans still wait in the batch processor (a long timeout, a batch size never reached) loses none."""
    port = fakes.ReservedPort()
    storage = str(tmp_path / "queue-zipkin")
    exporters = {"zipkin": {"endpoint": "http://127.0.0.1:%d/api/v2/spans" % port.port, "format": "json",
                            "timeout": "5s", "sending_queue": sending_queue(storage=storage),
                            "retry_on_failure": dict(RETRY)}}
    config = collector_config(exporters, send_batch_size=100_000, timeout="60s")
    fs = []
    try:
        col = collectors.launch("held-before", config)
        sent = keyed(send_sdk_spans(col, N_CRASH, "held"))
        assert len(sent) == N_CRASH
        ms = col.scrape()
        # Nothing has left the batch processor: the exporter queue is empty, the spans are only in memory and the log.
        assert ms.total("agenttrace_processor_batch_batches_sent_total") == 0
        assert ms.value(QUEUE_SIZE, exporter="zipkin") == 0
        col.proc.kill()  # SIGKILL: the batch processor's spans are gone from memory
        col.proc.wait(timeout=10)
        col.stop_requested = True

        port.release()
        fs = [fakes.ZipkinFake(port=port.port).start()]
        col2 = collectors.launch("held-after", collector_config(exporters, send_batch_size=100_000, timeout="200ms"))
        fs[0].wait_for_keys(sent, timeout=20)
        problems = list(fs[0].violations) + check_arrivals(fs[0], sent, exact_once=False)
        assert col2.proc.poll() is None
        fail_if(problems, fs[0])
    finally:
        close_all(fs)
        port.release()


# ---------------------------------------------------------------------------
# 5. OTLP partial success and Retry-After as an HTTP-date
# ---------------------------------------------------------------------------

PARTIAL_MESSAGE = "span name too long for this tenant"


class PartialHttpBackend(fakes.OTLPHttpFake):
    """Accepts every request but rejects one span of each in `partial_success`, as the OTLP specification
    lets a server do: "the server MUST respond with HTTP 200 OK ... and populate the partial_success field"."""

    def success(self, rec):
        rec.rejected = 1 if rec.spans else 0
        response = trace_service_pb2.ExportTraceServiceResponse()
        response.partial_success.rejected_spans = rec.rejected
        response.partial_success.error_message = PARTIAL_MESSAGE
        ct, body = self._encode(rec, response)
        return 200, {"Content-Type": ct}, body


class PartialGrpcBackend(fakes.OTLPGrpcFake):
    """The gRPC form: status OK with `partial_success` in the ExportTraceServiceResponse."""

    def response(self):
        response = trace_service_pb2.ExportTraceServiceResponse()
        response.partial_success.rejected_spans = 1
        response.partial_success.error_message = PARTIAL_MESSAGE
        return response


N_PARTIAL = 12


def test_otlp_partial_success_counts_rejected_spans_as_failed(collectors):
    """OTLP specification, partial success: the request succeeded, so it is not retried; the rejected
    spans are failed sends (exporter-mappings §3: `send_failed_spans_total`), the rest sent; the server's
    error_message is logged once per interval, not once per response. gRPC, HTTP protobuf and HTTP JSON."""
    fs = {"otlp": PartialGrpcBackend().start(), "otlp/http": PartialHttpBackend().start(),
          "otlp/json": PartialHttpBackend().start()}
    try:
        exporters = {"otlp": otlp_grpc_exporter(fs["otlp"]), "otlp/http": otlp_http_exporter(fs["otlp/http"]),
                     "otlp/json": otlp_http_exporter(fs["otlp/json"], protocol="http/json")}
        col = collectors.launch("partial", collector_config(exporters, send_batch_size=4, timeout="100ms"))
        sent = {}
        for round_ in range(3):
            sent.update(keyed(send_sdk_spans(col, N_PARTIAL // 3, "partial%d" % round_)))
        problems = []
        for name, fake in fs.items():
            missing = fake.wait_for_keys(sent, timeout=15)
            if missing:
                problems.append("%s: %d of %d spans never arrived" % (name, len(missing), len(sent)))
        requests_ = {name: [r for r in fake.snapshot() if r.accepted] for name, fake in fs.items()}
        ms = wait_metrics(col, lambda ms: all(ms.value(SENT, exporter=n) + ms.value(FAILED, exporter=n) >= N_PARTIAL
                                              for n in fs), timeout=10)
        time.sleep(0.5)  # a (wrong) retry of a partially rejected request would show by now
        ms = col.scrape()
        for name, fake in fs.items():
            problems += fake.violations
            attempts = fake.attempt_counts()
            if any(n != 1 for n in attempts.values()):
                problems.append("%s: a partially accepted request was re-sent (attempts %s); the OTLP "
                                "specification says it must not be" % (name, sorted(attempts.values())))
            rejected = len([r for r in fake.snapshot() if r.accepted and r.spans])
            if len(requests_[name]) < 2:
                problems.append("%s: want several requests to see one log line for them all, got %d"
                                % (name, len(requests_[name])))
            want = (N_PARTIAL - rejected, rejected)
            got = (ms.value(SENT, exporter=name), ms.value(FAILED, exporter=name))
            if got != want:
                problems.append("%s: %d requests each rejected 1 span: want sent=%d failed=%d; got %s"
                                % (name, rejected, want[0], want[1], metrics_text(ms, name)))
        with open(col.stderr_path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read().splitlines() if PARTIAL_MESSAGE in ln]
        for name in fs:
            mine = [ln for ln in lines if ("exporter=%s " % name) in ln + " "]
            if len(mine) != 1:
                problems.append("%s: want the backend's error_message logged once for all its partial successes "
                                "(once per interval), got %d lines:\n%s" % (name, len(mine), "\n".join(lines)))
        fail_if(problems, fs["otlp/http"])
    finally:
        close_all(fs.values())


def imf_fixdate(t):
    return email.utils.formatdate(t, usegmt=True)


def rfc850_date(t):
    return time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(t))


def asctime_date(t):
    return time.asctime(time.gmtime(t))


class DatedRetryAfterBackend(fakes.OTLPHttpFake):
    """Answers its scripted failures with `Retry-After` as an HTTP-date 2-3 s ahead, in one of the three
    formats RFC 9110 §5.6.7 says a recipient MUST accept, and records how long that asks to wait."""

    def __init__(self, form):
        super().__init__()
        self.form = form

    def failure_answer(self, rec, failure):
        status, hdrs, body = super().failure_answer(rec, failure)
        target = math.ceil(time.time()) + 2
        hdrs["Retry-After"] = self.form(target)
        rec.wait = target - time.time()
        rec.retry_after_header = hdrs["Retry-After"]
        return status, hdrs, body


def test_retry_after_as_an_http_date_in_all_three_formats(collectors):
    """exporter-mappings §4: `Retry-After` (seconds or HTTP-date) is the minimum wait before the next attempt.
    RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds; §5.6.7: IMF-fixdate, and the obsolete RFC 850
    and asctime formats. With initial_interval 100ms, a retry sooner than the date ignored the header."""
    forms = {"otlp/imf": (imf_fixdate, 503), "otlp/rfc850": (rfc850_date, 429), "otlp/asctime": (asctime_date, 503)}
    fs = {name: DatedRetryAfterBackend(form).start() for name, (form, _) in forms.items()}
    try:
        for name, (_, status) in forms.items():
            fs[name].script.fail_next(1, status, message="come back later")
        col = collectors.launch("retry-after-date", collector_config({n: otlp_http_exporter(f) for n, f in fs.items()}))
        sent = keyed(send_sdk_spans(col, 3, "dated"))
        problems = []
        for name, fake in fs.items():
            missing = fake.wait_for_keys(sent, timeout=15)
            if missing:
                problems.append("%s: %d spans never accepted" % (name, len(missing)))
                continue
            records = fake.snapshot()
            failed = [r for r in records if not r.accepted]
            if len(failed) != 1:
                problems.append("%s: want one failed attempt, got %d" % (name, len(failed)))
                continue
            later = [r for r in records if r.time > failed[0].time]
            gap = later[0].time - failed[0].time
            if gap < failed[0].wait - 0.05:
                problems.append("%s: re-sent %.2f s after %d with Retry-After %r, which asked for %.2f s"
                                % (name, gap, forms[name][1], failed[0].retry_after_header, failed[0].wait))
            problems += fake.violations
        fail_if(problems, fs["otlp/rfc850"])
    finally:
        close_all(fs.values())


# ---------------------------------------------------------------------------
# 6. Several pipelines
# ---------------------------------------------------------------------------

def test_two_pipelines_each_get_every_span_and_share_one_exporter(collectors, tmp_path):
    """README: `service: pipelines: traces/NAME`, several pipelines. As in the OpenTelemetry Collector ("The same
    receiver can be included in multiple pipelines and multiple pipelines can include the same exporter"): the
    receiver feeds both `traces/a` and `traces/b`, each pipeline's own exporter gets every span, and the exporter
    both list is one instance fed by both, so it gets every span once per pipeline, counted under its one name."""
    shared = fakes.OTLPHttpFake().start()
    try:
        out = {name: str(tmp_path / ("%s.jsonl" % name)) for name in ("a", "b")}
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
            "processors": {"batch": {"send_batch_size": 512, "timeout": "100ms"},
                           "batch/b": {"send_batch_size": 512, "timeout": "100ms"}},
            "exporters": {"file/a": {"path": out["a"]}, "file/b": {"path": out["b"]},
                          "otlp/shared": otlp_http_exporter(shared)},
            "service": {
                "admin": {"endpoint": "127.0.0.1:0"},
                "pipelines": {
                    "traces/a": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file/a", "otlp/shared"]},
                    "traces/b": {"receivers": ["otlp"], "processors": ["batch/b"], "exporters": ["otlp/shared", "file/b"]},
                },
            },
        }
        col = collectors.launch("pipelines", config)
        n = 6
        sent = keyed(send_sdk_spans(col, n, "piped"))
        problems = []
        for name in ("a", "b"):
            got = h.wait_for_output_spans(out[name], n)
            keys = sorted((s.trace_id, s.span_id) for s in got)
            if keys != sorted(sent):
                problems.append("pipeline traces/%s wrote %d spans to file/%s, want each of the %d sent once"
                                % (name, len(got), name, n))
        deadline = time.monotonic() + 10
        while sum(shared.accepted_counts().values()) < 2 * n and time.monotonic() < deadline:
            time.sleep(0.1)
        counts = shared.accepted_counts()
        if set(counts) != set(sent) or any(c != 2 for c in counts.values()):
            problems.append("the shared exporter got %s; want each of the %d spans twice, once per pipeline"
                            % (sorted(counts.values()), n))
        ms = wait_metrics(col, lambda ms: ms.value(SENT, exporter="otlp/shared") >= 2 * n, timeout=5)
        if ms.value(SENT, exporter="otlp/shared") != 2 * n:
            problems.append("sent_spans_total{exporter=otlp/shared} %s, want %d" % (ms.value(SENT, exporter="otlp/shared"), 2 * n))
        problems += shared.violations
        fail_if(problems, shared)
    finally:
        shared.close()
