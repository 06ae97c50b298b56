"""The admin server: health endpoints and a /metrics scrape that promtool accepts."""

import json
import subprocess
import time

import interop_helpers as h

LAB = {"receiver": "otlp", "transport": "http"}

EXPECTED_SERIES = [
    ("agenttrace_receiver_accepted_spans_total", LAB),
    ("agenttrace_receiver_refused_spans_total", LAB),
    ("agenttrace_receiver_requests_total", dict(LAB, code="200")),
    ("agenttrace_receiver_requests_total", dict(LAB, code="400")),
    ("agenttrace_receiver_decode_errors_total", dict(LAB, encoding="json")),
    ("agenttrace_exporter_sent_spans_total", {"exporter": "file"}),
    ("agenttrace_exporter_send_failed_spans_total", {"exporter": "file"}),
    ("agenttrace_pipeline_queue_size", {"pipeline": "traces"}),
    ("agenttrace_pipeline_queue_capacity", {"pipeline": "traces"}),
    ("agenttrace_processor_batch_batches_sent_total", {"processor": "batch", "trigger": "timeout"}),
]


def test_health_endpoints(start_collector):
    col = start_collector("health")
    for path in ("/healthz", "/readyz"):
        r = col.admin_get(path)
        assert r.status == 200, "%s answered %d: %r" % (path, r.status, r.body[:200])
    r = col.admin_get("/no-such-admin-path")
    assert r.status == 404, r.status


def test_metrics_scrape_passes_promtool(start_collector, promtool, testdata):
    col = start_collector("metrics")
    # traffic so that the series exist: a good protobuf request, a good JSON one, a bad JSON one
    spans = h.load_spans(testdata("multi-agent.pb"))
    assert col.post_traces(open(testdata("multi-agent.pb"), "rb").read()).status == 200
    assert col.post_traces(open(testdata("invalid-ids.json"), "rb").read(), "application/json").status == 200
    assert col.post_traces(b"{", "application/json").status == 400
    total = len(spans) + 3

    # the batch processor (timeout 200ms) flushes to the file exporter
    deadline = time.monotonic() + 10
    while True:
        ms = col.scrape()
        if ms.value("agenttrace_exporter_sent_spans_total", exporter="file") >= total or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    r = col.admin_get("/metrics")
    assert r.status == 200
    assert r.content_type.startswith("text/plain"), r.content_type
    text = r.body.decode("utf-8")
    ms = h.parse_metrics(text)

    missing = [(n, lab) for n, lab in EXPECTED_SERIES if not ms.has(n, lab)]
    assert not missing, "series missing from /metrics: %s" % missing
    assert ms.value("agenttrace_receiver_accepted_spans_total", LAB) == total
    assert ms.value("agenttrace_receiver_refused_spans_total", LAB) == 2
    assert ms.value("agenttrace_receiver_requests_total", LAB, code="200") == 2
    assert ms.value("agenttrace_receiver_requests_total", LAB, code="400") == 1
    assert ms.value("agenttrace_receiver_decode_errors_total", LAB, encoding="json") == 1
    assert ms.value("agenttrace_exporter_sent_spans_total", exporter="file") == total
    assert ms.value("agenttrace_exporter_send_failed_spans_total", exporter="file") == 0
    assert ms.value("agenttrace_pipeline_queue_capacity", pipeline="traces") > 0
    assert 0 <= ms.value("agenttrace_pipeline_queue_size", pipeline="traces") <= \
        ms.value("agenttrace_pipeline_queue_capacity", pipeline="traces")
    assert ms.total("agenttrace_processor_batch_batches_sent_total", processor="batch") >= 1
    for name in ms.names():
        if name.endswith("_total"):
            assert ms.types.get(name) == "counter", "%s has # TYPE %r" % (name, ms.types.get(name))
    assert ms.types.get("agenttrace_pipeline_queue_size") == "gauge"
    assert ms.types.get("agenttrace_pipeline_queue_capacity") == "gauge"

    p = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True, timeout=30)
    assert p.returncode == 0, "promtool check metrics exit %d:\n%s%s" % (
        p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    # the collector wrote what it counted
    assert len(col.output_spans()) == total


def test_readyz_and_ready_line_agree(start_collector):
    """The collector says 'ready' on stdout only when /readyz already answers 200 and the receiver works."""
    col = start_collector("ready")
    assert col.admin_get("/readyz").status == 200
    r = col.post_traces(json.dumps({"resourceSpans": []}).encode(), "application/json")
    assert r.status == 200 and r.json() == {}, (r.status, r.body)
