"""Claims of README.md and docs/*.md that no other test proved (docs/claims.md maps every claim to its test).

  * every metric of README "Metrics" and docs/tail-sampling.md "Metrics" is on /metrics, with its labels;
  * SIGINT (as SIGTERM) shuts down gracefully: the batch processor is flushed, exit 0; `serve` is the default command;
  * `exporters: debug: verbosity`: basic logs one line per batch, detailed one more per span;
  * `service: telemetry: logs: level`;
  * an exporter's `timeout` ends a request to a backend that never answers;
  * exporter `tls: insecure_skip_verify`;
  * a full exporter queue is not a drop: the pipeline queue fills (`service: queue: max_batches`), OTLP/HTTP
    answers 503 with Retry-After: 1 and OTLP/gRPC UNAVAILABLE, and every acknowledged span is delivered once
    the backend is back (`retry_on_failure: max_elapsed_time: 0` retries forever);
  * `GET /api/service-graph?service=NAME` keeps the edges of that service; a bad `window` is a 400;
  * the embedded default configuration holds what README says it holds;
  * a `notify:` sink whose URL expands to nothing is switched off with one log line; `replay` evaluates the
    rules but delivers nothing; webhook `headers`; `/api/alerts` keeps the last 1000;
  * span_limits `attribute_per_event_count_limit` / `attribute_per_link_count_limit`; enrichment `name_attributes`;
  * `sending_queue: num_consumers`; replay's progress bar only on a terminal;
  * listener defaults (gRPC SETTINGS 100 streams / 16384 header list, admin 100 connections) and bad limits
    failing `validate` naming the key.

Oracles: the README/docs sentences quoted in each test, the OTLP specification (503/UNAVAILABLE and
Retry-After), Python's own TLS and HTTP clients — never the collector's output."""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest
import yaml

import fakes
import interop_helpers as h
from test_security import certs  # noqa: F401  (the module-scoped CA/server/client certificate fixture)


def one_span_json(name="claim", service="claims", attrs=None, status=None, kind=1):
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    now = time.time_ns()
    span = {"traceId": tid, "spanId": sid, "name": name, "kind": kind,
            "startTimeUnixNano": str(now - 2_000_000), "endTimeUnixNano": str(now)}
    if attrs:
        span["attributes"] = [{"key": k, "value": h.otlp_any(v)} for k, v in attrs.items()]
    if status is not None:
        span["status"] = {"code": status}
    req = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "claims"}, "spans": [span]}]}]}
    return req, (tid, sid)


def post_json(col, req):
    return col.post_traces(json.dumps(req).encode(), "application/json")


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "%s: not within %.0fs" % (what, timeout)
        time.sleep(0.05)


# --- every documented metric ----------------------------------------------------------------

# README "Metrics": name -> the label names the table gives it.
README_METRICS = {
    "agenttrace_receiver_accepted_spans_total": {"receiver", "transport"},
    "agenttrace_receiver_refused_spans_total": {"receiver", "transport"},
    "agenttrace_receiver_held_requests_total": {"receiver", "transport"},
    "agenttrace_receiver_requests_total": {"receiver", "transport", "code"},
    "agenttrace_receiver_decode_errors_total": {"receiver", "transport", "encoding"},
    "agenttrace_receiver_connections_closed_total": {"receiver", "transport", "reason"},
    "agenttrace_admin_unauthorized_requests_total": set(),
    "agenttrace_span_limits_dropped_attributes_total": {"processor"},
    "agenttrace_span_limits_truncated_values_total": {"processor"},
    "agenttrace_span_limits_dropped_events_total": {"processor"},
    "agenttrace_span_limits_dropped_links_total": {"processor"},
    "agenttrace_memory_limiter_refused_requests_total": set(),
    "agenttrace_memory_limiter_refusing": set(),
    "agenttrace_memory_limiter_soft_limit_bytes": set(),
    "agenttrace_process_resident_memory_bytes": set(),
    "agenttrace_exporter_sent_spans_total": {"exporter"},
    "agenttrace_exporter_send_failed_spans_total": {"exporter"},
    "agenttrace_exporter_retried_spans_total": {"exporter"},
    "agenttrace_exporter_queue_size": {"exporter"},
    "agenttrace_exporter_queue_capacity": {"exporter"},
    "agenttrace_exporter_persisted_bytes": {"exporter"},
    "agenttrace_memory_evicted_traces_total": {"exporter"},
    "agenttrace_memory_traces": {"exporter"},
    "agenttrace_memory_estimated_bytes": {"exporter"},
    "agenttrace_pipeline_queue_size": {"pipeline"},
    "agenttrace_pipeline_queue_spans": {"pipeline"},
    "agenttrace_pipeline_queue_capacity": {"pipeline"},
    "agenttrace_processor_batch_batches_sent_total": {"processor", "trigger"},
    "agenttrace_triggers_fired_total": {"rule"},
    "agenttrace_triggers_suppressed_total": {"rule"},
    "agenttrace_triggers_matched_spans_total": {"rule"},
    "agenttrace_triggers_dropped_matches_total": {"rule"},
    "agenttrace_alerts_delivered_total": {"processor", "sink"},
    "agenttrace_alerts_delivery_failed_total": {"processor", "sink"},
    "agenttrace_alerts_delivery_retries_total": {"processor", "sink"},
    "agenttrace_alerts_dropped_total": {"processor", "sink"},
    "agenttrace_alerts_queue_size": {"processor", "sink"},
    "agenttrace_processor_agent_enrichment_metadata_reloads_total": {"processor"},
    "agenttrace_processor_agent_enrichment_metadata_reload_failures_total": {"processor"},
}

# docs/tail-sampling.md "Metrics": `agenttrace_tail_sampling_` + these (the Collector's names, then ours);
# the label names the doc gives, where it gives them.
TAIL_SAMPLING_METRICS = {
    "count_traces_sampled_total": {"policy", "sampled", "decision"},
    "global_count_traces_sampled_total": {"sampled", "decision"},
    "sampling_traces_on_memory": set(),
    "sampling_trace_dropped_too_early_total": set(),
    "new_trace_id_received_total": set(),
    "early_releases_from_cache_decision_total": {"sampled"},
    "sampling_late_span_age": set(),
    "sampling_trace_removal_age": set(),
    "sampling_decision_timer_latency": set(),
    "traces_dropped_too_large_total": set(),
    "sampling_spans_on_memory": set(),
    "sampling_bytes_on_memory": set(),
    "traces_evicted_total": {"undecided"},
    "late_spans_total": {"sampled", "decision"},
    "spans_decided_total": {"sampled"},
    "sampling_decision_age": set(),
    "decode_failures_total": set(),
}


def families(text):
    """{family name: set of label names seen on its samples} from the Prometheus text; a family announced by
    `# TYPE` without samples has an empty set. Histogram samples count for their family."""
    out = {}
    ms = h.parse_metrics(text)
    for name, kind in ms.types.items():
        out.setdefault(name, set())
    for name in ms.names():
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and ms.types.get(name[:-len(suffix)]) in ("histogram", "summary"):
                family = name[:-len(suffix)]
        labels = out.setdefault(family, set())
        for labs, _ in ms.series(name):
            labels.update(k for k in labs if k != "le")
    return out


def test_every_documented_metric_is_exposed_with_its_labels(start_collector, tmp_path):
    receiver = h.AlertReceiver()
    backend = fakes.OTLPHttpFake().start()
    try:
        metadata = tmp_path / "agents.yaml"
        metadata.write_text("claims: {team: audit}\n")
        col = start_collector("metrics", grpc={}, processors_before_batch={
            "span_limits": {"attribute_count_limit": 2},
            "agent_enrichment": {"metadata_file": str(metadata)},
            "threshold_triggers": {"rules": [{"name": "any_error", "status": "error"}],
                                   "notify": [{"webhook": receiver.url("/hook")}]},
            "tail_sampling": {"decision_wait": "1s", "policies": [{"name": "all", "type": "always_sample"}]},
        }, overrides={
            "exporters": {"otlp": {"protocol": "http/protobuf", "endpoint": backend.base_url}, "memory": {}},
            "service": {"memory_limiter": {"limit_mib": 8192},
                        "pipelines": {"traces": {"exporters": ["file", "otlp", "memory"]}}},
        })
        # Traffic that makes every labelled series exist: an error span (a trigger, an alert), a span over the
        # attribute limit, a bad JSON body (a decode error), a malformed request line (a closed connection).
        req, key = one_span_json("failing", attrs={"a": 1, "b": 2, "c": 3}, status=2)
        assert post_json(col, req).status == 200
        assert col.post_traces(b"{", "application/json").status == 400
        host, port = h.split_address(col.http_address)
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01 NOT HTTP\r\n\r\n")
            s.recv(4096)
        receiver.wait("/hook")
        col.wait_for_spans(lambda spans: key in {s.key for s in spans}, timeout=15)
        wait_until(lambda: col.scrape().value("agenttrace_exporter_sent_spans_total", exporter="otlp") >= 1, 10,
                   "the otlp exporter sent the span")

        r = col.admin_get("/metrics")
        found = families(r.body.decode("utf-8"))
        problems = []
        documented = dict(README_METRICS)
        documented.update({"agenttrace_tail_sampling_" + k: v for k, v in TAIL_SAMPLING_METRICS.items()})
        for name, labels in sorted(documented.items()):
            if name not in found:
                problems.append("%s: not on /metrics" % name)
            elif not labels <= found[name]:
                problems.append("%s: labels %s, documented %s" % (name, sorted(found[name]), sorted(labels)))
        assert not problems, "\n".join(problems)
    finally:
        receiver.close()
        backend.close()


# --- shutdown on SIGINT; serve is the default command ------------------------------------------

def test_sigint_flushes_the_batch_processor_and_exits_0_and_serve_is_the_default_command(agenttrace_bin, tmp_path):
    """README: "It runs until SIGINT or SIGTERM, then shuts down gracefully: ... flushes the batch processor,
    exporters close, and the process exits 0"; `agenttrace serve [--config FILE]` is "the default command"."""
    out = str(tmp_path / "out.jsonl")
    # A batch that only leaves at shutdown: a size and a timeout never reached.
    cfg = h.write_config(str(tmp_path / "c.yaml"), h.build_config(out, send_batch_size=100000, timeout="1h"))
    err = open(str(tmp_path / "stderr.log"), "wb")
    proc = subprocess.Popen([agenttrace_bin, "--config", cfg], stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        http = None
        for raw in proc.stdout:
            line = raw.decode().strip()
            m = h.RECEIVER_LINE_RE.match(line)
            if m and m.group(2) == "http":
                http = m.group(3)
            if line == h.READY_LINE:
                break
        assert http, "no listening line for the HTTP receiver without a subcommand"
        keys = set()
        for i in range(3):
            req, key = one_span_json("before-sigint-%d" % i)
            r = h.http_request(http, "POST", "/v1/traces", json.dumps(req).encode(), {"Content-Type": "application/json"})
            assert r.status == 200, r
            keys.add(key)
        time.sleep(0.3)
        assert not h.read_output_spans(out), "the batch left before shutdown: the test proves nothing"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    assert rc == 0, "exit code %s after SIGINT" % rc
    got = {s.key for s in h.read_output_spans(out, allow_partial_tail=False)}
    assert keys <= got, "spans in the batch processor were lost at SIGINT"


# --- debug exporter ---------------------------------------------------------------------------

@pytest.mark.parametrize("verbosity", ["basic", "detailed"])
def test_debug_exporter_verbosity(start_collector, verbosity):
    """README: `debug: verbosity: basic` — one line per batch; `detailed` — one per span."""
    col = start_collector("debug-" + verbosity, exporter="debug", send_batch_size=3, timeout="5s",
                          overrides={"exporters": {"debug": {"verbosity": verbosity}}})
    reqs = [one_span_json("dbg-span-%d" % i, service="debug-svc") for i in range(3)]
    req = reqs[0][0]
    for other, _ in reqs[1:]:
        req["resourceSpans"] += other["resourceSpans"]
    assert post_json(col, req).status == 200   # 3 spans = send_batch_size: one batch leaves at once

    def lines():
        with open(col.stderr_path, encoding="utf-8", errors="replace") as f:
            return [ln for ln in f if "exporter=debug" in ln]
    got = wait_until(lambda: [ln for ln in lines() if "spans=3" in ln], 10, "the debug exporter's batch line")
    assert len(got) == 1, got
    time.sleep(0.3)
    per_span = [ln for ln in lines() if "dbg-span-" in ln]
    if verbosity == "basic":
        assert per_span == [], per_span
    else:
        assert sorted(n for ln in per_span for n in ("dbg-span-0", "dbg-span-1", "dbg-span-2") if n in ln) == \
            ["dbg-span-0", "dbg-span-1", "dbg-span-2"], per_span
        assert all(("trace_id=%s" % k[0]) in "".join(per_span) for _, k in reqs)


# --- log level ---------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["debug", "info", "warn", "error"])
def test_log_level(start_collector, level):
    """README: `service: telemetry: logs: level: info  # debug, info, warn, error (to standard error)`.
    The start-up line is logged at info: seen at debug and info, not at warn or error; debug adds lines."""
    col = start_collector("log-" + level, overrides={"service": {"telemetry": {"logs": {"level": level}}}})
    time.sleep(0.2)
    with open(col.stderr_path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    levels = {ln.split()[1] for ln in text.splitlines() if len(ln.split()) > 1}
    order = ["trace", "debug", "info", "notice", "warning", "warn", "error", "critical"]
    floor = {"debug": 1, "info": 2, "warn": 4, "error": 6}[level]
    below = [lv for lv in levels if lv in order and order.index(lv) < floor]
    assert not below, "level %s logged %s lines:\n%s" % (level, below, text[-2000:])
    if level in ("debug", "info"):
        assert "info" in levels, text[-2000:]
    if level == "debug":
        assert "debug" in levels, text[-2000:]


# --- exporter timeout ---------------------------------------------------------------------------

def test_exporter_timeout_ends_a_request_to_a_backend_that_never_answers(start_collector):
    """README: every network exporter takes `timeout: 5s`; exporter-mappings §4: a timeout is retryable, and
    without retries the batch is dropped and counted failed."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)   # accepts (the kernel completes the handshake) and never reads or answers
    try:
        col = start_collector("timeout", overrides={
            "exporters": {"otlp": {"protocol": "http/protobuf", "endpoint": "http://127.0.0.1:%d" % silent.getsockname()[1],
                                   "timeout": "1s", "retry_on_failure": {"enabled": False}}},
            "service": {"pipelines": {"traces": {"exporters": ["otlp"]}}}})
        for i in range(3):
            assert post_json(col, one_span_json("to-silent-%d" % i)[0]).status == 200
        t0 = time.monotonic()
        wait_until(lambda: col.scrape().value("agenttrace_exporter_send_failed_spans_total", exporter="otlp") >= 3, 15,
                   "the spans sent to a silent backend counted failed")
        assert time.monotonic() - t0 < 10
        assert col.scrape().value("agenttrace_exporter_sent_spans_total", exporter="otlp") == 0
    finally:
        silent.close()


# --- exporter insecure_skip_verify --------------------------------------------------------------

@pytest.mark.parametrize("skip", [True, False], ids=["insecure_skip_verify", "verified"])
def test_exporter_insecure_skip_verify(start_collector, certs, skip):  # noqa: F811
    """README Security: exporters take `tls: {..., insecure_skip_verify, ...}`. A backend whose certificate is
    signed by a CA the exporter was not given: delivered only with insecure_skip_verify."""
    server = {"cert_file": certs["server_cert"], "key_file": certs["server_key"]}
    backend = start_collector("tls-backend", overrides={"receivers": {"otlp": {"protocols": {"http": {"tls": server}}}}})
    forwarder = start_collector("forwarder", overrides={
        "exporters": {"otlp": {"protocol": "http/protobuf", "endpoint": "https://%s" % backend.http_address,
                               "tls": {"insecure_skip_verify": skip}, "retry_on_failure": {"enabled": False}}},
        "service": {"pipelines": {"traces": {"exporters": ["otlp"]}}}})
    req, key = one_span_json("over-unverified-tls")
    assert post_json(forwarder, req).status == 200
    if skip:
        backend.wait_for_spans(lambda spans: key in {s.key for s in spans}, timeout=15)
        assert forwarder.scrape().value("agenttrace_exporter_sent_spans_total", exporter="otlp") == 1
    else:
        wait_until(lambda: forwarder.scrape().value("agenttrace_exporter_send_failed_spans_total", exporter="otlp") >= 1,
                   15, "the unverifiable backend counted failed")
        assert key not in {s.key for s in backend.output_spans()}


# --- a full queue is not a drop ------------------------------------------------------------------

def stuck_pipeline(port, queue):
    """Overrides for a pipeline that fills: an otlp exporter to `port` (down until the test brings it up) with a
    queue of one, retrying forever every 100-200ms, and the pipeline queue set to `queue`."""
    return {"exporters": {"otlp": {"protocol": "http/protobuf", "endpoint": "http://127.0.0.1:%d" % port,
                                   "sending_queue": {"queue_size": 1, "num_consumers": 1},
                                   "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms",
                                                        "max_elapsed_time": "0s"}}},
            "service": {"queue": queue, "pipelines": {"traces": {"exporters": ["otlp"]}}}}


def test_a_full_queue_answers_503_and_unavailable_and_loses_no_acknowledged_span(start_collector):
    """README Exporters: "A full queue is not a drop: the pipeline waits, its own queue fills, and receivers
    hold each new request for up to `service.queue.wait_when_full` ... past that they answer 503/UNAVAILABLE
    so SDKs retry"; "What the receivers answer": 503 with `Retry-After: 1`, "nothing was accepted";
    `service: queue: max_batches`; `retry_on_failure: max_elapsed_time: 0` = retry forever."""
    down = fakes.ReservedPort()
    backend = None
    try:
        col = start_collector("full", grpc={}, send_batch_size=1, timeout="10ms",
                              overrides=stuck_pipeline(down.port, {"max_batches": 2, "wait_when_full": "700ms"}))
        assert col.scrape().value("agenttrace_pipeline_queue_capacity", pipeline="traces") == 2
        acknowledged, refused = set(), []
        for i in range(40):
            req, key = one_span_json("fill-%d" % i)
            started = time.monotonic()
            r = post_json(col, req)
            if r.status == 200:
                acknowledged.add(key)
            else:
                refused.append((r, time.monotonic() - started))
            if len(refused) >= 3:
                break
        assert refused, "40 requests were all accepted with the backend down and every queue of size 1-2"
        for r, waited in refused:
            assert r.status == 503 and r.headers.get("retry-after") == "1", (r.status, r.headers)
            assert 0.65 <= waited < 5, "a refused request was held %.2fs, not wait_when_full (700ms)" % waited
        req, key = one_span_json("grpc-when-full")
        with h.grpc_channel(col.grpc_address) as ch:
            res = h.grpc_export(ch, h.request_to_protobuf(req), timeout=5)
        assert res.code == grpc.StatusCode.UNAVAILABLE, res
        assert col.scrape().value("agenttrace_receiver_held_requests_total", receiver="otlp", transport="grpc") >= 1
        ms = col.scrape()
        assert ms.value("agenttrace_receiver_requests_total", receiver="otlp", transport="http", code="503") >= len(refused)
        assert ms.value("agenttrace_exporter_send_failed_spans_total", exporter="otlp") == 0

        time.sleep(1.0)   # several retries against the dead port: max_elapsed_time 0 never gives up
        port = down.release()
        backend = fakes.OTLPHttpFake(port=port).start()
        missing = backend.wait_for_keys(acknowledged, timeout=20)
        assert not missing, "%d acknowledged spans never reached the backend" % len(missing)
        got = {s.key for s in backend.accepted_spans()}
        for r_key in got:
            assert r_key in acknowledged, "a span answered 503/UNAVAILABLE was delivered: %s" % (r_key,)
        assert col.scrape().value("agenttrace_exporter_send_failed_spans_total", exporter="otlp") == 0
    finally:
        down.release()
        if backend is not None:
            backend.close()


def test_a_full_queue_holds_requests_and_takes_them_as_it_drains(start_collector):
    """README Exporters: "receivers hold each new request for up to `service.queue.wait_when_full` (2s), letting
    the longest-waiting one in as each batch leaves the queue"; counted in agenttrace_receiver_held_requests_total.
    The backend is down while forty clients post at once, so the pipeline fills; it comes up within the wait,
    and every request is answered 200 (none 503) and delivered."""
    down = fakes.ReservedPort()
    backend = None
    try:
        col = start_collector("held", send_batch_size=1, timeout="10ms",
                              overrides=stuck_pipeline(down.port, {"max_batches": 1, "wait_when_full": "8s"}))
        results, keys = {}, []

        def post(i):
            req, key = one_span_json("held-%d" % i)
            keys.append(key)
            results[i] = post_json(col, req).status

        threads = [threading.Thread(target=post, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        wait_until(lambda: col.scrape().value("agenttrace_receiver_held_requests_total", receiver="otlp",
                                              transport="http") >= 1, 5, "a request held while the queue is full")
        time.sleep(0.5)
        assert len(results) < 40, "every request was answered while the backend was down: %s" % results
        assert 503 not in results.values(), results
        port = down.release()
        backend = fakes.OTLPHttpFake(port=port).start()
        for t in threads:
            t.join(timeout=15)
        assert sorted(results.values()) == [200] * 40, results
        missing = backend.wait_for_keys(set(keys), timeout=20)
        assert not missing, "%d acknowledged spans never reached the backend" % len(missing)
        assert col.scrape().value("agenttrace_receiver_requests_total", receiver="otlp", transport="http", code="503") == 0
    finally:
        down.release()
        if backend is not None:
            backend.close()


# --- service graph query parameters ---------------------------------------------------------------

def test_service_graph_service_filter_and_bad_window(start_collector):
    """README: `GET /api/service-graph?window=15m&service=NAME`."""
    col = start_collector("sg-query", service_graph={"store": {"ttl": "60s"}})
    t = h.Trace()
    c = t.span("web", "GET /", 3, dur_s=0.02)
    t.span("api", "GET /", 2, parent=c, start_s=0.001, dur_s=0.01)
    t2 = h.Trace()
    c2 = t2.span("batch", "POST /jobs", 3, dur_s=0.02)
    t2.span("worker", "POST /jobs", 2, parent=c2, start_s=0.001, dur_s=0.01)
    assert col.post_traces(json.dumps(h.otlp_request(t.spans + t2.spans)).encode(), "application/json").status == 200

    def edges(query=""):
        r = col.admin_get("/api/service-graph" + query)
        assert r.status == 200, (query, r.status, r.body[:200])
        g = r.json()
        ids = {n["id"]: n.get("title", n["id"]) for n in g["nodes"]}
        return {(ids.get(e["source"], e["source"]), ids.get(e["target"], e["target"])) for e in g["edges"]}
    wait_until(lambda: {("web", "api"), ("batch", "worker")} <= edges(), 10, "both edges in the graph")
    assert edges("?service=api") == {("web", "api")}, edges("?service=api")
    assert edges("?service=worker&window=15m") == {("batch", "worker")}
    assert {("web", "api"), ("batch", "worker")} <= edges("?window=15m")
    r = col.admin_get("/api/service-graph?window=fortnight")
    assert r.status == 400, (r.status, r.body[:200])


def test_service_graph_window_ages_edges_out_and_a_window_over_an_hour_reads_the_totals(start_collector):
    """README: `?window=15m`; docs/service-graph.md: only edges with calls whose spans ended in the window, at
    most one hour of per-minute history; a longer window reads the totals. A call that ended 90 minutes ago
    is outside `window=15m` and `window=1h`, and inside `window=2h` (the totals) and no window at all."""
    col = start_collector("sg-window", service_graph={"store": {"ttl": "60s"}})
    old = h.Trace(base_ns=time.time_ns() - 90 * 60 * 1_000_000_000)
    c = old.span("archive-client", "GET /old", 3, dur_s=0.02)
    old.span("archive", "GET /old", 2, parent=c, start_s=0.001, dur_s=0.01)
    new = h.Trace()
    c = new.span("live-client", "GET /new", 3, dur_s=0.02)
    new.span("live", "GET /new", 2, parent=c, start_s=0.001, dur_s=0.01)
    assert col.post_traces(json.dumps(h.otlp_request(old.spans + new.spans)).encode(), "application/json").status == 200

    def edges(query=""):
        r = col.admin_get("/api/service-graph" + query)
        assert r.status == 200, (query, r.status, r.body[:200])
        g = r.json()
        ids = {n["id"]: n.get("title", n["id"]) for n in g["nodes"]}
        return {(ids.get(e["source"], e["source"]), ids.get(e["target"], e["target"])) for e in g["edges"]}
    both = {("archive-client", "archive"), ("live-client", "live")}
    wait_until(lambda: both <= edges(), 10, "both edges in the graph")
    assert edges("?window=15m") == {("live-client", "live")}, edges("?window=15m")
    assert edges("?window=1h") == {("live-client", "live")}, edges("?window=1h")
    assert edges("?window=2h") == both, edges("?window=2h")
    assert edges() == both


# --- the embedded default configuration -------------------------------------------------------------

def test_the_default_configuration_is_what_the_readme_says(agenttrace_bin):
    """README: the default pipeline is `agent_enrichment -> anomaly_detection -> threshold_triggers -> service_graph
    -> tail_sampling -> batch -> file, memory`; the memory exporter keeps the last 10,000 traces or 256 MiB; tail
    sampling waits 10 s and keeps errors, slow traces (over 5 s), alerted ones, anomalous ones and 10% of the rest;
    spans reach `./data/traces.jsonl`; everything binds to localhost on 4317, 4318 and 8888; the
    three rules grouped by agent; sinks from AGENTTRACE_ALERT_WEBHOOK_URL, SLACK_WEBHOOK_URL, PD_ROUTING_KEY."""
    r = h.run_cli(agenttrace_bin, ["validate", "--print-default"], timeout=30)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    assert cfg["service"]["pipelines"]["traces"]["processors"] == \
        ["agent_enrichment", "anomaly_detection", "threshold_triggers", "service_graph", "tail_sampling", "batch"]
    assert cfg["service"]["pipelines"]["traces"]["exporters"] == ["file", "memory"]
    assert cfg["exporters"]["memory"] == {"max_traces": 10000, "max_bytes": 256 * 1024 * 1024}
    assert cfg["exporters"]["file"]["path"] == "./data/traces.jsonl"
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert (protocols["grpc"]["endpoint"], protocols["http"]["endpoint"], cfg["service"]["admin"]["endpoint"]) == \
        ("localhost:4317", "localhost:4318", "localhost:8888")
    ts = cfg["processors"]["tail_sampling"]
    assert ts["decision_wait"] == "10s"
    policies = {p["name"]: p for p in ts["policies"]}
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["slow"]["latency"]["threshold_ms"] == 5000
    assert policies["alerts"]["string_attribute"]["key"] == "alert.rule"
    assert policies["anomalies"]["string_attribute"] == {"key": "anomaly.signal", "values": [".+"],
                                                         "enabled_regex_matching": True}
    assert policies["baseline"]["probabilistic"]["sampling_percentage"] == 10
    rules = {rule["name"]: rule for rule in cfg["processors"]["threshold_triggers"]["rules"]}
    assert set(rules) == {"high_integration_score", "slow_llm_call", "error_burst"}
    assert all(rule.get("group_by") == ["agent.name"] for rule in rules.values()), rules
    sinks = json.dumps(cfg["processors"]["threshold_triggers"]["notify"])
    for var in ("AGENTTRACE_ALERT_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "PD_ROUTING_KEY"):
        assert var in sinks, sinks
    assert cfg["processors"]["agent_enrichment"]["critical_types"] == ["coordinator", "intelligence", "safety"]


# --- alert sinks switched off; replay does not deliver ------------------------------------------------

def test_a_sink_that_expands_to_nothing_is_switched_off_with_one_log_line(start_collector, monkeypatch):
    """docs/agent-enrichment-and-triggers.md, Sinks: "A sink whose URL or routing key expands to nothing (an unset
    variable) is switched off, with one log line at start-up"."""
    monkeypatch.delenv("AGENTTRACE_CLAIMS_UNSET", raising=False)
    receiver = h.AlertReceiver()
    try:
        col = start_collector("sink-off", processors_before_batch={"threshold_triggers": {
            "rules": [{"name": "any_error", "status": "error"}],
            "notify": [{"webhook": "${env:AGENTTRACE_CLAIMS_UNSET:-}"}, {"webhook": receiver.url("/hook")}]}})
        assert post_json(col, one_span_json("failing", status=2)[0]).status == 200
        receiver.wait("/hook")
        with open(col.stderr_path, encoding="utf-8", errors="replace") as f:
            off = [ln for ln in f if "switched off" in ln]
        assert len(off) == 1, off
        ms = col.scrape()
        sinks = {labels.get("sink") for labels, _ in ms.series("agenttrace_alerts_queue_size")}
        assert len(sinks) == 1, "want one sink (the live one), got %s" % sinks
    finally:
        receiver.close()


def test_replay_evaluates_rules_but_does_not_deliver(agenttrace_bin, tmp_path):
    """docs/agent-enrichment-and-triggers.md: "`agenttrace replay` evaluates the rules ... but does not deliver
    them": replayed error spans are tagged alert.rule, and the webhook gets nothing."""
    receiver = h.AlertReceiver()
    try:
        rec = tmp_path / "rec.jsonl"
        req, key = one_span_json("replayed failure", status=2)
        rec.write_text(json.dumps(req) + "\n")
        out = str(tmp_path / "out.jsonl")
        cfg = h.write_config(str(tmp_path / "c.yaml"), h.build_config(out, processors_before_batch={
            "threshold_triggers": {"rules": [{"name": "any_error", "status": "error"}],
                                   "notify": [{"webhook": receiver.url("/hook")}]}}))
        r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, str(rec)], timeout=60)
        assert r.returncode == 0, r.stderr
        spans = {s.key: s for s in h.read_output_spans(out, allow_partial_tail=False)}
        assert spans[key].attributes.get("alert.rule") == "any_error", "the rule was not evaluated in replay"
        time.sleep(1.0)
        assert receiver.at("/hook") == [], "replay delivered an alert"
    finally:
        receiver.close()


# --- span_limits per event / per link ------------------------------------------------------------

def test_span_limits_attributes_per_event_and_per_link(start_collector):
    """docs/hardening.md, span_limits: `attribute_per_event_count_limit`, `attribute_per_link_count_limit`; "The
    first attributes (events, links) are kept; what is dropped adds to the ... dropped_*_count" (of the event or
    link: OTLP Span.Event / Span.Link `dropped_attributes_count`)."""
    col = start_collector("per-event", processors_before_batch={"span_limits": {
        "attribute_per_event_count_limit": 2, "attribute_per_link_count_limit": 3}})
    req, key = one_span_json("events-and-links")
    span = req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    attrs = [{"key": "k%d" % i, "value": {"intValue": str(i)}} for i in range(5)]
    span["events"] = [{"timeUnixNano": span["startTimeUnixNano"], "name": "e", "attributes": attrs,
                       "droppedAttributesCount": 1}]
    span["links"] = [{"traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8), "attributes": attrs}]
    assert post_json(col, req).status == 200
    out = [s for s in col.wait_for_spans(lambda spans: key in {s.key for s in spans}) if s.key == key][0]
    assert out.events[0][2] == {"k0": 0, "k1": 1}, out.events
    assert out.raw["events"][0].get("droppedAttributesCount") == 1 + 3, out.raw["events"]
    assert out.links[0][2] == {"k0": 0, "k1": 1, "k2": 2}, out.links
    assert out.raw["links"][0].get("droppedAttributesCount") == 2, out.raw["links"]


# --- agent_enrichment name_attributes ----------------------------------------------------------------

def test_agent_enrichment_name_attributes(start_collector):
    """docs/agent-enrichment-and-triggers.md: `name_attributes` — "the first present (non-empty string) becomes
    `agent.name`"; `agent.type` is the name up to the first `-`."""
    col = start_collector("names", processors_before_batch={"agent_enrichment": {
        "name_attributes": ["team.agent", "service.name"]}})
    req, key = one_span_json("named", service="fallback-svc")
    first = req["resourceSpans"][0]
    other, key2 = one_span_json("named-by-attribute", service="fallback-svc")
    second = other["resourceSpans"][0]
    second["resource"]["attributes"].append({"key": "team.agent", "value": {"stringValue": "planner-7"}})
    first["resource"]["attributes"].append({"key": "team.agent", "value": {"stringValue": ""}})
    req["resourceSpans"].append(second)
    assert post_json(col, req).status == 200
    got = {s.key: s for s in col.wait_for_spans(lambda spans: {key, key2} <= {s.key for s in spans})}
    assert (got[key].resource.get("agent.name"), got[key].resource.get("agent.type")) == ("fallback-svc", "fallback")
    assert (got[key2].resource.get("agent.name"), got[key2].resource.get("agent.type")) == ("planner-7", "planner")


# --- webhook headers; /api/alerts keeps the last 1000 ----------------------------------------------------

def test_webhook_headers_are_sent(start_collector):
    """docs/agent-enrichment-and-triggers.md, Sinks: `webhook: {url: URL, headers: {NAME: VALUE}}`."""
    receiver = h.AlertReceiver()
    try:
        col = start_collector("hook-headers", processors_before_batch={"threshold_triggers": {
            "rules": [{"name": "any_error", "status": "error"}],
            "notify": [{"webhook": {"url": receiver.url("/hook"), "headers": {"x-token": "s3cret"}}}]}})
        assert post_json(col, one_span_json("failing", status=2)[0]).status == 200
        [post] = receiver.wait("/hook")
        assert post["headers"].get("x-token") == "s3cret", post["headers"]
    finally:
        receiver.close()


def test_api_alerts_keeps_the_last_1000(start_collector):
    """README / docs: `GET /api/alerts` answers `{"alerts":[…]}`, most recent first, the last 1000."""
    col = start_collector("alerts-1000", processors_before_batch={"threshold_triggers": {
        "rules": [{"name": "any_error", "status": "error", "cooldown": "0s"}]}})
    req, _ = one_span_json("failing-0", status=2)
    spans = req["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for i in range(1, 1005):
        spans.append(dict(spans[0], spanId=secrets.token_hex(8), name="failing-%d" % i))
    assert post_json(col, req).status == 200
    wait_until(lambda: col.scrape().value("agenttrace_triggers_fired_total", rule="any_error") == 1005, 10,
               "1005 alerts fired")
    alerts = col.admin_get("/api/alerts").json()["alerts"]
    assert len(alerts) == 1000, len(alerts)
    assert alerts[0]["span_name"] == "failing-1004" and alerts[-1]["span_name"] == "failing-5", \
        (alerts[0]["span_name"], alerts[-1]["span_name"])


# --- sending_queue.num_consumers ------------------------------------------------------------------------

class ConcurrencyBackend(fakes.OTLPHttpFake):
    """Holds each export until `want` are in flight together (or 5 s pass); records the most seen at once."""

    def __init__(self, want):
        super().__init__()
        self.want = want
        self.inflight = 0
        self.most = 0
        self.cond = threading.Condition()

    def success(self, rec):
        with self.cond:
            self.inflight += 1
            self.most = max(self.most, self.inflight)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.most >= self.want, timeout=5)
        try:
            return super().success(rec)
        finally:
            with self.cond:
                self.inflight -= 1


def test_sending_queue_num_consumers_sends_that_many_batches_at_once(start_collector):
    """README: `sending_queue: num_consumers` — the batches an exporter sends at the same time."""
    backend = ConcurrencyBackend(want=3).start()
    try:
        col = start_collector("consumers", send_batch_size=1, timeout="10ms", overrides={
            "exporters": {"otlp": {"protocol": "http/protobuf", "endpoint": backend.base_url,
                                   "sending_queue": {"queue_size": 100, "num_consumers": 3}}},
            "service": {"pipelines": {"traces": {"exporters": ["otlp"]}}}})
        keys = set()
        for i in range(6):
            req, key = one_span_json("consumer-%d" % i)
            assert post_json(col, req).status == 200
            keys.add(key)
        assert not backend.wait_for_keys(keys, timeout=20)
        assert backend.most == 3, "at most %d exports in flight at once, want num_consumers = 3" % backend.most
    finally:
        backend.close()


# --- replay's progress bar --------------------------------------------------------------------------

def test_replay_shows_a_progress_bar_only_on_a_terminal(agenttrace_bin, tmp_path, testdata):
    """README: replay "shows a progress bar when standard error is a terminal"."""
    import pty
    out = str(tmp_path / "out.jsonl")
    cfg = h.write_config(str(tmp_path / "c.yaml"), h.build_config(out, exporter="nop"))
    args = [agenttrace_bin, "replay", "--config", cfg, testdata("multi-agent.jsonl")]
    plain = subprocess.run(args, capture_output=True, timeout=60)
    assert plain.returncode == 0 and b"%" not in plain.stderr, plain.stderr[-500:]
    master, slave = pty.openpty()
    try:
        p = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL, timeout=60)
        os.close(slave)
        slave = None
        got = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0
    assert b"\r[" in got and b"100%" in got, got[-500:]


# --- listener defaults (docs/hardening.md "Listeners") ------------------------------------------------

def test_grpc_defaults_announced_in_settings(start_collector):
    """docs/hardening.md: `max_concurrent_streams` default 100, "announced in SETTINGS"; `max_header_list_size`
    default 16384 (RFC 9113 §6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS = 0x3, SETTINGS_MAX_HEADER_LIST_SIZE = 0x6)."""
    col = start_collector("grpc-defaults", grpc={})
    c = h.H2FrameClient(col.grpc_address)
    try:
        assert c.read_until(lambda: any(f.type == 4 and not f.flags & 0x1 for f in c.frames), timeout=5), c.frames
        frame = [f for f in c.frames if f.type == 4 and not f.flags & 0x1][0]
        p = frame.payload
        settings = {int.from_bytes(p[i:i + 2], "big"): int.from_bytes(p[i + 2:i + 6], "big")
                    for i in range(0, len(p) - 5, 6)}
    finally:
        c.close()
    assert settings.get(0x3) == 100, settings
    assert settings.get(0x6) == 16384, settings


def test_admin_max_connections_default_is_100(start_collector):
    """docs/hardening.md: `max_connections` default 1000 (admin: 100)."""
    col = start_collector("admin-default-limit")
    host, port = h.split_address(col.admin)
    held = []
    try:
        for _ in range(100):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200"), "connection %d within the default limit refused" % len(held)
            held.append(s)
        with socket.create_connection((host, port), timeout=5) as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            extra.settimeout(5)
            try:
                got = extra.recv(65536)
            except ConnectionResetError:
                got = b""
        assert got == b"", "the 101st admin connection was served: %r" % got[:60]
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)


@pytest.mark.parametrize("key,value", [
    ("receivers.otlp.protocols.http.max_header_bytes", 81921),
    ("receivers.otlp.protocols.http.max_header_bytes", 1023),
    ("receivers.otlp.protocols.http.read_timeout", "soon"),
    ("service.memory_limiter.spike_limit_mib", 600),
])
def test_a_bad_limit_fails_validate_naming_the_key(agenttrace_bin, tmp_path, key, value):
    """docs/hardening.md: "a bad value fails at start-up (`agenttrace validate`) with a message naming the key";
    `max_header_bytes` 1024–81920; spike_limit_mib below limit_mib."""
    override, node = {}, None
    parts = key.split(".")
    node = override
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    if parts[1] == "memory_limiter":
        node["limit_mib"] = 512
    cfg = h.write_config(str(tmp_path / "c.yaml"), h.build_config(str(tmp_path / "o.jsonl"), overrides=override))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode != 0, r.stdout
    assert key in r.stderr + r.stdout, r.stderr


# --- scripts/run ------------------------------------------------------------------------------------

def test_scripts_run_builds_the_release_binary_and_serves_with_the_arguments_given():
    """README: `scripts/run` builds `.build/release/agenttrace` and runs `serve` (extra arguments go to it).
    Checked without running it (a release build is not made on the shared test machines): the script is
    executable bash that parses, installs the libraries, builds the `agenttrace` product in release mode and
    then execs that binary's `serve` with every argument; Package.swift declares that product."""
    path = os.path.join(h.REPO_ROOT, "scripts", "run")
    assert os.access(path, os.X_OK), "scripts/run is not executable"
    r = subprocess.run(["bash", "-n", path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    with open(path, encoding="utf-8") as f:
        commands = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    assert "set -euo pipefail" in commands, commands   # a failed build stops it before the exec
    build = commands.index("swift build -c release --product agenttrace")
    assert commands.index("scripts/install-deps") < build, commands
    assert commands[-1] == 'exec .build/release/agenttrace serve "$@"', commands
    with open(os.path.join(h.REPO_ROOT, "Package.swift"), encoding="utf-8") as f:
        package = f.read()
    assert re.search(r'\.executable\(\s*name:\s*"agenttrace"', package), "Package.swift has no agenttrace executable product"
