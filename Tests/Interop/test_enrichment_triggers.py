"""agent_enrichment and threshold_triggers, driven by the real OpenTelemetry Python SDK.

  * alerts     the issue's three rules (integration score above 0.8, five errors of one agent within a
               minute, a chat call over 30 s) fire as spans arrive; a local webhook receiver (a tiny Python
               HTTP server) gets each alert within one second of the span's arrival (measured and printed),
               once per cooldown; Slack incoming-webhook and PagerDuty Events API v2 payloads are checked
               field by field against their published schemas; /api/alerts and /metrics agree.
  * delivery   a dead sink and a sink that refuses never delay the others or ingestion; failures count.
  * enrichment agent.name/type/critical, metadata from a YAML file and static attributes reach the Zipkin
               and Jaeger exports (schema-validating fakes from fakes.py) and the service graph's node
               details; the metadata file reloads without a restart, and a bad file keeps the last good.
  * defaults   the embedded default configuration ships the three rules and both processors.
"""

import datetime
import http.server
import json
import os
import re
import threading
import time

import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

import fakes
import interop_helpers as h

PROCESSORS = ["agent_enrichment", "threshold_triggers", "service_graph", "batch"]
ISSUE_RULES = [
    {"name": "high_integration_score", "severity": "warning", "attribute": "intelligence.integration_score",
     "above": 0.8, "group_by": ["agent.name"]},
    {"name": "slow_llm_call", "severity": "warning", "duration_above": "30s",
     "where": {"gen_ai.operation.name": "chat"}, "group_by": ["agent.name"]},
    {"name": "error_burst", "severity": "critical", "status": "error", "count": 5, "window": "60s",
     "group_by": ["agent.name"]},
]
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
METADATA = "research-agent: {team: knowledge, tier: \"1\"}\ncoordinator: {owner: platform, capabilities: [plan, delegate]}\n"


# ---------------------------------------------------------------------------
# The alert receiver (h.AlertReceiver): webhook, Slack incoming webhook and PagerDuty Events API v2
# ---------------------------------------------------------------------------

@pytest.fixture
def receiver():
    r = h.AlertReceiver()
    yield r
    r.close()


@pytest.fixture
def backends():
    zipkin, jaeger = fakes.ZipkinFake().start(), fakes.JaegerFake().start()
    yield zipkin, jaeger
    for f in (zipkin, jaeger):
        f.close()


def collector_config(receiver, metadata_path, zipkin=None, jaeger=None, cooldown="300s", notify=None,
                     rules=ISSUE_RULES):
    exporters = {}
    if zipkin is not None:
        exporters["zipkin"] = {"endpoint": zipkin.url, "timeout": "5s"}
    if jaeger is not None:
        exporters["jaeger"] = {"endpoint": jaeger.address, "timeout": "5s"}
    if not exporters:
        exporters["nop"] = {}
    if notify is None:
        notify = [{"webhook": receiver.url("/hook")},
                  {"slack": "${env:AGENTTRACE_TEST_SLACK_URL}"},
                  {"pagerduty": {"routing_key": "${env:AGENTTRACE_TEST_PD_KEY}", "url": receiver.url("/v2/enqueue")}}]
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "agent_enrichment": {
                "metadata_file": metadata_path,
                "metadata_check_interval": "100ms",
                "critical_types": ["coordinator", "intelligence", "safety"],
                "set": {"deployment.environment": "interop"},
                "from_attributes": [{"from": "gen_ai.agent.name", "to": "agent.target"}],
            },
            "threshold_triggers": {
                "cooldown": cooldown,
                "rules": rules,
                "notify": notify,
                "delivery": {"timeout": "2s", "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms",
                                                                  "max_elapsed_time": "1s"}},
            },
            "service_graph": {"store": {"ttl": "1s"}},
            "batch": {"send_batch_size": 512, "timeout": "100ms"},
        },
        "exporters": exporters,
        "service": {
            "admin": {"endpoint": "127.0.0.1:0"},
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": PROCESSORS, "exporters": list(exporters)}},
        },
    }


def start(collectors, receiver, tmp_path, monkeypatch, name="triggers", **kw):
    monkeypatch.setenv("AGENTTRACE_TEST_SLACK_URL", receiver.url("/slack"))
    monkeypatch.setenv("AGENTTRACE_TEST_PD_KEY", ROUTING_KEY)
    metadata = tmp_path / ("agents-%s.yaml" % name)
    metadata.write_text(METADATA)
    col = collectors.launch(name, collector_config(receiver, str(metadata), **kw))
    col.metadata_path = str(metadata)
    return col


# ---------------------------------------------------------------------------
# The SDK side: one tracer provider per agent, exporting each span as it ends
# ---------------------------------------------------------------------------

class Agent:
    """An agent process as the SDK sees it: its resource, a tracer, and a synchronous OTLP/HTTP export per span
    (SimpleSpanProcessor), so a span's arrival is bracketed by the time before end() and the time it returns."""

    def __init__(self, col, service_name, **resource):
        session = requests.Session()
        session.trust_env = False  # never route loopback traffic through a proxy from the environment
        self.provider = TracerProvider(resource=Resource.create(dict({"service.name": service_name}, **resource)))
        self.provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces", timeout=10, session=session)))
        self.tracer = self.provider.get_tracer("agent.interop", "1.0")

    def span(self, name, attributes=None, kind=SpanKind.INTERNAL, error=False, seconds=None, context=None):
        """Starts and ends one span; returns (span context, monotonic time before end(), time after it returned)."""
        start_ns = time.time_ns() - int(seconds * 1e9) if seconds else None
        sp = self.tracer.start_span(name, kind=kind, attributes=attributes or {}, start_time=start_ns, context=context)
        if error:
            sp.set_status(Status(StatusCode.ERROR, "failed on purpose"))
        before = time.monotonic()
        sp.end()
        return sp.get_span_context(), before, time.monotonic()

    def close(self):
        self.provider.shutdown()


# ---------------------------------------------------------------------------
# Payload checks, from the published schemas
# ---------------------------------------------------------------------------

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
SEVERITIES = ("critical", "error", "warning", "info")
WEBHOOK_FIELDS = ("rule", "severity", "value", "threshold", "service", "agent", "agent_type", "trace_id", "span_id",
                  "span_name", "time", "time_unix_nano", "message", "group", "count", "window_seconds", "suppressed")


def _rfc3339(text):
    if not isinstance(text, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", text):
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def webhook_problems(body, want):
    """The webhook JSON: every field present with its type; `want` holds expected values."""
    if not isinstance(body, dict):
        return ["webhook body is not a JSON object: %r" % (body,)]
    p = []
    if tuple(body) != WEBHOOK_FIELDS:
        p.append("webhook fields %s, want %s" % (list(body), list(WEBHOOK_FIELDS)))
    for f in ("rule", "service", "agent", "span_name", "message", "group"):
        if not isinstance(body.get(f), str):
            p.append("%s %r is not a string" % (f, body.get(f)))
    if body.get("severity") not in SEVERITIES:
        p.append("severity %r" % body.get("severity"))
    for f in ("value", "threshold"):
        if not isinstance(body.get(f), (int, float, str, bool)):
            p.append("%s %r is not a number, string or boolean" % (f, body.get(f)))
    if not (body.get("agent_type") is None or isinstance(body.get("agent_type"), str)):
        p.append("agent_type %r" % body.get("agent_type"))
    if not HEX32.match(str(body.get("trace_id"))) or not HEX16.match(str(body.get("span_id"))):
        p.append("ids %r %r are not lowercase hex of 16 and 8 bytes" % (body.get("trace_id"), body.get("span_id")))
    t = _rfc3339(body.get("time"))
    if t is None:
        p.append("time %r is not RFC 3339" % body.get("time"))
    elif not isinstance(body.get("time_unix_nano"), int) or abs(t.timestamp() - body["time_unix_nano"] / 1e9) > 0.001:
        p.append("time %r and time_unix_nano %r disagree" % (body.get("time"), body.get("time_unix_nano")))
    elif abs(t.timestamp() - time.time()) > 60:
        p.append("time %r is not now" % body.get("time"))
    for f in ("count", "suppressed"):
        if not isinstance(body.get(f), int) or isinstance(body.get(f), bool) or body[f] < 0:
            p.append("%s %r is not a non-negative integer" % (f, body.get(f)))
    if not (body.get("window_seconds") is None or _num(body.get("window_seconds"))):
        p.append("window_seconds %r" % body.get("window_seconds"))
    for k, v in want.items():
        if body.get(k) != v:
            p.append("%s is %r, want %r" % (k, body.get(k), v))
    return p


# Slack Block Kit reference: the blocks and composition objects used, with their documented fields and limits.
SLACK_TEXT_OBJECT = {"type", "text", "emoji", "verbatim"}


def _slack_text(obj, where, types, limit):
    p = []
    if not isinstance(obj, dict) or set(obj) - SLACK_TEXT_OBJECT or obj.get("type") not in types:
        return ["%s: not a text object of type %s: %r" % (where, "/".join(types), obj)]
    if not isinstance(obj.get("text"), str) or not obj["text"]:
        p.append("%s.text is empty or not a string" % where)
    elif len(obj["text"]) > limit:
        p.append("%s.text has %d characters (Slack's maximum is %d)" % (where, len(obj["text"]), limit))
    if "emoji" in obj and (obj["type"] != "plain_text" or not isinstance(obj["emoji"], bool)):
        p.append("%s.emoji is only for plain_text, as a boolean" % where)
    return p


def slack_problems(body):
    """A Slack incoming-webhook message: `text` (required as the notification fallback) and optional `blocks`
    (at most 50) of the types used here, each within Slack's documented limits."""
    if not isinstance(body, dict):
        return ["Slack body is not a JSON object"]
    p = []
    if set(body) - {"text", "blocks", "mrkdwn", "thread_ts"}:
        p.append("unknown top-level fields %s" % sorted(set(body) - {"text", "blocks", "mrkdwn", "thread_ts"}))
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        p.append("text is missing or empty: it is the notification and the fallback")
    blocks = body.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return p + ["blocks is not a list of at most 50"]
    for i, b in enumerate(blocks):
        w = "blocks[%d]" % i
        if not isinstance(b, dict):
            p.append("%s is not an object" % w)
            continue
        if "block_id" in b and (not isinstance(b["block_id"], str) or len(b["block_id"]) > 255):
            p.append("%s.block_id" % w)
        kind = b.get("type")
        if kind == "header":
            p += ["%s: unknown fields" % w] if set(b) - {"type", "text", "block_id"} else []
            p += _slack_text(b.get("text"), w + ".text", ("plain_text",), 150)
        elif kind == "section":
            if set(b) - {"type", "text", "fields", "block_id", "accessory", "expand"}:
                p.append("%s: unknown fields %s" % (w, sorted(set(b) - {"type", "text", "fields", "block_id"})))
            if "text" not in b and "fields" not in b:
                p.append("%s: a section needs text or fields" % w)
            if "text" in b:
                p += _slack_text(b["text"], w + ".text", ("plain_text", "mrkdwn"), 3000)
            if "fields" in b:
                if not isinstance(b["fields"], list) or not 1 <= len(b["fields"]) <= 10:
                    p.append("%s.fields: want 1 to 10 items" % w)
                else:
                    for j, f in enumerate(b["fields"]):
                        p += _slack_text(f, "%s.fields[%d]" % (w, j), ("plain_text", "mrkdwn"), 2000)
        elif kind == "context":
            if set(b) - {"type", "elements", "block_id"}:
                p.append("%s: unknown fields" % w)
            els = b.get("elements")
            if not isinstance(els, list) or not 1 <= len(els) <= 10:
                p.append("%s.elements: want 1 to 10 items" % w)
            else:
                for j, e in enumerate(els):
                    p += _slack_text(e, "%s.elements[%d]" % (w, j), ("plain_text", "mrkdwn"), 3000)
        else:
            p.append("%s: unexpected block type %r" % (w, kind))
    for m in re.finditer(r"[<>]", json.dumps(body)):
        p.append("unescaped %r in the message (Slack wants &lt; &gt;)" % m.group(0))
        break
    return p


PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


def pagerduty_problems(body, want_severity):
    """A PagerDuty Events API v2 `enqueue` trigger event, per the API reference."""
    if not isinstance(body, dict):
        return ["PagerDuty body is not a JSON object"]
    p = []
    if set(body) - PD_TOP:
        p.append("unknown top-level fields %s" % sorted(set(body) - PD_TOP))
    if body.get("routing_key") != ROUTING_KEY:
        p.append("routing_key %r, want the configured %r" % (body.get("routing_key"), ROUTING_KEY))
    if body.get("event_action") != "trigger":
        p.append("event_action %r, want trigger" % body.get("event_action"))
    dk = body.get("dedup_key")
    if not isinstance(dk, str) or not dk or len(dk) > 255:
        p.append("dedup_key %r: want a string of 1 to 255 characters" % (dk,))
    if "client" in body and not isinstance(body["client"], str):
        p.append("client is not a string")
    pl = body.get("payload")
    if not isinstance(pl, dict):
        return p + ["payload is missing"]
    if set(pl) - PD_PAYLOAD:
        p.append("unknown payload fields %s" % sorted(set(pl) - PD_PAYLOAD))
    for f in ("summary", "source"):
        if not isinstance(pl.get(f), str) or not pl[f]:
            p.append("payload.%s is required and non-empty" % f)
    if isinstance(pl.get("summary"), str) and len(pl["summary"]) > 1024:
        p.append("payload.summary longer than 1024 characters")
    if pl.get("severity") != want_severity or pl.get("severity") not in SEVERITIES:
        p.append("payload.severity %r, want %r (one of %s)" % (pl.get("severity"), want_severity, SEVERITIES))
    if "timestamp" in pl and _rfc3339(pl["timestamp"]) is None:
        p.append("payload.timestamp %r is not ISO 8601" % pl["timestamp"])
    for f in ("component", "group", "class"):
        if f in pl and not isinstance(pl[f], str):
            p.append("payload.%s is not a string" % f)
    if "custom_details" in pl and not isinstance(pl["custom_details"], dict):
        p.append("payload.custom_details is not an object")
    return p


def fail_if(problems, what=""):
    if problems:
        pytest.fail("%s\n  %s" % (what, "\n  ".join(problems)), pytrace=False)


def alerts_api(col):
    r = col.admin_get("/api/alerts")
    assert r.status == 200 and r.content_type.startswith("application/json"), (r.status, r.content_type, r.body[:300])
    body = r.json()
    assert isinstance(body, dict) and list(body) == ["alerts"] and isinstance(body["alerts"], list), body
    return body["alerts"]


def wait_metric(col, name, want, timeout=10.0, **labels):
    deadline = time.monotonic() + timeout
    while True:
        v = col.scrape().value(name, default=None, **labels)
        if v is not None and v >= want:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s%r is %r after %.0fs, want >= %r" % (name, labels, v, timeout, want))
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------

def test_alert_reaches_the_webhook_within_a_second_once_per_cooldown(collectors, receiver, tmp_path, monkeypatch):
    col = start(collectors, receiver, tmp_path, monkeypatch, "score")
    agent = Agent(col, "research-agent")
    try:
        ctx, before, after = agent.span("score integration", {"intelligence.integration_score": 0.93})
        [post] = receiver.wait("/hook")
        latency = post["time"] - before
        print("\nalert latency: webhook received the alert %.1f ms after the SDK began exporting the span "
              "(the collector acknowledged the export after %.1f ms)" % (latency * 1000, (after - before) * 1000))
        assert latency < 1.0, "the webhook got the alert %.3f s after the span was sent (want < 1 s)" % latency

        fail_if(webhook_problems(post["json"], {
            "rule": "high_integration_score", "severity": "warning", "value": 0.93, "threshold": 0.8,
            "service": "research-agent", "agent": "research-agent", "agent_type": "research",
            "trace_id": "%032x" % ctx.trace_id, "span_id": "%016x" % ctx.span_id, "span_name": "score integration",
            "group": "agent.name=research-agent", "count": 1, "window_seconds": None, "suppressed": 0}),
            "webhook payload")
        assert post["headers"].get("content-type") == "application/json", post["headers"]

        [slack] = receiver.wait("/slack")
        fail_if(slack_problems(slack["json"]), "Slack payload")
        assert "high_integration_score" in slack["json"]["text"] and "research-agent" in json.dumps(slack["json"])
        [pd] = receiver.wait("/v2/enqueue")
        fail_if(pagerduty_problems(pd["json"], "warning"), "PagerDuty payload")
        assert pd["json"]["dedup_key"] == "agenttrace/high_integration_score/agent.name=research-agent"
        assert pd["json"]["payload"]["class"] == "high_integration_score"
        assert pd["json"]["payload"]["source"] == "research-agent"
        assert pd["json"]["payload"]["custom_details"] == post["json"]

        # Inside the cooldown: the same agent matches again and again, and nobody is alerted again.
        for score in (0.95, 0.99, 0.85):
            agent.span("score again", {"intelligence.integration_score": score})
        agent.span("score low", {"intelligence.integration_score": 0.2})
        wait_metric(col, "agenttrace_triggers_suppressed_total", 3, rule="high_integration_score")
        # Another agent is another group: it is alerted at once.
        other = Agent(col, "intelligence-core")
        other.span("score", {"intelligence.integration_score": 0.81})
        receiver.wait("/hook", 2)
        time.sleep(0.5)  # anything still in flight for research-agent would have arrived by now
        hooks = receiver.at("/hook")
        assert [(p["json"]["agent"], p["json"]["suppressed"]) for p in hooks] == \
            [("research-agent", 0), ("intelligence-core", 0)], [p["json"] for p in hooks]
        assert hooks[1]["json"]["agent_type"] == "intelligence"

        listed = alerts_api(col)
        assert [a["agent"] for a in listed] == ["intelligence-core", "research-agent"], listed
        assert listed[1] == post["json"], "/api/alerts and the webhook disagree:\n%r\n%r" % (listed[1], post["json"])
        assert [a["agent"] for a in col.admin_get("/api/alerts?limit=1").json()["alerts"]] == ["intelligence-core"]

        ms = col.scrape()
        assert ms.value("agenttrace_triggers_fired_total", rule="high_integration_score") == 2
        assert ms.value("agenttrace_triggers_suppressed_total", rule="high_integration_score") == 3
        assert ms.value("agenttrace_triggers_matched_spans_total", rule="high_integration_score") == 5
        assert ms.value("agenttrace_triggers_fired_total", rule="error_burst", default=None) == 0
        for sink in ("webhook", "slack", "pagerduty"):
            assert wait_metric(col, "agenttrace_alerts_delivered_total", 2, processor="threshold_triggers", sink=sink) == 2
            assert ms.value("agenttrace_alerts_delivery_failed_total", processor="threshold_triggers", sink=sink) == 0
        assert ms.types.get("agenttrace_triggers_fired_total") == "counter"
    finally:
        agent.close()


def test_the_next_alert_after_the_cooldown_reports_the_suppressed_ones(collectors, receiver, tmp_path, monkeypatch):
    col = start(collectors, receiver, tmp_path, monkeypatch, "cooldown", cooldown="1s",
                notify=[{"webhook": receiver.url("/hook")}])
    agent = Agent(col, "coordinator-main")
    try:
        agent.span("first", {"intelligence.integration_score": 0.9})
        receiver.wait("/hook")
        agent.span("second", {"intelligence.integration_score": 0.9})
        agent.span("third", {"intelligence.integration_score": 0.9})
        wait_metric(col, "agenttrace_triggers_suppressed_total", 2, rule="high_integration_score")
        time.sleep(1.1)  # the cooldown passes
        agent.span("fourth", {"intelligence.integration_score": 0.9})
        first, second = receiver.wait("/hook", 2)
        assert (first["json"]["span_name"], first["json"]["suppressed"]) == ("first", 0)
        assert (second["json"]["span_name"], second["json"]["suppressed"]) == ("fourth", 2)
    finally:
        agent.close()


def test_error_burst_and_slow_llm_call(collectors, receiver, tmp_path, monkeypatch):
    col = start(collectors, receiver, tmp_path, monkeypatch, "rules")
    research, writer = Agent(col, "research-agent"), Agent(col, "writer-agent")
    try:
        for i in range(4):
            research.span("tool call %d" % i, error=True)
            writer.span("draft %d" % i, error=True)
        ctx, before, _ = research.span("tool call 4", error=True)
        [burst] = receiver.wait("/hook", rule="error_burst")
        print("\nerror_burst latency: %.1f ms after the fifth error span was sent" % ((burst["time"] - before) * 1000))
        assert burst["time"] - before < 1.0
        fail_if(webhook_problems(burst["json"], {
            "rule": "error_burst", "severity": "critical", "value": "error", "threshold": "error",
            "agent": "research-agent", "group": "agent.name=research-agent", "count": 5, "window_seconds": 60,
            "span_id": "%016x" % ctx.span_id, "suppressed": 0}), "error_burst webhook payload")
        [pd] = receiver.wait("/v2/enqueue", rule="error_burst")
        fail_if(pagerduty_problems(pd["json"], "critical"), "error_burst PagerDuty payload")
        [slack] = receiver.wait("/slack", rule="error_burst")
        fail_if(slack_problems(slack["json"]), "error_burst Slack payload")

        ctx, before, _ = writer.span("chat gpt-4o", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
                                     kind=SpanKind.CLIENT, seconds=31)
        writer.span("embeddings", {"gen_ai.operation.name": "embeddings"}, kind=SpanKind.CLIENT, seconds=45)
        writer.span("quick chat", {"gen_ai.operation.name": "chat"}, kind=SpanKind.CLIENT, seconds=2)
        [slow] = receiver.wait("/hook", rule="slow_llm_call")
        assert slow["time"] - before < 1.0
        fail_if(webhook_problems(slow["json"], {"rule": "slow_llm_call", "agent": "writer-agent", "threshold": 30,
                                                "span_name": "chat gpt-4o", "span_id": "%016x" % ctx.span_id}),
                "slow_llm_call webhook payload")
        assert 31 <= slow["json"]["value"] < 33, slow["json"]
        time.sleep(0.5)
        assert sorted(h.rule_of(p) for p in receiver.at("/hook")) == ["error_burst", "slow_llm_call"], \
            [p["json"] for p in receiver.at("/hook")]
        ms = col.scrape()
        assert ms.value("agenttrace_triggers_matched_spans_total", rule="error_burst") == 9
        assert ms.value("agenttrace_triggers_matched_spans_total", rule="slow_llm_call") == 1
    finally:
        research.close()
        writer.close()


def test_below_message_and_where_span_name(collectors, receiver, tmp_path, monkeypatch):
    """docs/agent-enrichment-and-triggers.md, rule keys: `below: N` is strict and numeric; `message` replaces the
    generated sentence; `where: {span.name: …}` filters on the span's own name."""
    rules = [
        {"name": "low_confidence", "severity": "info", "attribute": "gen_ai.confidence", "below": 0.5,
         "message": "the judge is unsure of itself"},
        {"name": "flaky_fetch", "attribute": "retries", "above": 2, "where": {"span.name": "fetch page"}},
    ]
    col = start(collectors, receiver, tmp_path, monkeypatch, "below", rules=rules,
                notify=[{"webhook": receiver.url("/hook")}])
    agent = Agent(col, "research-agent")
    try:
        agent.span("judge", {"gen_ai.confidence": 0.5})       # equal: below is strict
        agent.span("judge", {"gen_ai.confidence": 0.9})
        agent.span("judge", {"gen_ai.confidence": "unsure"})  # not a number
        agent.span("fetch index", {"retries": 5})             # where: span.name does not hold
        agent.span("fetch page", {"retries": 2})              # above is strict
        low_ctx, _, _ = agent.span("judge", {"gen_ai.confidence": "0.25"})  # a string that reads as a number
        fetch_ctx, _, _ = agent.span("fetch page", {"retries": 3})
        [low] = receiver.wait("/hook", rule="low_confidence")
        [fetch] = receiver.wait("/hook", rule="flaky_fetch")
        fail_if(webhook_problems(low["json"], {
            "rule": "low_confidence", "severity": "info", "threshold": 0.5, "span_name": "judge",
            "span_id": "%016x" % low_ctx.span_id, "message": "the judge is unsure of itself"}), "below rule payload")
        assert low["json"]["value"] in ("0.25", 0.25), low["json"]  # the attribute's value, as sent or as read
        fail_if(webhook_problems(fetch["json"], {
            "rule": "flaky_fetch", "severity": "warning", "value": 3, "threshold": 2, "span_name": "fetch page",
            "span_id": "%016x" % fetch_ctx.span_id}), "where span.name payload")
        assert fetch["json"]["message"] and fetch["json"]["message"] != "the judge is unsure of itself", fetch["json"]
        time.sleep(0.5)  # a wrong alert for one of the non-matching spans would have arrived by now
        assert sorted(h.rule_of(p) for p in receiver.at("/hook")) == ["flaky_fetch", "low_confidence"], \
            [p["json"] for p in receiver.at("/hook")]
        ms = col.scrape()
        assert ms.value("agenttrace_triggers_matched_spans_total", rule="low_confidence") == 1
        assert ms.value("agenttrace_triggers_matched_spans_total", rule="flaky_fetch") == 1
    finally:
        agent.close()


def test_a_dead_or_refusing_sink_never_slows_the_others_and_failures_count(collectors, receiver, tmp_path, monkeypatch):
    dead = fakes.ReservedPort()  # connections refused: a sink that is down
    try:
        col = start(collectors, receiver, tmp_path, monkeypatch, "dead", notify=[
            {"webhook": "http://127.0.0.1:%d/hook" % dead.port},
            {"webhook": receiver.url("/refuse")},
            {"webhook": receiver.url("/hook")},
        ])
        agents = [Agent(col, "agent-%d" % i) for i in range(20)]
        try:
            started = time.monotonic()
            sent = {"agent-%d" % i: a.span("score", {"intelligence.integration_score": 0.9})[1] for i, a in enumerate(agents)}
            took = time.monotonic() - started
            receiver.wait("/hook", 20)
            worst = max(p["time"] - sent[p["json"]["agent"]] for p in receiver.at("/hook"))
            print("\n20 alerts with a dead sink and a refusing one: ingestion took %.0f ms; the live webhook got each "
                  "alert within %.0f ms of its span" % (took * 1000, worst * 1000))
            assert worst < 1.0, "the live sink waited on the dead one: %.3f s" % worst
            wait_metric(col, "agenttrace_alerts_delivery_failed_total", 20, processor="threshold_triggers", sink="webhook/2")
            # A refused connection costs the request's timeout (2s: the HTTP client keeps trying to connect until
            # then), after which max_elapsed_time (1s) allows no retry.
            wait_metric(col, "agenttrace_alerts_delivery_failed_total", 1, timeout=15, processor="threshold_triggers",
                        sink="webhook")
            ms = col.scrape()
            assert ms.value("agenttrace_alerts_delivered_total", processor="threshold_triggers", sink="webhook/3") == 20
            assert ms.value("agenttrace_alerts_delivery_retries_total", processor="threshold_triggers", sink="webhook/2") == 0
            assert len(receiver.at("/refuse")) == 20  # refused (400) means no retry
            assert ms.value("agenttrace_receiver_accepted_spans_total", receiver="otlp", transport="http") == 20
        finally:
            for a in agents:
                a.close()
    finally:
        dead.release()


# ---------------------------------------------------------------------------
# Enrichment in the exports and the service graph
# ---------------------------------------------------------------------------

def zipkin_tags(zipkin, span_id):
    for s in zipkin.accepted_spans():
        if s.key[1] == span_id:
            return s.span.get("tags", {}), s.span
    return None, None


def jaeger_process_tags(jaeger, span_id):
    for s in jaeger.accepted_spans():
        if s.key[1] == span_id:
            out = {}
            for kv in s.process.tags:
                out[kv.key] = {0: kv.v_str, 1: kv.v_bool, 2: kv.v_int64, 3: kv.v_float64}.get(kv.v_type)
            return out, s
    return None, None


def graph_nodes(col):
    r = col.admin_get("/api/service-graph")
    assert r.status == 200, r.body[:300]
    return {n["id"]: n for n in r.json()["nodes"]}


def wait_nodes(col, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        nodes = graph_nodes(col)
        if want(nodes):
            return nodes
        if time.monotonic() > deadline:
            raise AssertionError("service graph nodes never matched: %s" % json.dumps(nodes, indent=1)[:4000])
        time.sleep(0.1)


def coordinator_calls_research(coordinator, research, score=None):
    """coordinator-main (CLIENT, naming the agent it calls) -> research-agent (SERVER): an edge between two nodes."""
    with coordinator.tracer.start_as_current_span("delegate research", kind=SpanKind.CLIENT,
                                                  attributes={"gen_ai.agent.name": "research-agent"}) as client:
        client_ctx = client.get_span_context()
        parent = trace_api.set_span_in_context(client)
        server_ctx, _, _ = research.span("research", {"intelligence.integration_score": score} if score else None,
                                         kind=SpanKind.SERVER, context=parent)
    return client_ctx, server_ctx


def test_enriched_attributes_in_zipkin_jaeger_and_the_service_graph(collectors, receiver, backends, tmp_path,
                                                                    monkeypatch):
    zipkin, jaeger = backends
    col = start(collectors, receiver, tmp_path, monkeypatch, "enrich", zipkin=zipkin, jaeger=jaeger)
    coordinator = Agent(col, "coordinator-main", **{"service.version": "2.1"})
    research = Agent(col, "research-agent")
    try:
        client_ctx, server_ctx = coordinator_calls_research(coordinator, research, score=0.97)
        client_id, server_id = "%016x" % client_ctx.span_id, "%016x" % server_ctx.span_id
        missing = zipkin.wait_for_keys([("%032x" % client_ctx.trace_id, client_id),
                                        ("%032x" % server_ctx.trace_id, server_id)], 10)
        assert not missing, zipkin.describe()
        jaeger.wait_for(lambda f: {client_id, server_id} <= {s.key[1] for s in f.accepted_spans()}, 10)
        assert not zipkin.violations, "\n".join(zipkin.violations)
        assert not jaeger.violations, "\n".join(jaeger.violations)

        tags, span = zipkin_tags(zipkin, client_id)
        assert span["localEndpoint"]["serviceName"] == "coordinator-main"
        want = {"agent.name": "coordinator-main", "agent.type": "coordinator", "agent.critical": "true",
                "agent.owner": "platform", "agent.capabilities": '["plan","delegate"]',
                "deployment.environment": "interop", "agent.target": "research-agent"}
        got = {k: tags.get(k) for k in want}
        assert got == want, "Zipkin tags of the coordinator's span: %r" % tags
        tags, _ = zipkin_tags(zipkin, server_id)
        want = {"agent.name": "research-agent", "agent.type": "research", "agent.critical": "false",
                "agent.team": "knowledge", "agent.tier": "1", "alert.rule": "high_integration_score"}
        assert {k: tags.get(k) for k in want} == want, "Zipkin tags of the research span: %r" % tags

        process, js = jaeger_process_tags(jaeger, client_id)
        assert js.process.service_name == "coordinator-main"
        want = {"agent.name": "coordinator-main", "agent.type": "coordinator", "agent.critical": True,
                "agent.owner": "platform", "deployment.environment": "interop"}
        assert {k: process.get(k) for k in want} == want, "Jaeger process tags: %r" % process
        process, _ = jaeger_process_tags(jaeger, server_id)
        assert (process.get("agent.critical"), process.get("agent.team")) == (False, "knowledge"), process

        nodes = wait_nodes(col, lambda n: "coordinator-main" in n and "research-agent" in n)
        c, r = nodes["coordinator-main"], nodes["research-agent"]
        assert (c.get("detail__agent_type"), c.get("detail__agent_critical"), c.get("detail__agent_owner")) == \
            ("coordinator", "true", "platform"), c
        assert c.get("detail__agent_capabilities") == "plan, delegate", c
        assert (r.get("detail__agent_type"), r.get("detail__agent_critical"), r.get("detail__agent_team"),
                r.get("detail__agent_tier")) == ("research", "false", "knowledge", "1"), r
        fields = col.admin_get("/api/graph/fields").json()
        declared = {f["field_name"] for f in fields["nodes_fields"]}
        undeclared = {k for n in nodes.values() for k in n} - declared
        assert not undeclared, "node fields missing from /api/graph/fields: %s" % sorted(undeclared)
    finally:
        coordinator.close()
        research.close()


def test_metadata_file_reloads_without_restart_and_a_bad_file_keeps_the_last_good(collectors, receiver, backends,
                                                                                  tmp_path, monkeypatch):
    zipkin, jaeger = backends
    col = start(collectors, receiver, tmp_path, monkeypatch, "reload", zipkin=zipkin, jaeger=jaeger)
    coordinator, research = Agent(col, "coordinator-main"), Agent(col, "research-agent")

    def team_of_next_span():
        ctx, _, _ = research.span("lookup")
        key = ("%032x" % ctx.trace_id, "%016x" % ctx.span_id)
        assert not zipkin.wait_for_keys([key], 10), zipkin.describe()
        return zipkin_tags(zipkin, key[1])[0].get("agent.team")

    try:
        assert team_of_next_span() == "knowledge"
        with open(col.metadata_path, "w") as f:
            f.write("research-agent: {team: retrieval, tier: \"2\"}\n")
        deadline = time.monotonic() + 10
        while team_of_next_span() != "retrieval":
            assert time.monotonic() < deadline, "the changed metadata file was not picked up"
            time.sleep(0.1)
        coordinator_calls_research(coordinator, research)
        wait_nodes(col, lambda n: n.get("research-agent", {}).get("detail__agent_tier") == "2")

        with open(col.metadata_path, "w") as f:
            f.write("research-agent: [this is: not a mapping\n")
        wait_metric(col, "agenttrace_processor_agent_enrichment_metadata_reload_failures_total", 1,
                    processor="agent_enrichment")
        assert team_of_next_span() == "retrieval", "a bad metadata file replaced the last good one"
        time.sleep(0.5)  # several more checks of the unchanged bad file
        with open(os.path.join(col.workdir, "stderr.log"), "rb") as f:
            errors = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if "metadata file is invalid" in ln]
        assert len(errors) == 1, "want one error line for one bad file, got %d:\n%s" % (len(errors), "\n".join(errors))
        assert col.scrape().value("agenttrace_processor_agent_enrichment_metadata_reload_failures_total",
                                  processor="agent_enrichment") == 1
    finally:
        coordinator.close()
        research.close()


# ---------------------------------------------------------------------------
# The embedded default configuration and validation
# ---------------------------------------------------------------------------

def test_the_default_configuration_ships_the_rules_and_alerts_through_env_sinks(agenttrace_bin, collectors, receiver,
                                                                               monkeypatch):
    r = h.run_cli(agenttrace_bin, ["validate", "--print-default"], timeout=30)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for rule in ("high_integration_score", "slow_llm_call", "error_burst"):
        assert "name: %s" % rule in text, "the default configuration lacks the %s rule" % rule
    assert re.search(r"processors: \[agent_enrichment, anomaly_detection, threshold_triggers, service_graph, tail_sampling, "
                     r"batch\]", text), text
    for policy in ("errors", "slow", "alerts", "anomalies", "baseline"):
        assert "name: %s, type:" % policy in text, "the default tail_sampling lacks the %s policy" % policy
    # The same configuration on free loopback ports, the webhook switched on through its environment variable.
    text = text.replace("localhost:4317", "127.0.0.1:0").replace("localhost:4318", "127.0.0.1:0") \
        .replace("localhost:8888", "127.0.0.1:0")
    monkeypatch.setenv("AGENTTRACE_ALERT_WEBHOOK_URL", receiver.url("/hook"))
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("PD_ROUTING_KEY", raising=False)
    col = collectors.launch("default", {"receivers": {"otlp": {"protocols": {"grpc": {}, "http": {}}}}}, text=text)
    agent = Agent(col, "intelligence-core")
    try:
        agent.span("score", {"intelligence.integration_score": 0.91})
        [post] = receiver.wait("/hook")
        fail_if(webhook_problems(post["json"], {"rule": "high_integration_score", "agent": "intelligence-core",
                                                "agent_type": "intelligence"}), "default-config webhook payload")
        assert alerts_api(col)[0] == post["json"]
        wait_nodes(col, lambda n: True)  # service_graph answers: it is in the default pipeline
    finally:
        agent.close()


def test_validate_names_the_key_of_a_bad_rule(agenttrace_bin, tmp_path):
    cfg = collector_config(None, "/nonexistent.yaml", notify=[], rules=[{"name": "x", "severity": "urgent",
                                                                         "status": "error"}])
    del cfg["processors"]["agent_enrichment"]["metadata_file"]
    path = h.write_config(str(tmp_path / "bad.yaml"), cfg)
    r = h.run_cli(agenttrace_bin, ["validate", "--config", path], timeout=30)
    assert r.returncode != 0, r.stdout
    assert "processors.threshold_triggers.rules[0].severity" in r.stdout + r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------------------
# Shutdown with alerts queued
# ---------------------------------------------------------------------------

class SlowRefusingSink:
    """A webhook that records every POST (arrival time, the alert's span id) and answers 503 after 0.2 s, so
    any retry would show; it holds the first request until release(), so the rest queue up behind it."""

    def __init__(self):
        self.posts = []
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.released = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    span_id = json.loads(body.decode("utf-8")).get("span_id")
                except (ValueError, AttributeError):
                    span_id = None
                with sink.lock:
                    sink.posts.append((arrived, span_id))
                    first = len(sink.posts) == 1
                if first:
                    sink.held.set()
                    sink.released.wait(20)
                time.sleep(0.2)
                answer = b'{"error":"try later"}'
                self.send_response(503)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/hook" % self.server.server_address[1]

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


N_QUEUED_ALERTS = 40
DRAIN_SECONDS = 5.0


def test_at_shutdown_queued_alerts_get_one_attempt_each_for_up_to_5_seconds(collectors, receiver, tmp_path):
    """docs/agent-enrichment-and-triggers.md: at shutdown, queued alerts get one attempt each for up to 5 s.
    40 alerts queue behind a held request to a sink that answers 503 after 0.2 s. After SIGTERM: no alert is
    attempted twice (retries stop), attempts begin only within the 5 s (about 25 fit, so some but not all
    are tried), the rest are counted as left undelivered, and the process exits soon after the 5 s."""
    sink = SlowRefusingSink()
    try:
        rules = [{"name": "every_error", "severity": "warning", "status": "error"}]
        metadata = tmp_path / "agents-alert-drain.yaml"
        metadata.write_text(METADATA)
        config = collector_config(receiver, str(metadata), cooldown="0s", rules=rules, notify=[{"webhook": sink.url()}])
        # The held request must not time out (and be retried) before SIGTERM.
        config["processors"]["threshold_triggers"]["delivery"]["timeout"] = "30s"
        col = collectors.launch("alert-drain", config)
        agent = Agent(col, "coordinator-main")
        try:
            for i in range(N_QUEUED_ALERTS):
                agent.span("step %d" % i, error=True)
        finally:
            agent.close()
        wait_metric(col, "agenttrace_triggers_fired_total", N_QUEUED_ALERTS, rule="every_error")
        assert sink.held.wait(10), "the sink never got the first alert"
        wait_metric(col, "agenttrace_alerts_queue_size", N_QUEUED_ALERTS - 1, processor="threshold_triggers", sink="webhook")
        before = len(sink.posts)
        sigterm = time.monotonic()
        col.terminate()
        time.sleep(0.5)   # the pipelines drain and the delivery stops; then the held request gets its 503
        sink.released.set()
        code = col.stop(timeout=20)
        exited = time.monotonic() - sigterm
        with sink.lock:
            posts = list(sink.posts)
        problems = []
        if before != 1:
            problems.append("want only the held request before SIGTERM, the sink had %d" % before)
        ids = [span_id for _, span_id in posts]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            problems.append("alerts attempted more than once after SIGTERM (retries must stop): %s" % twice)
        late = [round(t - sigterm, 2) for t, _ in posts if t - sigterm > DRAIN_SECONDS + 1.0]
        if late:
            problems.append("attempts began %s s after SIGTERM, past the %.0f s drain" % (late, DRAIN_SECONDS))
        tried = len(posts)
        if not 5 <= tried < N_QUEUED_ALERTS:
            problems.append("%d of %d alerts attempted: want each queued alert tried once while the 5 s last "
                            "(~25 at 0.2 s each), not none and not all" % (tried, N_QUEUED_ALERTS))
        if code is None or exited > DRAIN_SECONDS + 4:
            problems.append("the collector exited %.1f s after SIGTERM with code %r" % (exited, code))
        with open(col.stderr_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        left = [m.group(1) for ln in log.splitlines() if "alerts left undelivered at shutdown" in ln
                for m in [re.search(r"\balerts=(\d+)", ln)] if m]
        if sum(int(n) for n in left) != N_QUEUED_ALERTS - tried:
            problems.append("want %d alerts logged as left undelivered, got %s:\n%s"
                            % (N_QUEUED_ALERTS - tried, left, log[-2000:]))
        fail_if(problems, "alerts queued at shutdown")
    finally:
        sink.close()


class DatedRetryAfterSink:
    """A webhook that answers its first POST 429 with `Retry-After` as an HTTP-date 2-3 s ahead (RFC 850 form,
    the obsolete one RFC 9110 §5.6.7 still says recipients MUST accept), then 200; it records arrival times."""

    def __init__(self):
        self.posts = []
        self.wait = None
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                arrived = time.monotonic()
                self.rfile.read(int(self.headers.get("content-length", "0")))
                sink.posts.append(arrived)
                if len(sink.posts) == 1:
                    target = int(time.time()) + 3
                    sink.wait = target - time.time()
                    self.send_response(429)
                    self.send_header("Retry-After", time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(target)))
                else:
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self):
        return "http://127.0.0.1:%d/hook" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_an_alert_sink_retry_after_date_is_waited_for(collectors, receiver, tmp_path):
    """docs/agent-enrichment-and-triggers.md: 429 is retried honouring `Retry-After`, seconds or an HTTP-date.
    With initial_interval 100ms, a retry sooner than the date would have ignored it."""
    sink = DatedRetryAfterSink()
    try:
        metadata = tmp_path / "agents-dated.yaml"
        metadata.write_text(METADATA)
        config = collector_config(receiver, str(metadata), rules=[{"name": "every_error", "status": "error"}],
                                  notify=[{"webhook": sink.url()}])
        config["processors"]["threshold_triggers"]["delivery"]["retry_on_failure"]["max_elapsed_time"] = "30s"
        col = collectors.launch("alert-dated", config)
        agent = Agent(col, "coordinator-main")
        try:
            agent.span("fails", error=True)
        finally:
            agent.close()
        wait_metric(col, "agenttrace_alerts_delivered_total", 1, processor="threshold_triggers", sink="webhook", timeout=15)
        assert len(sink.posts) == 2, sink.posts
        gap = sink.posts[1] - sink.posts[0]
        assert gap >= sink.wait - 0.05, "retried %.2f s after a 429 whose Retry-After date asked for %.2f s" % (gap, sink.wait)
    finally:
        sink.close()
