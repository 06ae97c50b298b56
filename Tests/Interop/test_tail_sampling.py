"""Tail sampling with the real OpenTelemetry SDK: errors, slow traces and traces a threshold trigger
marked with `alert.rule` reach the exporter whole (every span, though they arrive in several exports
from several services); the rest do not. Policies are written as the OpenTelemetry Collector takes
them."""

import time

import pytest

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

import interop_helpers as h

DECISION_WAIT_S = 2
POLICIES = [
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
    {"name": "alerts", "type": "string_attribute",
     "string_attribute": {"key": "alert.rule", "values": [".+"], "enabled_regex_matching": True}},
]
TAIL_SAMPLING = {"decision_wait": "%ds" % DECISION_WAIT_S, "num_traces": 1000, "policies": POLICIES}
# The trigger marks the span (alert.rule) as it arrives; tail sampling, after it, keeps the trace.
TRIGGERS = {"cooldown": "300s", "notify": [], "rules": [
    {"name": "high_integration_score", "severity": "warning", "attribute": "intelligence.integration_score", "above": 0.8}]}


class Agents:
    """Two agent services, each with its own SDK pipeline exporting to the collector one span at a
    time, and an in-memory copy of everything they send."""

    def __init__(self, endpoint):
        self.sent = InMemorySpanExporter()
        self.providers = {}
        for service in ("coordinator-main", "research-agent"):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
            provider.add_span_processor(SimpleSpanProcessor(self.sent))
            self.providers[service] = provider

    def tracer(self, service):
        return self.providers[service].get_tracer("agents")

    def trace(self, kind):
        """One trace: the coordinator's root and the research agent's child, exported separately.
        kind: "error", "slow", "alert" or "normal". Returns the trace id as hex."""
        now = time.time_ns()
        root = self.tracer("coordinator-main").start_span("invoke_agent coordinator-main", kind=SpanKind.SERVER,
                                                           start_time=now)
        context = set_span_in_context(root)
        child = self.tracer("research-agent").start_span("chat gpt-4o", context=context, kind=SpanKind.CLIENT,
                                                          start_time=now + 1_000_000,
                                                          attributes={"gen_ai.operation.name": "chat"})
        child.set_attribute("intelligence.integration_score", 0.93 if kind == "alert" else 0.2)
        if kind == "error":
            child.set_status(Status(StatusCode.ERROR, "rate limited"))
        duration = 900_000_000 if kind == "slow" else 20_000_000
        child.end(end_time=now + duration - 1_000_000)
        root.end(end_time=now + duration)
        return "%032x" % root.get_span_context().trace_id

    def shutdown(self):
        for provider in self.providers.values():
            provider.shutdown()


def test_errors_slow_and_alerted_traces_arrive_whole_and_the_rest_do_not(start_collector):
    c = start_collector("tail", processors_before_batch={"threshold_triggers": TRIGGERS, "tail_sampling": TAIL_SAMPLING})
    agents = Agents(c.endpoint)
    kept = {kind: agents.trace(kind) for kind in ("error", "slow", "alert")}
    dropped = [agents.trace("normal") for _ in range(5)]
    agents.shutdown()
    sent = {}
    for span in agents.sent.get_finished_spans():
        sent.setdefault("%032x" % span.context.trace_id, set()).add("%016x" % span.context.span_id)
    assert all(len(ids) == 2 for ids in sent.values()), sent

    # Nothing leaves before the decision.
    time.sleep(DECISION_WAIT_S / 2)
    early = c.output_spans()
    assert not early, "spans left before decision_wait: %r" % [s.name for s in early]

    want = sum(len(sent[t]) for t in kept.values())
    c.wait_for_spans(want, timeout=DECISION_WAIT_S + 10)
    time.sleep(1.5)  # anything else that would wrongly come out has had its decision too
    spans = c.output_spans()
    got = {}
    for span in spans:
        got.setdefault(span.trace_id, set()).add(span.span_id)
    for kind, trace_id in kept.items():
        assert got.get(trace_id) == sent[trace_id], "%s trace %s: got spans %r, sent %r" % (
            kind, trace_id, sorted(got.get(trace_id, ())), sorted(sent[trace_id]))
    for trace_id in dropped:
        assert trace_id not in got, "a normal trace was exported: %s" % trace_id
    marked = [span for span in spans if span.trace_id == kept["alert"] and span.attributes.get("alert.rule")]
    assert [span.attributes["alert.rule"] for span in marked] == ["high_integration_score"], [s.attributes for s in spans]

    metrics = c.scrape()
    sampled = metrics.value("agenttrace_tail_sampling_global_count_traces_sampled_total",
                            {"sampled": "true", "decision": "sampled"})
    not_sampled = metrics.value("agenttrace_tail_sampling_global_count_traces_sampled_total",
                                {"sampled": "false", "decision": "not_sampled"})
    assert (sampled, not_sampled) == (3, 5), sorted(metrics.series("agenttrace_tail_sampling_global_count_traces_sampled_total"))
    for policy, want_sampled in (("errors", 1), ("slow", 1), ("alerts", 1)):
        got_sampled = metrics.value("agenttrace_tail_sampling_count_traces_sampled_total",
                                    {"policy": policy, "sampled": "true", "decision": "sampled"})
        assert got_sampled == want_sampled, (policy, got_sampled)


def test_a_pasted_collector_policies_block_validates_and_bad_ones_name_the_key(agenttrace_bin, tmp_path):
    config = h.build_config(str(tmp_path / "out.jsonl"), processors_before_batch={"tail_sampling": {
        "decision_wait": "10s", "num_traces": 100, "expected_new_traces_per_sec": 10,
        "decision_cache": {"sampled_cache_size": 1000, "non_sampled_cache_size": 1000},
        "policies": POLICIES + [
            {"name": "p", "type": "probabilistic", "probabilistic": {"hash_salt": "s", "sampling_percentage": 10}},
            {"name": "c", "type": "composite", "composite": {
                "max_total_spans_per_second": 1000, "policy_order": ["a", "b"],
                "composite_sub_policy": [{"name": "a", "type": "always_sample"},
                                         {"name": "b", "type": "span_count", "span_count": {"min_spans": 2}}],
                "rate_allocation": [{"policy": "a", "percent": 50}, {"policy": "b", "percent": 25}]}},
            {"name": "d", "type": "drop", "drop": {"drop_sub_policy": [
                {"name": "h", "type": "string_attribute", "string_attribute": {"key": "url.path", "values": ["/health"]}}]}},
        ]}})
    good = h.write_config(str(tmp_path / "good.yaml"), config)
    result = h.run_cli(agenttrace_bin, ["validate", "--config", good])
    assert result.returncode == 0, result.stderr
    config["processors"]["tail_sampling"]["policies"].append({"name": "errors", "type": "always_sample"})
    bad = h.write_config(str(tmp_path / "bad.yaml"), config)
    result = h.run_cli(agenttrace_bin, ["validate", "--config", bad])
    assert result.returncode != 0
    assert "processors.tail_sampling.policies[6].name" in result.stderr and "duplicate" in result.stderr, result.stderr


def test_latency_at_the_threshold_and_a_fractional_numeric_attribute_keep_their_traces(start_collector):
    """The Collector's latency policy keeps `duration >= threshold_ms` (its latency.go and its test
    "trace duration is equal to threshold" -> Sampled); a `numeric_attribute` with a fractional
    min_value (AgentTrace's extension) keeps a trace whose span has the double 0.93."""
    policies = [
        {"name": "at-threshold", "type": "latency", "latency": {"threshold_ms": 500}},
        {"name": "integrated", "type": "numeric_attribute",
         "numeric_attribute": {"key": "intelligence.integration_score", "min_value": 0.8}},
    ]
    c = start_collector("tail-edges", processors_before_batch={"tail_sampling": {
        "decision_wait": "%ds" % DECISION_WAIT_S, "num_traces": 1000, "policies": policies}})
    agents = Agents(c.endpoint)

    def trace(duration_ms, score):
        # Times set explicitly: the trace lasts exactly duration_ms (root start to root end).
        now = time.time_ns()
        root = agents.tracer("coordinator-main").start_span("invoke_agent", kind=SpanKind.SERVER, start_time=now)
        child = agents.tracer("research-agent").start_span("chat", context=set_span_in_context(root),
                                                            kind=SpanKind.CLIENT, start_time=now + 1_000_000)
        child.set_attribute("intelligence.integration_score", score)
        child.end(end_time=now + 2_000_000)
        root.end(end_time=now + duration_ms * 1_000_000)
        return "%032x" % root.get_span_context().trace_id

    kept = {"exactly 500 ms": trace(500, 0.2), "score 0.93": trace(20, 0.93)}
    dropped = {"499 ms": trace(499, 0.2), "score 0.5": trace(20, 0.5)}
    agents.shutdown()

    c.wait_for_spans(2 * len(kept), timeout=DECISION_WAIT_S + 10)
    time.sleep(1.5)  # the dropped traces have had their decisions too
    got = {span.trace_id for span in c.output_spans()}
    for what, trace_id in kept.items():
        assert trace_id in got, "the %s trace was not kept" % what
    for what, trace_id in dropped.items():
        assert trace_id not in got, "the %s trace was kept" % what
    metrics = c.scrape()
    for policy in ("at-threshold", "integrated"):
        assert metrics.value("agenttrace_tail_sampling_count_traces_sampled_total",
                             {"policy": policy, "sampled": "true", "decision": "sampled"}) == 1, policy


@pytest.mark.parametrize("value,ok", [(20000, True), (0, True), (-1, False), ("lots", False)])
def test_expected_new_traces_per_sec_validates_and_a_bad_value_names_the_key(agenttrace_bin, tmp_path, value, ok):
    """docs/tail-sampling.md: `expected_new_traces_per_sec` (the Collector's key) is accepted as a capacity
    hint; like every key, a bad value fails `validate` naming it."""
    config = h.build_config(str(tmp_path / "out.jsonl"), processors_before_batch={"tail_sampling": {
        "decision_wait": "10s", "num_traces": 100, "expected_new_traces_per_sec": value,
        "policies": [{"name": "all", "type": "always_sample"}]}})
    path = h.write_config(str(tmp_path / "c.yaml"), config)
    result = h.run_cli(agenttrace_bin, ["validate", "--config", path])
    if ok:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0, "validate accepted expected_new_traces_per_sec: %r" % (value,)
        assert "processors.tail_sampling.expected_new_traces_per_sec" in result.stderr, result.stderr


def test_decide_early_replays_to_the_same_kept_spans_as_waiting(agenttrace_bin, tmp_path, testdata):
    """The same recording replayed (on its own clock) with and without `decide_early` keeps exactly the
    same spans: waiting, the Collector's behaviour, is the oracle."""
    src = testdata("multi-agent.jsonl")
    policies = POLICIES + [{"name": "some", "type": "probabilistic", "probabilistic": {"sampling_percentage": 30}}]
    kept = {}
    for early in (False, True):
        out = str(tmp_path / ("early-%s.jsonl" % early))
        settings = {"decision_wait": "2s", "decide_early": early, "policies": policies}
        cfg = h.write_config(str(tmp_path / ("early-%s.yaml" % early)),
                             h.build_config(out, processors_before_batch={"tail_sampling": settings}))
        r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, "--speed", "0", src])
        assert r.returncode == 0, r.stderr
        kept[early] = sorted(x.key for x in h.read_output_spans(out, allow_partial_tail=False))
    every = h.load_spans(src)
    assert 0 < len(kept[False]) < len(every), "a mix of kept and dropped traces (%d of %d)" % (len(kept[False]), len(every))
    assert kept[True] == kept[False]
