"""anomaly_detection, driven by a swarm of agents on the real OpenTelemetry Python SDK.

Eight agents, each its own TracerProvider with a BatchSpanProcessor exporting OTLP/HTTP every 100 ms, send
traces as a Poisson process: an LLM call through a gateway (log-normal latency and token counts), tool calls,
a 1% natural error rate on LLM calls. A steady phase must fire zero alerts after the warm-up; then each
injected fault must fire exactly its own signal for the right agent:

  latency x5 on one agent's LLM calls, an error burst on one agent->tool edge, tokens x10 on one agent
  (each within 5 s), one agent going silent (within 2 s of the alert's own limit), one agent looping on a
  tool (before its trace ends), one new agent->tool call; then the shared gateway slows for everyone: one
  incident whose probable_cause is the gateway.

Routing: notify entries with `match:` (real HTTP sinks): each sink gets one notification per incident (then
updates with the alerts that joined), carrying the alerts its match accepts: every alert reaches /all exactly
once, and /critical exactly the critical ones.

The warm-up is shortened (`warmup: 5s`, `min_samples: 20`, `min_silence: 5s`) so the steady phase can run two
minutes (STEADY_SECONDS) and the whole test about three and a half; the statistics are the defaults'.
"""

import json
import math
import random
import threading
import time

import pytest
import requests
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

import interop_helpers as h

AGENTS = ["agent-%d" % i for i in range(8)]
# The steady phase: zero alerts for this long after the warm-up.
STEADY_SECONDS = 120


@pytest.fixture
def receiver():
    r = h.AlertReceiver()
    yield r
    r.close()


def config(receiver):
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {
            "agent_enrichment": {"critical_types": ["safety"]},
            "anomaly_detection": {
                "warmup": "5s", "min_samples": 20,
                "silence": {"min_silence": "5s"},
                "loop": {"trace_idle": "2s"},
                "notify": [{"webhook": receiver.url("/critical"), "match": {"severity": "critical"}},
                           {"webhook": receiver.url("/all")}],
                "delivery": {"timeout": "2s"},
                "incidents": {"group_wait": "2s", "group_interval": "5s"},
            },
            "batch": {"send_batch_size": 512, "timeout": "100ms"},
        },
        "exporters": {"nop": {}},
        "service": {
            "admin": {"endpoint": "127.0.0.1:0"},
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["agent_enrichment", "anomaly_detection", "batch"],
                                     "exporters": ["nop"]}},
        },
    }


class SwarmAgent:
    """One agent process: its own provider, exporting batches every 100 ms, and its faults."""

    def __init__(self, col, name, agent_type="worker"):
        session = requests.Session()
        session.trust_env = False
        self.name = name
        self.provider = TracerProvider(resource=Resource.create({"service.name": name, "agent.name": name,
                                                                 "agent.type": agent_type}))
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces", timeout=10, session=session),
            schedule_delay_millis=100, max_export_batch_size=512))
        self.tracer = self.provider.get_tracer("swarm", "1.0")
        self.latency_factor = 1.0
        self.token_factor = 1.0
        self.tool_error_share = 0.0
        self.extra_tool = None
        self.silent = False

    def trace(self, rng):
        now = time.time_ns()
        root = self.tracer.start_span("handle task", kind=SpanKind.SERVER,
                                      start_time=now - int(rng.lognormvariate(math.log(2.0), 0.3) * 1e9))
        ctx = trace_api.set_span_in_context(root)
        for _ in range(2 + int(rng.random() * 2)):
            seconds = rng.lognormvariate(math.log(0.8), 0.35) * self.latency_factor
            sp = self.tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, context=ctx, start_time=now - int(seconds * 1e9),
                                        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                                                    "gen_ai.usage.input_tokens": int(rng.lognormvariate(math.log(600), 0.4)
                                                                                     * self.token_factor),
                                                    "gen_ai.usage.output_tokens": int(rng.lognormvariate(math.log(200), 0.5)
                                                                                      * self.token_factor),
                                                    "peer.service": "llm-gateway"})
            if rng.random() < 0.01:
                sp.set_status(Status(StatusCode.ERROR, "natural"))
            sp.end(end_time=now)
        for _ in range(1 + int(rng.random() * 2)):
            seconds = rng.lognormvariate(math.log(0.2), 0.4)
            sp = self.tracer.start_span("execute_tool search", kind=SpanKind.CLIENT, context=ctx,
                                        start_time=now - int(seconds * 1e9),
                                        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                                                    "peer.service": "search-api"})
            if rng.random() < self.tool_error_share:
                sp.set_status(Status(StatusCode.ERROR, "injected"))
            sp.end(end_time=now)
        if self.extra_tool:
            sp = self.tracer.start_span("execute_tool " + self.extra_tool, kind=SpanKind.CLIENT, context=ctx,
                                        attributes={"gen_ai.operation.name": "execute_tool",
                                                    "gen_ai.tool.name": self.extra_tool})
            sp.end()
        root.end(end_time=now)

    def close(self):
        self.provider.shutdown()


class Swarm:
    """Runs every agent's Poisson arrivals (2 traces/s each) on one thread until stopped."""

    def __init__(self, col):
        self.agents = [SwarmAgent(col, name, "safety" if name == "agent-2" else "worker") for name in AGENTS]
        self.rng = random.Random(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        step = 0.1
        while not self.stop.is_set():
            began = time.monotonic()
            for agent in self.agents:
                if agent.silent:
                    continue
                # Poisson count with mean 2/s x step.
                k, p, limit = 0, self.rng.random(), math.exp(-2.0 * step)
                while p > limit:
                    k += 1
                    p *= self.rng.random()
                for _ in range(k):
                    agent.trace(self.rng)
            time.sleep(max(0.0, step - (time.monotonic() - began)))

    def __getitem__(self, name):
        return self.agents[AGENTS.index(name)]

    def close(self):
        self.stop.set()
        self.thread.join(timeout=10)
        for agent in self.agents:
            agent.close()


def alerts(col):
    r = col.admin_get("/api/alerts?limit=1000")
    assert r.status == 200, r.status
    return list(reversed(json.loads(r.body)["alerts"]))  # oldest first


def wait_alert(col, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [a for a in alerts(col) if pred(a)]
        if found:
            return found[0]
        time.sleep(0.1)
    return None


def test_swarm_steady_then_each_fault_fires_its_own_signal(collectors, receiver):
    col = collectors.launch("anomaly", config(receiver))
    swarm = Swarm(col)
    swarm.thread.start()
    expected = set()  # (rule, agent) pairs the faults may fire
    try:
        # Steady phase: two minutes past the warm-up (5 s, 20 samples, traces finishing after 2 s idle), nothing
        # fires: about 1,900 traces and 9,600 spans, twelve 10-second error and token-rate windows per agent.
        time.sleep(STEADY_SECONDS)
        steady = alerts(col)
        assert steady == [], "alerts in the steady phase:\n%s" % "\n".join(a["message"] for a in steady)

        def fault(rule, agent, start_fault, stop_fault, within):
            start_ns = time.time_ns()
            start_fault()
            expected.add((rule, agent))
            alert = wait_alert(col, lambda a: a["rule"] == rule and a["agent"] == agent and a["time_unix_nano"] >= start_ns,
                               within + 5)
            stop_fault()
            assert alert is not None, "%s for %s never fired; alerts: %s" % (rule, agent, [(a["rule"], a["agent"]) for a in alerts(col)])
            took = (alert["time_unix_nano"] - start_ns) / 1e9
            print("%s for %s after %.2f s (score %s)" % (rule, agent, took, alert["score"]))
            assert alert["kind"] == "anomaly" and alert["signal"] == rule.split("/")[1]
            for key in ("value", "baseline", "score", "trace_id", "span_id", "agent_type", "subject"):
                assert key in alert, key
            return alert, took

        a1 = swarm["agent-1"]
        _, took = fault("anomaly/latency", "agent-1", lambda: setattr(a1, "latency_factor", 5.0),
                        lambda: setattr(a1, "latency_factor", 1.0), 5)
        assert took <= 5
        a2 = swarm["agent-2"]
        alert, took = fault("anomaly/errors", "agent-2", lambda: setattr(a2, "tool_error_share", 1.0),
                            lambda: setattr(a2, "tool_error_share", 0.0), 5)
        assert took <= 5
        assert alert["severity"] == "critical"  # agent-2 is a safety agent: agent.critical
        a4 = swarm["agent-4"]
        _, took = fault("anomaly/tokens", "agent-4", lambda: setattr(a4, "token_factor", 10.0),
                        lambda: setattr(a4, "token_factor", 1.0), 5)
        assert took <= 5
        a5 = swarm["agent-5"]
        alert, _ = fault("anomaly/new_interaction", "agent-5", lambda: setattr(a5, "extra_tool", "shell"),
                         lambda: setattr(a5, "extra_tool", None), 5)
        assert alert["subject"] == "shell"

        # Silence: stop agent-3 and flush what it has; reported within 2 s of the alert's own limit.
        a3 = swarm["agent-3"]
        a3.silent = True
        a3.provider.force_flush()
        stopped = time.time_ns()
        expected.add(("anomaly/silence", "agent-3"))
        alert = wait_alert(col, lambda a: a["rule"] == "anomaly/silence" and a["agent"] == "agent-3", 60)
        assert alert is not None, "no silence alert"
        late = alert["value"] - alert["threshold"]
        print("silence for agent-3: limit %.2f s, reported %.3f s past it" % (alert["threshold"], late))
        assert 0 <= late < 2, alert
        assert alert["threshold"] >= 5
        assert (alert["time_unix_nano"] - stopped) / 1e9 < alert["threshold"] + 2
        a3.silent = False

        # Loop: agent-6 keeps one trace open and calls the same tool again and again.
        a6 = swarm["agent-6"]
        expected.add(("anomaly/loop", "agent-6"))
        root = a6.tracer.start_span("handle task", kind=SpanKind.SERVER)
        ctx = trace_api.set_span_in_context(root)
        trace_id = "%032x" % root.get_span_context().trace_id
        alert = None
        for _ in range(60):
            sp = a6.tracer.start_span("execute_tool search", kind=SpanKind.CLIENT, context=ctx,
                                      attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search",
                                                  "peer.service": "search-api"})
            sp.end()
            time.sleep(0.2)
            alert = wait_alert(col, lambda a: a["rule"] == "anomaly/loop", 0.01)
            if alert:
                break
        assert alert is not None, "no loop alert"
        assert alert["agent"] == "agent-6" and alert["trace_id"] == trace_id
        root.end()  # the trace ends only now

        # Past the incident window, so the gateway's incident starts on its own; still nothing new.
        time.sleep(31)
        # Nothing but the faults' own signals on the faults' own agents.
        stray = [(a["rule"], a["agent"], a["message"]) for a in alerts(col) if (a["rule"], a["agent"]) not in expected]
        assert stray == [], stray

        # The shared gateway slows for everyone: one incident, caused by the gateway.
        for agent in swarm.agents:
            agent.latency_factor = 5.0
        gateway_start = time.time_ns()
        deadline = time.monotonic() + 15
        incident = None
        while time.monotonic() < deadline:
            incidents = json.loads(col.admin_get("/api/incidents").body)["incidents"]
            fresh = [i for i in incidents if i["start_unix_nano"] >= gateway_start]
            if fresh and len(fresh[0]["agents"]) >= 4:
                incident = fresh[0]
                break
            time.sleep(0.2)
        assert incident is not None, incidents
        assert len(fresh) == 1, fresh
        assert incident["probable_cause"] == "llm-gateway", incident
        print("gateway incident: %d agents, %d alerts, cause %s" % (len(incident["agents"]), incident["alert_count"],
                                                                   incident["probable_cause"]))
        time.sleep(1)
    finally:
        swarm.close()

    # Routing: the sinks get incident notifications (after group_wait, then updates at most every group_interval),
    # each carrying the alerts its match accepts: every alert reaches /all exactly once and /critical exactly the
    # critical ones (agent-2's); each incident is opened once. Stopping the collector sends what still waits
    # (its processors flush before the alert delivery drains).
    def key(a):
        return (a["rule"], a["agent"], a["time_unix_nano"])

    def carried(path):
        return [(key(a), a["severity"]) for p in receiver.at(path) for a in p["json"]["incident"]["alerts"]]

    listed = alerts(col)
    incidents = json.loads(col.admin_get("/api/incidents").body)["incidents"]
    assert col.stop() == 0
    everything = receiver.at("/all")
    to_all = carried("/all")
    assert len(to_all) == len({k for k, _ in to_all}), "an alert reached /all twice: %s" % to_all
    assert {key(a) for a in listed} <= {k for k, _ in to_all}, (len(to_all), len(listed))
    critical = receiver.at("/critical")
    assert critical and all(p["json"]["severity"] == "critical" for p in critical), [p["json"] for p in critical]
    assert sorted(carried("/critical")) == sorted((k, sev) for k, sev in to_all if sev == "critical")
    assert {k[1] for k, _ in carried("/critical")} == {"agent-2"}
    assert all(p["json"]["group"] == "incident=%d" % p["json"]["incident"]["id"] for p in everything)
    opened = [p["json"]["incident"]["id"] for p in everything if p["json"]["incident"]["status"] == "opened"]
    assert len(opened) == len(set(opened)), opened
    assert {i["id"] for i in incidents} <= set(opened), ([i["id"] for i in incidents], opened)
    print("notifications: %d to /all for %d incidents and %d alerts, %d to /critical" % (len(everything), len(incidents),
                                                                                         len(to_all), len(critical)))
