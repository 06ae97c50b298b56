"""Listener options the README and docs/hardening.md promise, each proved against the running binary:

  * `traces_url_path` (OTLP/HTTP): the SDK's exporter delivers on the configured path; /v1/traces is 404.
  * `max_concurrent_streams` (gRPC): announced in SETTINGS; a stream past it is refused (RFC 9113 §5.1.2).
  * `keepalive: server_parameters: max_connection_idle` (gRPC): an idle connection gets GOAWAY, then is closed.
  * `service: memory_limiter:` over its soft limit: OTLP/HTTP 503 with `Retry-After: 1` (before decoding),
    OTLP/gRPC UNAVAILABLE, counted.
  * `tls: min_version: "1.3"`: a TLS 1.2-only client is refused in the handshake, a TLS 1.3 one served.
  * `service: admin: max_connections`: the connection past the limit is closed at once and counted.

The oracles are the protocols' own documents (RFC 9113, RFC 8446 via Python's ssl module, the OTLP
specification's 503/UNAVAILABLE), never the collector's output."""

import secrets
import socket
import ssl
import time

import grpc
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import interop_helpers as h
from test_security import certs  # noqa: F401  (the module-scoped CA/server/client certificate fixture)

CLOSED = "agenttrace_receiver_connections_closed_total"
REQUESTS = "agenttrace_receiver_requests_total"
DECODE_ERRORS = "agenttrace_receiver_decode_errors_total"

# RFC 9113 §7 error codes and §6.5.2 setting identifiers.
NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM = 0x0, 0x1, 0x7
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def sdk_spans(n=2, name="option"):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "interop-options"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("interop.options")
    for i in range(n):
        with tracer.start_as_current_span("%s-%d" % (name, i)):
            pass
    spans = memory.get_finished_spans()
    return spans, {("%032x" % s.context.trace_id, "%016x" % s.context.span_id) for s in spans}


def one_span_request(name="option"):
    """(ExportTraceServiceRequest bytes, (trace id, span id)) for one valid span."""
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    req = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "interop-options"}}]},
        "scopeSpans": [{"scope": {"name": "options"}, "spans": [{
            "traceId": tid, "spanId": sid, "name": name, "kind": 1,
            "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225600001000000"}]}],
    }]}
    return h.request_to_protobuf(req).SerializeToString(), (tid, sid)


def hpack_encoder():
    import hpack
    return hpack.Encoder()


def wait_closed(sock, timeout):
    """Read until the server closes `sock`; returns (bytes it sent, whether it closed within `timeout`)."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return got, False
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += chunk


def metric_delta(col, before, name, labels):
    return col.scrape().value(name, labels) - before.value(name, labels)


# --- traces_url_path ----------------------------------------------------------------------

def test_traces_url_path_is_served_and_v1_traces_is_not(start_collector):
    path = "/otlp/custom/traces"
    col = start_collector("urlpath", overrides={"receivers": {"otlp": {"protocols": {"http": {"traces_url_path": path}}}}})
    spans, keys = sdk_spans(name="custom-path")
    exporter = HTTPSpanExporter(endpoint=col.endpoint + path, timeout=5)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    col.wait_for_spans(lambda got: keys <= {s.key for s in got})

    body, k = one_span_request("default-path")
    r = col.post_traces(body, path="/v1/traces")
    assert r.status == 404, (r.status, r.body[:200])
    # And the SDK's default path fails too: nothing was delivered on /v1/traces.
    spans2, keys2 = sdk_spans(name="wrong-path")
    assert HTTPSpanExporter(endpoint=col.endpoint + "/v1/traces", timeout=5).export(spans2) == SpanExportResult.FAILURE
    time.sleep(0.5)  # batch timeout is 200 ms: anything accepted would be written by now
    written = {s.key for s in col.output_spans()}
    assert k not in written and not (keys2 & written)


# --- max_concurrent_streams (gRPC) ---------------------------------------------------------

def settings_of(frame):
    p = frame.payload
    return {int.from_bytes(p[i:i + 2], "big"): int.from_bytes(p[i + 2:i + 6], "big") for i in range(0, len(p) - 5, 6)}


def test_max_concurrent_streams_announced_and_enforced(start_collector):
    limit = 3
    col = start_collector("streams", grpc={"max_concurrent_streams": limit})
    headers = h.grpc_request_headers(col.grpc_address)

    # 1. A client racing the server's SETTINGS (hyper-h2 opens streams before it has read them, as any client
    #    may): the stream past the limit is refused with REFUSED_STREAM, the others complete. RFC 9113
    #    §5.1.2: "An endpoint that receives a HEADERS frame that causes its advertised concurrent stream limit
    #    to be exceeded MUST treat this as a stream error of type PROTOCOL_ERROR or REFUSED_STREAM", and
    #    §8.7: REFUSED_STREAM tells the client the request was not processed and may be retried.
    with h.H2Client(col.grpc_address) as c:
        ids = [c.send_headers(headers) for _ in range(limit + 1)]   # left open: no END_STREAM
        extra = ids[-1]
        c.read_until(lambda: c.responses[extra].reset_code is not None or c.closed, timeout=5)
        assert c.conn.remote_settings.max_concurrent_streams == limit, "SETTINGS_MAX_CONCURRENT_STREAMS not announced"
        assert c.responses[extra].reset_code == REFUSED_STREAM, (c.responses[extra], c.goaway_code)
        for sid in ids[:-1]:
            body, _ = one_span_request("within-limit-%d" % sid)
            c.send_data(sid, h.grpc_frame(body), end_stream=True)
        results = [c.wait_response(sid) for sid in ids[:-1]]
        assert [r.grpc_status for r in results] == [0] * limit, results
        assert c.goaway_code is None

    # 2. A client that has acknowledged the SETTINGS (RFC 9113 §6.5.3: they are in force) and still opens one
    #    stream too many: nghttp2 makes it a connection error, which §5.4 allows ("an endpoint MAY choose to
    #    treat a stream error as a connection error"): GOAWAY(PROTOCOL_ERROR) whose last stream id excludes it.
    c = h.H2FrameClient(col.grpc_address)
    try:
        assert c.read_until(lambda: any(f.type == 4 and not f.flags & 0x1 for f in c.frames), timeout=5), c.frames
        server_settings = [settings_of(f) for f in c.frames if f.type == 4 and not f.flags & 0x1][0]
        assert server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == limit, server_settings
        c.read_until(lambda: any(f.type == 4 and f.flags & 0x1 for f in c.frames), timeout=5)  # our SETTINGS acked
        enc = hpack_encoder()
        for sid in (1, 3, 5, 7):
            assert c.send(h.h2_frame(1, 0x4, sid, enc.encode(headers)))
        c.read_until(lambda: 7 in c.resets or c.goaway is not None, timeout=5)
        refused = c.resets.get(7) in (REFUSED_STREAM, PROTOCOL_ERROR) or (
            c.goaway is not None and c.goaway[1] == PROTOCOL_ERROR and c.goaway[0] < 7)
        assert refused, "stream 7 past max_concurrent_streams=%d: resets %s, GOAWAY %s" % (limit, c.resets, c.goaway)
    finally:
        c.close()


# --- max_connection_idle (gRPC keepalive) ----------------------------------------------------

def test_max_connection_idle_sends_goaway_then_closes(start_collector):
    idle = 1.0
    col = start_collector("idle", grpc={"keepalive": {"server_parameters": {"max_connection_idle": "%gs" % idle}}})
    before = col.scrape()
    c = h.H2FrameClient(col.grpc_address)
    try:
        # One finished call first: idleness counts from when the last stream ended.
        body, _ = one_span_request("before-idle")
        c.send_headers(1, h.grpc_request_headers(col.grpc_address))
        c.send_data(1, h.grpc_frame(body), end_stream=True)
        assert c.read_until(lambda: 1 in c.ended, timeout=5) and c.grpc_status(1) == 0
        quiet_since = time.monotonic()
        c.read_until(lambda: c.goaway is not None and c.closed, timeout=idle + 5)
        took = time.monotonic() - quiet_since
    finally:
        c.close()
    # gRPC's keepalive (A9, "MaxConnectionIdle") closes an idle connection with a GOAWAY; NO_ERROR, as
    # the close is not the peer's fault.
    assert c.goaway is not None, "no GOAWAY within %.0fs of idleness (frames: %s)" % (
        idle + 5, [f.type_name for f in c.frames])
    assert c.goaway[1] == NO_ERROR, "GOAWAY error code %#x, want NO_ERROR" % c.goaway[1]
    assert c.goaway[0] >= 1, "the GOAWAY's last stream id must cover the finished call: %s" % (c.goaway,)
    assert c.closed, "the connection stayed open after the GOAWAY"
    assert took >= idle * 0.9, "closed after %.2fs of idleness, before max_connection_idle=%gs" % (took, idle)
    lab = {"receiver": "otlp", "transport": "grpc", "reason": "idle_timeout"}
    assert metric_delta(col, before, CLOSED, lab) == 1


# --- memory_limiter --------------------------------------------------------------------------

def test_memory_limiter_refuses_with_503_retry_after_and_unavailable(start_collector):
    # Soft limit = limit_mib - spike_limit_mib = 1 MiB: any process is over it, so it refuses from the start.
    col = start_collector("memlimit", grpc={}, overrides={"service": {"memory_limiter": {
        "limit_mib": 16, "spike_limit_mib": 15, "check_interval": "10ms"}}})
    deadline = time.monotonic() + 5
    while col.scrape().value("agenttrace_memory_limiter_refusing") != 1:
        assert time.monotonic() < deadline, "the memory limiter never started refusing under a 1 MiB soft limit"
        time.sleep(0.05)
    before = col.scrape()

    body, k = one_span_request("refused-http")
    r = col.post_traces(body)
    # OTLP/HTTP: "503 Service Unavailable ... The client SHOULD retry", honouring Retry-After.
    assert r.status == 503, (r.status, r.body[:200])
    assert r.headers.get("retry-after") == "1", r.headers
    # Refused before decoding: a body that does not decode is answered 503 too, not 400.
    r = col.post_traces(b"\xff\xff\xff not protobuf", headers={})
    assert r.status == 503, (r.status, r.body[:200])
    r = col.post_traces(b"{not json", "application/json")
    assert r.status == 503 and r.headers.get("retry-after") == "1", (r.status, r.headers)

    grpc_body, gk = one_span_request("refused-grpc")
    with h.grpc_channel(col.grpc_address) as ch:
        res = h.grpc_export(ch, grpc_body, timeout=5)
    assert res.code == grpc.StatusCode.UNAVAILABLE, res

    after = col.scrape()
    assert after.value("agenttrace_memory_limiter_refused_requests_total") - \
        before.value("agenttrace_memory_limiter_refused_requests_total") == 4
    for enc in ("protobuf", "json"):
        lab = {"receiver": "otlp", "transport": "http", "encoding": enc}
        assert after.value(DECODE_ERRORS, lab) == before.value(DECODE_ERRORS, lab), "a refused body was decoded"
    time.sleep(0.5)
    written = {s.key for s in col.output_spans()}
    assert k not in written and gk not in written, "a refused span reached the exporter"


# --- TLS min_version ------------------------------------------------------------------------

def tls_client(certs, maximum=None, minimum=None):  # noqa: F811
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if maximum is not None:
        ctx.maximum_version = maximum
    if minimum is not None:
        ctx.minimum_version = minimum
    return ctx


def handshake(address, ctx):
    """The negotiated protocol version, or the ssl.SSLError the handshake failed with."""
    host, port = h.split_address(address)
    with socket.create_connection((host, port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                return s.version()
        except ssl.SSLError as e:
            return e


def test_tls_min_version_1_3_refuses_a_tls_1_2_client(start_collector, certs):  # noqa: F811
    server = {"cert_file": certs["server_cert"], "key_file": certs["server_key"]}
    col = start_collector("tls13", overrides={
        "receivers": {"otlp": {"protocols": {"http": {"tls": dict(server, min_version="1.3")}}}},
        "service": {"admin": {"tls": server}},   # the default, min_version 1.2: the control
    })
    col.admin_ssl = tls_client(certs)
    tls12_only = tls_client(certs, maximum=ssl.TLSVersion.TLSv1_2)
    tls13 = tls_client(certs, minimum=ssl.TLSVersion.TLSv1_3)

    refused = handshake(col.http_address, tls12_only)
    assert isinstance(refused, ssl.SSLError), "a TLS 1.2-only client negotiated %r with min_version 1.3" % (refused,)
    # RFC 8446 §4.1.3 / RFC 5246 §7.2.2: the server answers an unacceptable version with a protocol_version alert.
    assert "PROTOCOL_VERSION" in str(refused).upper() or "UNSUPPORTED_PROTOCOL" in str(refused).upper(), refused
    assert handshake(col.http_address, tls13) == "TLSv1.3"
    assert handshake(col.admin, tls12_only) == "TLSv1.2", "the control listener (default min_version 1.2) refused TLS 1.2"

    body, k = one_span_request("over-tls13")
    r = h.http_request(col.http_address, "POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"},
                       ssl_context=tls13)
    assert r.status == 200, r
    col.wait_for_spans(lambda got: k in {s.key for s in got})
    lab = {"receiver": "otlp", "transport": "http", "reason": "tls_handshake"}
    deadline = time.monotonic() + 5
    while col.scrape().value(CLOSED, lab) < 1:
        assert time.monotonic() < deadline, "the refused handshake was not counted"
        time.sleep(0.05)


# --- admin max_connections --------------------------------------------------------------------

def test_admin_max_connections_closes_the_extra_connection(start_collector):
    limit = 2
    col = start_collector("adminlimit", overrides={"service": {"admin": {"max_connections": limit}}})
    before = col.scrape()
    time.sleep(0.5)  # the scrape's own connection must be gone (server side) before the held ones take the slots
    host, port = h.split_address(col.admin)
    held = [socket.create_connection((host, port), timeout=5) for _ in range(limit)]
    try:
        # Each held connection is served (so it is surely accepted and counted) and kept alive.
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200"), "a connection within the limit was not served"
        with socket.create_connection((host, port), timeout=5) as extra:
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            got, closed = wait_closed(extra, 5)
        assert closed and got == b"", "the connection past max_connections=%d was %s: %r" % (
            limit, "answered" if got else "left open", got[:100])
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)  # let the server see them go before the scrapes below take a slot
    lab = {"receiver": "admin", "transport": "http", "reason": "connection_limit"}
    deadline = time.monotonic() + 5
    while True:
        try:  # the held connections' close may not have been seen yet: a scrape could be the one refused
            delta = metric_delta(col, before, CLOSED, lab)
        except AssertionError:
            delta = None
        if (delta is not None and delta >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delta == 1, "%s%s moved by %g, want 1" % (CLOSED, lab, delta)
    assert col.admin_get("/healthz").status == 200


# --- admin idle_timeout -------------------------------------------------------------------

def test_admin_idle_timeout_closes_a_kept_alive_admin_connection(start_collector):
    """docs/hardening.md: `idle_timeout` (HTTP/1 and admin): a kept-alive connection waiting for its next
    request is closed (`reason="idle_timeout"`). On the admin API with `service: admin: idle_timeout: 2s`
    (read_header_timeout left at its 10 s, so only the idle timer can close it within 2 s)."""
    idle = 2.0
    col = start_collector("adminidle", overrides={"service": {"admin": {"idle_timeout": "2s"}}})
    time.sleep(0.3)  # the scrape's own connection closes first
    host, port = h.split_address(col.admin)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        start = time.monotonic()
        got, closed = wait_closed(s, idle + 4)
        took = time.monotonic() - start
    assert closed and got == b"", "the idle admin connection was %s: %r" % ("answered" if got else "left open", got[:100])
    assert idle - 0.5 < took < idle + 2, "closed %.2f s after going idle, want about %.0f s" % (took, idle)
    lab = {"receiver": "admin", "transport": "http", "reason": "idle_timeout"}
    deadline = time.monotonic() + 5
    while True:
        try:
            delta = col.scrape().value(CLOSED, lab)
        except AssertionError:   # no such series yet
            delta = 0
        if delta >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delta == 1, "%s%s is %g, want 1" % (CLOSED, lab, delta)
