"""OTLP/gRPC: real clients against the binary's gRPC receiver (h2c, TraceService/Export).

  * the OpenTelemetry Python SDK's gRPC exporter: spans arrive intact, plain and gzip;
  * grpcio raw unary calls: the status codes the OTLP specification asks for, with exact /metrics deltas;
  * hyper-h2 over a plain socket: malformed gRPC framing, early refusals, non-gRPC and non-HTTP/2 peers;
  * h2load: 20 000 calls on 8 connections, every one answered OK and counted;
  * SIGTERM: GOAWAY, the stream in flight finishes, every span answered OK is written, exit 0.

The raw-call tests share one collector and run one after another, so the counter deltas are exact.
Every bad input is followed by a valid Export that must still be answered OK."""

import gzip
import secrets
import subprocess
import threading
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult

import interop_helpers as h
from test_http_errors import expect_deltas
from test_otel_sdk import RecordingExporter, assert_span_matches, expected_value, produce_spans

LAB = {"receiver": "otlp", "transport": "grpc"}
REQUESTS = "agenttrace_receiver_requests_total"
ACCEPTED = "agenttrace_receiver_accepted_spans_total"
REFUSED = "agenttrace_receiver_refused_spans_total"
DECODE_ERRORS = "agenttrace_receiver_decode_errors_total"
GRPC_CODES = ("OK", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "UNAVAILABLE")
MIB = 1 << 20
LIMIT = h.GRPC_SETTINGS["max_recv_msg_size_mib"] * MIB

OK = grpc.StatusCode.OK
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED


@pytest.fixture(scope="module")
def col(module_grpc_collector):
    assert module_grpc_collector.config["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"] == 4
    return module_grpc_collector


def key(name, **labels):
    return (name, tuple(sorted(dict(LAB, **labels).items())))


def span_request(n=1, name="grpc", attr=None, service="interop-grpc"):
    """An ExportTraceServiceRequest message with n spans with fresh random ids; returns (message, keys).
    attr: (key, string value) set on every span."""
    tid = secrets.token_hex(16)
    spans, keys = [], []
    for i in range(n):
        sid = secrets.token_hex(8)
        sp = {"traceId": tid, "spanId": sid, "name": "%s-%d" % (name, i), "kind": 2,
              "startTimeUnixNano": str(1767225600000000000 + i), "endTimeUnixNano": str(1767225600001000000 + i)}
        if attr:
            sp["attributes"] = [{"key": attr[0], "value": {"stringValue": attr[1]}}]
        spans.append(sp)
        keys.append((tid, sid))
    req = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "interop.grpc"}, "spans": spans}],
    }]}
    return h.request_to_protobuf(req), keys


def export(address, message, **kw):
    """One grpcio call on a fresh channel."""
    with h.grpc_channel(address) as ch:
        return h.grpc_export(ch, message, **kw)


def assert_no_partial_success(resp):
    assert not resp.HasField("partial_success") or (
        resp.partial_success.rejected_spans == 0 and not resp.partial_success.error_message), resp


def assert_still_serves(col):
    """A valid Export right after the bad input, on a new connection: OK, no partial success."""
    msg, keys = span_request(1, "still-alive")
    r = export(col.grpc_address, msg)
    assert r.code == OK, "valid Export after the bad input: %s %r\n%s" % (r.code, r.details, col.describe())
    assert_no_partial_success(r.response)
    return keys


def refused_delta(code, n=1):
    """The bad call(s) answered `code`; the follow-up answered OK with its one span accepted."""
    d = {key(REQUESTS, code=code): n, key(ACCEPTED): 1}
    d[key(REQUESTS, code="OK")] = d.get(key(REQUESTS, code="OK"), 0) + 1
    return d


def assert_spans_written(col, want):
    """Every wanted FlatSpan reaches the file exporter with the same content."""
    keys = {s.key for s in want}
    got = {s.key: s for s in col.wait_for_spans(lambda spans: keys <= {s.key for s in spans})}
    for w in want:
        g = got[w.key]
        for attr in ("parent_span_id", "name", "kind", "start", "end", "attributes", "events", "links",
                     "status_code", "status_message", "resource", "scope_name", "scope_version", "trace_state"):
            assert getattr(g, attr) == getattr(w, attr), "span %s (%s): %s differs" % (w.span_id, w.name, attr)


# --- 1. the OpenTelemetry SDK's gRPC exporter -------------------------------

@pytest.mark.parametrize("compression,processor", [
    (grpc.Compression.NoCompression, "batch"),
    (grpc.Compression.Gzip, "simple"),
], ids=["plain-batch", "gzip-simple"])
def test_sdk_grpc_export_arrives_intact(start_collector, compression, processor):
    col = start_collector("sdk-grpc", grpc=h.GRPC_SETTINGS)
    service = "interop-sdk-grpc-%s" % compression.name.lower()
    resource = Resource.create({"service.name": service, "service.version": "1.0.0",
                                "deployment.environment": "interop"})
    otlp = OTLPSpanExporter(endpoint="http://%s" % col.grpc_address, insecure=True, compression=compression,
                            timeout=10, channel_options=h.GRPC_CHANNEL_OPTIONS)
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
    assert resource_attrs["service.name"] == service
    for s in sdk_spans:
        c = s.get_span_context()
        assert_span_matches(s, by_key[(format(c.trace_id, "032x"), format(c.span_id, "016x"))],
                            resource_attrs, ("agenttrace.interop", "1.2.3"))
    assert len(out) == len(sdk_spans), "the output has spans nobody sent"

    # They came over gRPC, answered OK, nothing over HTTP.
    ms = col.scrape()
    assert ms.value(ACCEPTED, LAB) == len(sdk_spans)
    assert ms.value(REQUESTS, LAB, code="OK") == len(recorder.results)
    assert ms.total(REQUESTS, transport="grpc") == len(recorder.results)
    assert ms.value(ACCEPTED, receiver="otlp", transport="http") == 0


# --- 2. grpcio raw unary calls ----------------------------------------------

@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip], ids=["identity", "gzip"])
def test_valid_request_ok(col, testdata, compression):
    request = h.load_requests(testdata("multi-agent.json"))[0]
    # fresh trace ids, so that the two cases write different spans
    new_ids = {}
    for rs in request["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["traceId"] = new_ids.setdefault(sp["traceId"], secrets.token_hex(16))
    msg = h.request_to_protobuf(request)
    want = h.spans_of(request)
    before = col.scrape()
    r = export(col.grpc_address, msg, compression=compression)
    assert r.code == OK, (r.code, r.details)
    assert_no_partial_success(r.response)
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): len(want), key(REFUSED): 0,
                                key(DECODE_ERRORS, encoding="protobuf"): 0, key(DECODE_ERRORS, encoding="gzip"): 0})
    assert_spans_written(col, want)


def test_invalid_ids_partial_success(col, testdata):
    request = h.load_requests(testdata("invalid-ids.json"))[0]
    spans = h.spans_of(request)
    valid = [s for s in spans if len(s.trace_id) == 32 and set(s.trace_id) != {"0"}
             and len(s.span_id) == 16 and set(s.span_id) != {"0"}]
    invalid = [s for s in spans if s not in valid]
    assert (len(valid), len(invalid)) == (3, 2)
    before = col.scrape()
    r = export(col.grpc_address, h.request_to_protobuf(request))
    assert r.code == OK, (r.code, r.details)
    assert r.response.partial_success.rejected_spans == 2, r.response
    assert r.response.partial_success.error_message, "partial_success without an error_message"
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 3, key(REFUSED): 2})
    assert_spans_written(col, valid)
    names = {s.name for s in col.output_spans()}
    assert not names & {s.name for s in invalid}, "invalid spans reached the exporter"


def test_garbage_message_invalid_argument(col):
    before = col.scrape()
    r = export(col.grpc_address, b"\x0a\x05abc")  # field 1 says 5 bytes follow, only 3 do
    assert r.code == INVALID_ARGUMENT, (r.code, r.details)
    assert r.details, "INVALID_ARGUMENT without a grpc-message"
    assert_still_serves(col)
    d = refused_delta("INVALID_ARGUMENT")
    d[key(DECODE_ERRORS, encoding="protobuf")] = 1
    expect_deltas(col, before, d)


def test_message_over_limit_resource_exhausted(col):
    msg, _ = span_request(1, "too-big", ("payload", "x" * (5 * MIB)))
    assert msg.ByteSize() > LIMIT
    before = col.scrape()
    r = export(col.grpc_address, msg)
    assert r.code == RESOURCE_EXHAUSTED, (r.code, r.details)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("RESOURCE_EXHAUSTED"))


def test_large_message_under_limit_ok(col):
    """~3 MiB in one message: many DATA frames, so the server must keep opening its flow-control windows."""
    payload = secrets.token_hex(3 * MIB // 2)  # 3 MiB of incompressible text
    msg, keys = span_request(1, "large", ("payload", payload))
    assert 3 * MIB <= msg.ByteSize() < LIMIT
    before = col.scrape()
    r = export(col.grpc_address, msg)
    assert r.code == OK, (r.code, r.details)
    assert_no_partial_success(r.response)
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 1})
    out = {s.key: s for s in col.wait_for_spans(lambda spans: keys[0] in {s.key for s in spans})}
    assert out[keys[0]].attributes == {"payload": payload}


def test_gzip_message_inflating_over_limit_resource_exhausted(col):
    """The limit applies after decompression: small on the wire, 5 MiB once inflated."""
    msg, _ = span_request(1, "big-when-inflated", ("payload", "z" * (5 * MIB)))
    assert msg.ByteSize() > LIMIT
    before = col.scrape()
    r = export(col.grpc_address, msg, compression=grpc.Compression.Gzip)
    assert r.code == RESOURCE_EXHAUSTED, (r.code, r.details)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("RESOURCE_EXHAUSTED"))


@pytest.mark.parametrize("method", [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
], ids=["unknown-method", "unknown-service"])
def test_unknown_method_unimplemented(col, method):
    msg, _ = span_request(1, "wrong-method")
    before = col.scrape()
    r = export(col.grpc_address, msg, method=method)
    assert r.code == UNIMPLEMENTED, (r.code, r.details)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("UNIMPLEMENTED"))


# --- 3. raw HTTP/2 (hyper-h2) -----------------------------------------------

def grpc_call(col, body, end_stream=True, content_type="application/grpc", extra=()):
    return h.h2_request(col.grpc_address, h.grpc_request_headers(col.grpc_address, content_type=content_type,
                                                                 extra=extra), body, end_stream=end_stream)


def assert_grpc_status(resp, code):
    assert resp.status == 200, "want HTTP :status 200 carrying grpc-status %d, got %r" % (code, resp)
    assert resp.grpc_status == code, "want grpc-status %d, got %r" % (code, resp)


def test_h2_truncated_message_invalid_argument(col):
    body = h.grpc_frame(b"0123456789", declared_length=100)  # declares 100 bytes, 10 follow, then END_STREAM
    before = col.scrape()
    r = grpc_call(col, body)
    assert_grpc_status(r, 3)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("INVALID_ARGUMENT"))


def test_h2_two_messages_invalid_argument(col):
    msg, _ = span_request(1, "twice")
    before = col.scrape()
    r = grpc_call(col, h.grpc_frame(msg.SerializeToString()) * 2)
    assert_grpc_status(r, 3)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("INVALID_ARGUMENT"))


def test_h2_declared_length_over_limit_refused_early(col):
    """The first DATA frame's prefix declares 0x7fffffff bytes: RESOURCE_EXHAUSTED comes back while the
    client has not finished sending (it never does)."""
    body = h.grpc_frame(b"x" * 1000, declared_length=0x7FFFFFFF)
    before = col.scrape()
    r = grpc_call(col, body, end_stream=False)
    assert not r.request_finished
    assert_grpc_status(r, 8)
    assert r.ended, "the answer must end the server's side of the stream: %r" % r
    assert r.reset_code in (None, 0), "an early answer may be followed by RST_STREAM(NO_ERROR) only: %r" % r
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("RESOURCE_EXHAUSTED"))


def test_h2_gzip_inflating_over_limit_resource_exhausted(col):
    """The same as the grpcio case with the compressed flag and grpc-encoding set by hand."""
    msg, _ = span_request(1, "big-when-inflated", ("payload", "z" * (5 * MIB)))
    body = h.grpc_frame(gzip.compress(msg.SerializeToString()), compressed=True)
    assert len(body) < 64 * 1024
    before = col.scrape()
    r = grpc_call(col, body, extra=[("grpc-encoding", "gzip")])
    assert_grpc_status(r, 8)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("RESOURCE_EXHAUSTED"))


def test_h2_corrupt_gzip_invalid_argument(col):
    before = col.scrape()
    r = grpc_call(col, h.grpc_frame(b"this is not gzip at all", compressed=True), extra=[("grpc-encoding", "gzip")])
    assert_grpc_status(r, 3)
    assert_still_serves(col)
    d = refused_delta("INVALID_ARGUMENT")
    d[key(DECODE_ERRORS, encoding="gzip")] = 1
    expect_deltas(col, before, d)


def test_h2_unsupported_encoding_unimplemented(col):
    msg, _ = span_request(1, "snappy")
    before = col.scrape()
    r = grpc_call(col, h.grpc_frame(msg.SerializeToString(), compressed=True), extra=[("grpc-encoding", "snappy")])
    assert_grpc_status(r, 12)
    assert_still_serves(col)
    expect_deltas(col, before, refused_delta("UNIMPLEMENTED"))


def test_h2_identity_encoding_ok(col):
    msg, keys = span_request(2, "identity")
    before = col.scrape()
    r = grpc_call(col, h.grpc_frame(msg.SerializeToString()), extra=[("grpc-encoding", "identity")])
    assert_grpc_status(r, 0)
    assert r.headers.get("content-type", "").startswith("application/grpc"), r
    assert r.data[:1] == b"\x00" and int.from_bytes(r.data[1:5], "big") == len(r.data) - 5, r.data
    assert_no_partial_success(trace_service_pb2.ExportTraceServiceResponse.FromString(r.data[5:]))
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 2})
    col.wait_for_spans(lambda spans: set(keys) <= {s.key for s in spans})


def test_h2_non_grpc_content_type_415(col):
    before = col.scrape()
    r = grpc_call(col, b'{"resourceSpans": []}', content_type="application/json")
    assert r.status == 415, "want HTTP :status 415 for content-type application/json, got %r" % r
    assert_still_serves(col)
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 1})


def test_http1_request_gets_400_and_close(col):
    before = col.scrape()
    reply = h.raw_exchange(col.grpc_address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # fails unless closed
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"\r\n\r\n" in reply, reply[:300]
    assert_still_serves(col)
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 1})


def test_garbage_after_preface_goaway_and_close(col):
    before = col.scrape()
    reply = h.raw_exchange(col.grpc_address, h.H2_PREFACE + b"\xff" * 64)  # fails unless closed
    frames = h.parse_h2_frames(reply)
    goaways = [f for f in frames if f.type == 7]
    assert goaways, "no GOAWAY before the close; frames: %s" % [(f.type_name, f.payload[:40]) for f in frames]
    assert int.from_bytes(goaways[0].payload[4:8], "big") != 0, "GOAWAY for garbage should carry an error code"
    assert_still_serves(col)
    expect_deltas(col, before, {key(REQUESTS, code="OK"): 1, key(ACCEPTED): 1})


# --- 4. h2load --------------------------------------------------------------

def test_h2load_20000_calls_all_ok(start_collector, h2load, tmp_path):
    col = start_collector("h2load", grpc=h.GRPC_SETTINGS, exporter="nop")
    spans_per_body = 10
    msg, _ = span_request(spans_per_body, "h2load", ("gen_ai.operation.name", "chat"))
    body = tmp_path / "export.grpc"
    body.write_bytes(h.grpc_frame(msg.SerializeToString()))
    n = 20000
    before = col.scrape()
    cmd = [h2load, "-n", str(n), "-c", "8", "-m", "16", "-d", str(body),
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           "http://%s%s" % (col.grpc_address, h.GRPC_EXPORT_PATH)]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "h2load exited %d:\n%s\n%s" % (p.returncode, p.stdout[-3000:], p.stderr[-3000:])
    res = h.parse_h2load_output(p.stdout)
    assert (res["total"], res["succeeded"], res["failed"], res["errored"], res["timeout"]) == (n, n, 0, 0, 0), \
        p.stdout[-3000:]
    assert res["2xx"] == n, p.stdout[-3000:]
    d = {key(REQUESTS, code=c): 0 for c in GRPC_CODES}
    d[key(REQUESTS, code="OK")] = n
    d[key(ACCEPTED)] = n * spans_per_body
    d[key(REFUSED)] = 0
    expect_deltas(col, before, d)


# --- 5. graceful shutdown ---------------------------------------------------

def test_sigterm_finishes_in_flight_and_writes_every_ok_span(start_collector):
    col = start_collector("shutdown", grpc=h.GRPC_SETTINGS)
    ok_keys, lock = [], threading.Lock()

    # Calls answered before the signal.
    with h.grpc_channel(col.grpc_address) as ch:
        for i in range(10):
            msg, keys = span_request(5, "before-%d" % i)
            r = h.grpc_export(ch, msg)
            assert r.code == OK, (r.code, r.details)
            ok_keys.extend(keys)

    # A stream in flight on a raw HTTP/2 connection: headers and half the message sent, then the signal.
    # (Frame level: hyper-h2 will not send on a connection after it has received GOAWAY.)
    inflight_msg, inflight_keys = span_request(3, "in-flight")
    framed = h.grpc_frame(inflight_msg.SerializeToString())
    half = len(framed) // 2
    inflight = h.H2FrameClient(col.grpc_address)
    assert inflight.send_headers(1, h.grpc_request_headers(col.grpc_address))
    assert inflight.send_data(1, framed[:half])
    # the server has answered the preface, so it has seen the stream open
    assert inflight.read_until(lambda: any(f.type == 4 for f in inflight.frames), timeout=5)
    idle = h.H2FrameClient(col.grpc_address)     # a connection with no stream
    assert idle.read_until(lambda: any(f.type == 4 for f in idle.frames), timeout=5)

    # Clients calling all along while the signal arrives.
    stop = threading.Event()
    other_codes = []

    def caller(n):
        with h.grpc_channel(col.grpc_address) as ch:
            i = 0
            while not stop.is_set():
                msg, keys = span_request(2, "during-%d-%d" % (n, i))
                r = h.grpc_export(ch, msg, timeout=5)
                with lock:
                    if r.code == OK:
                        ok_keys.extend(keys)
                    else:
                        other_codes.append((r.code, r.details))
                if r.code != OK:
                    return
                i += 1

    threads = [threading.Thread(target=caller, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    col.terminate()

    # GOAWAY(NO_ERROR) on both raw connections; the idle one is then closed.
    assert inflight.read_until(lambda: inflight.goaway is not None, timeout=10), \
        "no GOAWAY on a connection with a stream in flight after SIGTERM"
    last_stream_id, error_code = inflight.goaway
    assert error_code == 0, "graceful GOAWAY must carry NO_ERROR, got %d" % error_code
    assert last_stream_id >= 1, "GOAWAY last_stream_id %d drops the stream in flight" % last_stream_id
    assert not inflight.closed and 1 not in inflight.resets, "the stream in flight was cut off"
    assert idle.read_until(lambda: idle.closed, timeout=10), "the idle connection was not closed after SIGTERM"
    assert idle.goaway and idle.goaway[1] == 0, "no GOAWAY(NO_ERROR) before the idle connection closed: %r" % (
        idle.goaway,)
    idle.close()

    # The stream in flight completes.
    assert inflight.send_data(1, framed[half:], end_stream=True), "could not finish the request after GOAWAY"
    assert inflight.read_until(lambda: 1 in inflight.ended or 1 in inflight.resets, timeout=10), \
        "the stream in flight got no answer after GOAWAY (frames: %s)" % [f.type_name for f in inflight.frames]
    assert 1 not in inflight.resets, "the stream in flight was reset: %r" % inflight.resets
    blocks = inflight.headers.get(1, [])
    assert blocks and blocks[0].get(":status") == "200", blocks
    assert inflight.grpc_status(1) == 0, blocks
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(inflight.data.get(1, b"")[5:])
    assert_no_partial_success(resp)
    ok_keys.extend(inflight_keys)
    assert inflight.read_until(lambda: inflight.closed, timeout=10), "the connection stayed open after its last stream"
    inflight.close()

    rc = col.stop(timeout=15.0)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert rc == 0, "exit code %s after SIGTERM (None: still running after 15 s, killed)\n%s" % (rc, col.describe())
    assert elapsed < 15
    # Calls that were refused once the server went away see UNAVAILABLE, never a half-done call.
    assert all(code == grpc.StatusCode.UNAVAILABLE for code, _ in other_codes), other_codes

    out = h.read_output_spans(col.output, allow_partial_tail=False)
    out_keys = {s.key for s in out}
    missing = [k for k in ok_keys if k not in out_keys]
    assert not missing, "%d of %d spans answered OK are not in the output (e.g. %s)" % (
        len(missing), len(ok_keys), missing[:3])
    assert len(ok_keys) >= 50 + 3
