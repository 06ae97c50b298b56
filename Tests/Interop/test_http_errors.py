"""Raw OTLP/HTTP requests, good and bad, against one collector.

Every case checks the status code and body the OTLP/HTTP spec asks for, that the
collector still serves a valid request afterwards, and that /metrics counted it.
The tests of this module share one collector and run one after another, so the
counter deltas are exact."""

import functools
import gzip
import json
import secrets
import time

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

import interop_helpers as h

try:
    from google.rpc import status_pb2
except ImportError:  # googleapis-common-protos comes with the OTLP exporters
    status_pb2 = None

LAB = {"receiver": "otlp", "transport": "http"}
REQUESTS = "agenttrace_receiver_requests_total"
ACCEPTED = "agenttrace_receiver_accepted_spans_total"
REFUSED = "agenttrace_receiver_refused_spans_total"
DECODE_ERRORS = "agenttrace_receiver_decode_errors_total"
LIMIT = 1048576  # max_request_body_size in the config h.build_config writes


@pytest.fixture(scope="module")
def col(module_collector):
    assert module_collector.config["receivers"]["otlp"]["protocols"]["http"]["max_request_body_size"] == LIMIT
    return module_collector


def one_span_request(name="ping", extra_attr=None):
    """A valid OTLP/JSON request with one span and fresh random ids."""
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    span = {"traceId": tid, "spanId": sid, "name": name, "kind": 1,
            "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225600001000000"}
    if extra_attr:
        span["attributes"] = [{"key": extra_attr[0], "value": {"stringValue": extra_attr[1]}}]
    req = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "interop-raw"}}]},
        "scopeSpans": [{"scope": {"name": "interop.raw"}, "spans": [span]}],
    }]}
    return req, (tid, sid)


def assert_still_serves(col):
    """A valid JSON request right after the bad one: 200 with an empty ExportTraceServiceResponse."""
    req, key = one_span_request("still-alive")
    r = col.post_traces(json.dumps(req).encode(), "application/json")
    assert r.status == 200, "valid request after the bad one answered %d: %r" % (r.status, r.body[:300])
    assert r.content_type.startswith("application/json"), r.content_type
    assert r.json() == {}, r.body
    return key


def expect_deltas(col, before, deltas, timeout=5.0):
    """Poll /metrics until every (name, labels) series moved by exactly the given delta."""
    deadline = time.monotonic() + timeout
    while True:
        after = col.scrape()
        got = {k: after.value(k[0], dict(k[1])) - before.value(k[0], dict(k[1])) for k in deltas}
        if got == deltas or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    wrong = {"%s%s" % (k[0], dict(k[1])): "want +%g, got +%g" % (deltas[k], got[k]) for k in deltas
             if got[k] != deltas[k]}
    assert not wrong, "metric deltas: %s" % wrong
    return after


def key(name, **labels):
    return (name, tuple(sorted(dict(LAB, **labels).items())))


def requests_delta(code, n=1):
    """The bad request answered `code`, the follow-up answered 200 and was accepted."""
    d = {key(REQUESTS, code=str(code)): n, key(ACCEPTED): 1}
    d[key(REQUESTS, code="200")] = d.get(key(REQUESTS, code="200"), 0) + 1
    return d


@functools.lru_cache(maxsize=1)
def bomb():
    return h.gzip_bomb(100 * 1024 * 1024)


# --- bad requests ----------------------------------------------------------

def test_malformed_protobuf_400_with_status(col):
    body = b"\x0a\x05abc"  # field 1 says 5 bytes follow, only 3 do
    with pytest.raises(DecodeError):
        trace_service_pb2.ExportTraceServiceRequest().ParseFromString(body)
    before = col.scrape()
    r = col.post_traces(body, "application/x-protobuf")
    assert r.status == 400, (r.status, r.body[:300])
    assert r.content_type.startswith("application/x-protobuf"), r.content_type
    assert status_pb2 is not None, "google.rpc.status_pb2 missing: pip install googleapis-common-protos"
    st = status_pb2.Status()
    st.ParseFromString(r.body)
    assert st.code == 3, st  # INVALID_ARGUMENT
    assert st.message, "google.rpc.Status without a message"
    assert_still_serves(col)
    d = requests_delta(400)
    d[key(DECODE_ERRORS, encoding="protobuf")] = 1
    expect_deltas(col, before, d)


@pytest.mark.parametrize("body", [
    b'{"resourceSpans": [{"scopeSpans": [',      # truncated
    b'{"resourceSpans": "not a list"}',           # valid JSON, not an ExportTraceServiceRequest
], ids=["truncated", "wrong-type"])
def test_malformed_json_400_with_status(col, body):
    before = col.scrape()
    r = col.post_traces(body, "application/json")
    assert r.status == 400, (r.status, r.body[:300])
    assert r.content_type.startswith("application/json"), r.content_type
    st = r.json()
    assert st.get("code") == 3 and isinstance(st.get("message"), str) and st["message"], st
    assert_still_serves(col)
    d = requests_delta(400)
    d[key(DECODE_ERRORS, encoding="json")] = 1
    expect_deltas(col, before, d)


def test_corrupt_gzip_400(col):
    before = col.scrape()
    r = col.post_traces(b"this is not gzip at all", "application/x-protobuf", {"Content-Encoding": "gzip"})
    assert r.status == 400, (r.status, r.body[:300])
    assert_still_serves(col)
    d = requests_delta(400)
    d[key(DECODE_ERRORS, encoding="gzip")] = 1
    expect_deltas(col, before, d)


def test_text_plain_415(col):
    req, _ = one_span_request()
    before = col.scrape()
    r = col.post_traces(json.dumps(req).encode(), "text/plain")
    assert r.status == 415, (r.status, r.body[:300])
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(415))


def test_body_over_limit_413(col):
    req, _ = one_span_request("too-big", ("payload", "x" * (LIMIT + 1024)))
    body = h.request_to_protobuf(req).SerializeToString()
    assert len(body) > LIMIT
    before = col.scrape()
    r = col.post_traces(body, "application/x-protobuf")
    assert r.status == 413, (r.status, r.body[:300])
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(413))


def test_gzip_bomb_413(col):
    body = bomb()
    assert len(body) < 200 * 1024
    before = col.scrape()
    t0 = time.monotonic()
    r = col.post_traces(body, "application/x-protobuf", {"Content-Encoding": "gzip"})
    assert r.status == 413, (r.status, r.body[:300])
    assert time.monotonic() - t0 < 10
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(413))


def test_gzip_under_limit_but_inflating_over_it_413(col):
    """The limit applies after decompression: a legitimate request that is small compressed."""
    req, _ = one_span_request("big-when-inflated", ("payload", "y" * (2 * LIMIT)))
    body = gzip.compress(json.dumps(req).encode())
    assert len(body) < LIMIT
    before = col.scrape()
    r = col.post_traces(body, "application/json", {"Content-Encoding": "gzip"})
    assert r.status == 413, (r.status, r.body[:300])
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(413))


def test_get_405(col):
    before = col.scrape()
    r = h.http_request(col.http_address, "GET", "/v1/traces")
    assert r.status == 405, (r.status, r.body[:300])
    assert "POST" in r.headers.get("allow", ""), "405 without an Allow header naming POST: %r" % r.headers
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(405))


def test_unknown_path_404(col):
    req, _ = one_span_request()
    before = col.scrape()
    r = col.post_traces(json.dumps(req).encode(), "application/json", path="/nope")
    assert r.status == 404, (r.status, r.body[:300])
    assert_still_serves(col)
    expect_deltas(col, before, requests_delta(404))


# --- partial success -------------------------------------------------------

def invalid_ids_expectation(testdata):
    spans = h.load_spans(testdata("invalid-ids.json"))
    valid = [s for s in spans if len(s.trace_id) == 32 and set(s.trace_id) != {"0"}
             and len(s.span_id) == 16 and set(s.span_id) != {"0"}]
    invalid = [s for s in spans if s not in valid]
    assert (len(valid), len(invalid)) == (3, 2)
    return valid, invalid


def test_invalid_ids_json_partial_success(col, testdata):
    valid, invalid = invalid_ids_expectation(testdata)
    before = col.scrape()
    r = col.post_traces(open(testdata("invalid-ids.json"), "rb").read(), "application/json")
    assert r.status == 200, (r.status, r.body[:300])
    assert r.content_type.startswith("application/json"), r.content_type
    ps = r.json().get("partialSuccess")
    assert ps and ps.get("rejectedSpans") == "2", r.body
    assert ps.get("errorMessage"), "partialSuccess without an errorMessage: %r" % r.body
    assert_still_serves(col)
    d = requests_delta(200)
    d[key(ACCEPTED)] += 3
    d[key(REFUSED)] = 2
    expect_deltas(col, before, d)
    want = {s.key for s in valid}
    out = col.wait_for_spans(lambda spans: want <= {s.key for s in spans})
    names = {s.name for s in out}
    assert not names & {s.name for s in invalid}, "invalid spans reached the exporter"


def test_invalid_ids_protobuf_partial_success(col, testdata):
    request = json.load(open(testdata("invalid-ids.json")))
    body = h.request_to_protobuf(request).SerializeToString()
    before = col.scrape()
    r = col.post_traces(body, "application/x-protobuf")
    assert r.status == 200, (r.status, r.body[:300])
    assert r.content_type.startswith("application/x-protobuf"), r.content_type
    resp = trace_service_pb2.ExportTraceServiceResponse()
    resp.ParseFromString(r.body)
    assert resp.partial_success.rejected_spans == 2, resp
    assert resp.partial_success.error_message
    d = {key(REQUESTS, code="200"): 1, key(ACCEPTED): 3, key(REFUSED): 2}
    expect_deltas(col, before, d)


# --- good requests ---------------------------------------------------------

def test_protobuf_request_accepted(col, testdata):
    src = testdata("multi-agent.pb")
    want = h.load_spans(src)
    before = col.scrape()
    r = col.post_traces(open(src, "rb").read(), "application/x-protobuf")
    assert r.status == 200, (r.status, r.body[:300])
    assert r.content_type.startswith("application/x-protobuf"), r.content_type
    resp = trace_service_pb2.ExportTraceServiceResponse()
    resp.ParseFromString(r.body)
    assert not resp.HasField("partial_success") or resp.partial_success.rejected_spans == 0, resp
    expect_deltas(col, before, {key(REQUESTS, code="200"): 1, key(ACCEPTED): len(want), key(REFUSED): 0})
    keys = {s.key for s in want}
    col.wait_for_spans(lambda spans: keys <= {s.key for s in spans})


def test_gzip_json_request_accepted(col, testdata):
    src = testdata("multi-agent.json")
    want = h.load_spans(src)
    # ids must be fresh for this collector's output check: rewrite the trace ids
    request = json.load(open(src))
    new_ids = {}
    for rs in request["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["traceId"] = new_ids.setdefault(sp["traceId"], secrets.token_hex(16))
    before = col.scrape()
    r = col.post_traces(gzip.compress(json.dumps(request).encode()), "application/json",
                        {"Content-Encoding": "gzip"})
    assert r.status == 200, (r.status, r.body[:300])
    assert r.json() == {}, r.body
    expect_deltas(col, before, {key(REQUESTS, code="200"): 1, key(ACCEPTED): len(want)})
    keys = {s.key for s in h.spans_of(request)}
    col.wait_for_spans(lambda spans: keys <= {s.key for s in spans})
