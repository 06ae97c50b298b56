"""The `memory` exporter and Jaeger's HTTP query API on the admin port (docs/trace-query.md).

Spans come from the OpenTelemetry Python SDK over OTLP/HTTP; the answers are checked against a JSON schema
written from Jaeger's documented JSON model (jaegertracing/jaeger `model/json/model.go`: Trace, Span,
Reference, Process, Log, KeyValue; and the query service's `structuredResponse` envelope with
`structuredError {code, msg}`), then field by field against what the SDK sent.
"""

import json
import time
import urllib.parse

import jsonschema
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, set_span_in_context

import interop_helpers as h

HEX16 = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
TRACE_ID = {"type": "string", "pattern": "^([0-9a-f]{16}|[0-9a-f]{32})$"}
# model/json KeyValue: {key, type, value}; ValueType is one of these strings.
KEY_VALUE = {
    "type": "object",
    "required": ["key", "type", "value"],
    "properties": {
        "key": {"type": "string"},
        "type": {"enum": ["string", "bool", "int64", "float64", "binary"]},
        "value": {},
    },
    "allOf": [
        {"if": {"properties": {"type": {"const": "string"}}}, "then": {"properties": {"value": {"type": "string"}}}},
        {"if": {"properties": {"type": {"const": "bool"}}}, "then": {"properties": {"value": {"type": "boolean"}}}},
        {"if": {"properties": {"type": {"const": "int64"}}}, "then": {"properties": {"value": {"type": "integer"}}}},
        {"if": {"properties": {"type": {"const": "float64"}}}, "then": {"properties": {"value": {"type": "number"}}}},
        {"if": {"properties": {"type": {"const": "binary"}}}, "then": {"properties": {"value": {"type": "string"}}}},
    ],
}
WARNINGS = {"type": ["array", "null"], "items": {"type": "string"}}
SPAN = {
    "type": "object",
    "required": ["traceID", "spanID", "operationName", "references", "startTime", "duration", "tags", "logs",
                 "processID", "warnings"],
    "properties": {
        "traceID": TRACE_ID,
        "spanID": HEX16,
        "flags": {"type": "integer", "minimum": 0},
        "operationName": {"type": "string"},
        "references": {"type": "array", "items": {
            "type": "object",
            "required": ["refType", "traceID", "spanID"],
            "properties": {"refType": {"enum": ["CHILD_OF", "FOLLOWS_FROM"]}, "traceID": TRACE_ID, "spanID": HEX16},
        }},
        "startTime": {"type": "integer", "minimum": 0},  # microseconds since the Unix epoch
        "duration": {"type": "integer", "minimum": 0},   # microseconds
        "tags": {"type": "array", "items": KEY_VALUE},
        "logs": {"type": "array", "items": {
            "type": "object",
            "required": ["timestamp", "fields"],
            "properties": {"timestamp": {"type": "integer", "minimum": 0}, "fields": {"type": "array", "items": KEY_VALUE}},
        }},
        "processID": {"type": "string"},
        "warnings": WARNINGS,
    },
}
TRACE = {
    "type": "object",
    "required": ["traceID", "spans", "processes", "warnings"],
    "properties": {
        "traceID": TRACE_ID,
        "spans": {"type": "array", "items": SPAN},
        "processes": {"type": "object", "additionalProperties": {
            "type": "object",
            "required": ["serviceName", "tags"],
            "properties": {"serviceName": {"type": "string"}, "tags": {"type": "array", "items": KEY_VALUE}},
        }},
        "warnings": WARNINGS,
    },
}
STRUCTURED_ERROR = {"type": "object", "required": ["msg"],
                    "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}}}


def envelope(data_schema):
    """The query service's structuredResponse: {data, total, limit, offset, errors}."""
    return {
        "type": "object",
        "required": ["data", "total", "limit", "offset", "errors"],
        "properties": {
            "data": data_schema,
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "errors": {"type": ["array", "null"], "items": STRUCTURED_ERROR},
        },
    }


NAMES_RESPONSE = envelope({"type": "array", "items": {"type": "string"}})
TRACES_RESPONSE = envelope({"type": "array", "items": TRACE})
ERROR_RESPONSE = envelope({"type": "null"})
ERROR_RESPONSE["properties"]["errors"] = {"type": "array", "minItems": 1, "items": STRUCTURED_ERROR}


OTHER_TRACE = 0x0af7651916cd43dd8448eb211c80319c
OTHER_SPAN = 0xb7ad6b7169203331


def config(tmp_path, memory=None):
    return h.build_config(str(tmp_path / "out.jsonl"), timeout="50ms", overrides={
        "exporters": {"memory": memory or {}},
        "service": {"pipelines": {"traces": {"exporters": ["file", "memory"]}}},
    })


class Agent:
    """One agent process: its resource and a synchronous OTLP/HTTP export per span."""

    def __init__(self, col, service_name, **resource):
        session = requests.Session()
        session.trust_env = False
        self.provider = TracerProvider(resource=Resource.create(dict({"service.name": service_name}, **resource)))
        self.provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces", timeout=10, session=session)))
        self.tracer = self.provider.get_tracer("trace.query.interop", "1.0")

    def close(self):
        self.provider.shutdown()


def get(col, path, status=200, schema=None):
    r = col.admin_get(path)
    assert r.status == status, "GET %s answered %d: %r" % (path, r.status, r.body[:300])
    body = r.json()
    if schema is not None:
        jsonschema.validate(body, schema)
    return body


def wait_for_traces(col, query, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        body = get(col, "/api/traces?" + urllib.parse.urlencode(query), schema=TRACES_RESPONSE)
        if len(body["data"]) >= want or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def tags(items):
    return {t["key"]: (t["type"], t["value"]) for t in items}


@pytest.fixture
def swarm(start_collector, tmp_path):
    """A collector with a memory exporter and one trace: planner (root, server) -> search (child, error, event)."""
    col = start_collector.launch("query", config(tmp_path))
    planner = Agent(col, "planner", **{"agent.name": "planner-agent"})
    search = Agent(col, "search", **{"agent.name": "search-agent"})
    start = time.time_ns()
    root = planner.tracer.start_span("plan", kind=SpanKind.SERVER, start_time=start,
                                     attributes={"gen_ai.usage.input_tokens": 42, "score": 0.5, "ok": True})
    child = search.tracer.start_span("lookup", context=set_span_in_context(root), kind=SpanKind.CLIENT,
                                     start_time=start + 1_000_000,
                                     links=[Link(SpanContext(OTHER_TRACE, OTHER_SPAN, is_remote=True,
                                                             trace_flags=TraceFlags(1)))])
    child.add_event("retry", {"attempt": 2}, timestamp=start + 2_000_000)
    child.set_status(Status(StatusCode.ERROR, "boom"))
    child.end(end_time=start + 3_000_000)
    root.end(end_time=start + 250_000_000)
    planner.close()
    search.close()
    yield col, root.get_span_context(), child.get_span_context(), start
    # the fixture's collector is stopped by start_collector


def test_services_and_operations_answer_jaegers_envelope(swarm):
    col, root, _, _ = swarm
    wait_for_traces(col, {"service": "planner"}, 1)
    services = get(col, "/api/services", schema=NAMES_RESPONSE)
    assert sorted(services["data"]) == ["planner", "search"]
    assert services["total"] == 2 and services["errors"] is None
    assert get(col, "/api/services/search/operations", schema=NAMES_RESPONSE)["data"] == ["lookup"]
    assert get(col, "/api/services/nobody/operations", schema=NAMES_RESPONSE)["data"] == []


def test_a_trace_by_id_is_jaegers_model_field_by_field(swarm):
    col, root, child, start = swarm
    trace_id = format(root.trace_id, "032x")
    wait_for_traces(col, {"service": "search"}, 1)
    deadline = time.monotonic() + 10
    while True:
        body = get(col, "/api/traces/" + trace_id, schema=TRACES_RESPONSE)
        if len(body["data"][0]["spans"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [trace] = body["data"]
    assert trace["traceID"] == trace_id
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {"plan", "lookup"}
    plan, lookup = spans["plan"], spans["lookup"]
    assert plan["spanID"] == format(root.span_id, "016x") and lookup["spanID"] == format(child.span_id, "016x")
    assert plan["traceID"] == lookup["traceID"] == trace_id
    # Microseconds since the epoch, as Jaeger's JSON model has them.
    assert plan["startTime"] == start // 1000 and plan["duration"] == 250_000
    assert lookup["startTime"] == start // 1000 + 1000 and lookup["duration"] == 2000
    assert plan["references"] == []
    # OpenTelemetry's Jaeger rules: the parent is CHILD_OF, a link FOLLOWS_FROM.
    assert lookup["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_id, "spanID": plan["spanID"]},
        {"refType": "FOLLOWS_FROM", "traceID": format(OTHER_TRACE, "032x"), "spanID": format(OTHER_SPAN, "016x")},
    ]
    plan_tags = tags(plan["tags"])
    assert plan_tags["gen_ai.usage.input_tokens"] == ("int64", 42)
    assert plan_tags["score"] == ("float64", 0.5)
    assert plan_tags["ok"] == ("bool", True)
    assert plan_tags["span.kind"] == ("string", "server")
    lookup_tags = tags(lookup["tags"])
    assert lookup_tags["error"] == ("bool", True)
    assert lookup_tags["otel.status_code"] == ("string", "ERROR")
    assert lookup_tags["otel.status_description"] == ("string", "boom")
    assert lookup_tags["span.kind"] == ("string", "client")
    [log] = lookup["logs"]
    assert log["timestamp"] == start // 1000 + 2000
    assert tags(log["fields"]) == {"event": ("string", "retry"), "attempt": ("int64", 2)}
    processes = trace["processes"]
    assert processes[plan["processID"]]["serviceName"] == "planner"
    assert processes[lookup["processID"]]["serviceName"] == "search"
    assert tags(processes[plan["processID"]]["tags"])["agent.name"] == ("string", "planner-agent")
    assert "service.name" not in tags(processes[plan["processID"]]["tags"])


def test_search_by_agent_errors_operation_duration_and_time(swarm):
    col, root, _, start = swarm
    trace_id = format(root.trace_id, "032x")
    wait_for_traces(col, {"service": "search"}, 1)

    def ids(**query):
        body = get(col, "/api/traces?" + urllib.parse.urlencode(query), schema=TRACES_RESPONSE)
        return [t["traceID"] for t in body["data"]]

    assert ids(service="planner", tags=json.dumps({"agent.name": "planner-agent"})) == [trace_id]
    assert ids(service="planner", tags=json.dumps({"agent.name": "search-agent"})) == []
    assert ids(service="search", tags=json.dumps({"error": "true"})) == [trace_id]
    assert ids(service="planner", tags=json.dumps({"error": "true"})) == []
    assert ids(service="planner", operation="plan") == [trace_id]
    assert ids(service="planner", operation="lookup") == []
    assert ids(service="planner", minDuration="200ms") == [trace_id]
    assert ids(service="search", minDuration="200ms") == []
    assert ids(service="search", maxDuration="10ms") == [trace_id]
    assert ids(service="planner", start=start // 1000 - 1_000_000, end=start // 1000 + 1_000_000) == [trace_id]
    assert ids(service="planner", start=start // 1000 + 1_000_000) == []
    assert ids(service="planner", limit=1) == [trace_id]


@pytest.mark.parametrize("query,param", [
    ({}, "service"),
    ({"service": "planner", "limit": "many"}, "limit"),
    ({"service": "planner", "start": "yesterday"}, "start"),
    ({"service": "planner", "minDuration": "soon"}, "minDuration"),
    ({"service": "planner", "tags": "not json"}, "tags"),
])
def test_a_bad_query_parameter_answers_400_in_jaegers_error_shape(start_collector, tmp_path, query, param):
    col = start_collector.launch("bad", config(tmp_path))
    body = get(col, "/api/traces?" + urllib.parse.urlencode(query), status=400, schema=ERROR_RESPONSE)
    assert body["errors"][0]["code"] == 400
    assert "'%s'" % param in body["errors"][0]["msg"]


def test_an_unknown_trace_is_404_and_a_malformed_id_400(start_collector, tmp_path):
    col = start_collector.launch("missing", config(tmp_path))
    body = get(col, "/api/traces/" + "ab" * 16, status=404, schema=ERROR_RESPONSE)
    assert body["errors"][0]["code"] == 404
    get(col, "/api/traces/not-hex", status=400, schema=ERROR_RESPONSE)


def test_the_store_keeps_the_newest_max_traces_and_counts_evictions(start_collector, tmp_path):
    col = start_collector.launch("bounded", config(tmp_path, memory={"max_traces": 3}))
    agent = Agent(col, "planner")
    ids = []
    for index in range(5):
        span = agent.tracer.start_span("step-%d" % index)
        span.end()
        ids.append(format(span.get_span_context().trace_id, "032x"))
    agent.close()
    deadline = time.monotonic() + 10
    while col.scrape().value("agenttrace_memory_evicted_traces_total", exporter="memory") < 2:
        assert time.monotonic() < deadline, "evictions not counted"
        time.sleep(0.05)
    body = get(col, "/api/traces?service=planner&limit=10", schema=TRACES_RESPONSE)
    assert [t["traceID"] for t in body["data"]] == list(reversed(ids[2:]))
    get(col, "/api/traces/" + ids[0], status=404, schema=ERROR_RESPONSE)
