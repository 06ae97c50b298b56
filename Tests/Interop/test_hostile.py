"""Hostile input against the running binary: every attack is answered the way its protocol says, is
counted in /metrics, and a valid request right afterwards still succeeds.

Covered here (the plainer bad requests live in test_http_errors.py and test_grpc.py):
truncated messages, oversized and chunked-oversized bodies, deeply nested AnyValue, invalid UTF-8,
huge attribute counts and values (span_limits), multi-member gzip bombs, oversized and too many
headers, malformed HTTP/1, malformed HTTP/2 frames (one per connection error the RFC names), HTTP/2
floods (rapid reset, PING, SETTINGS, CONTINUATION: each GOAWAY with its error code), slowloris on HTTP/1 and HTTP/2 (head, frame and body
trickles), idle connections, and the per-listener connection limit.

The tests share one collector with short timeouts and run in order, so counter deltas are exact.
Every answer is recorded in h.HOSTILE_REPORT; the terminal summary prints the tally."""

import gzip
import json
import secrets
import socket
import time

import pytest

import interop_helpers as h
from test_http_errors import expect_deltas

READ_HEADER_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
IDLE_TIMEOUT = 2.0
BODY_LIMIT = 1 << 20
ATTR_LIMIT = 64
VALUE_LIMIT = 256

REQUESTS = "agenttrace_receiver_requests_total"
ACCEPTED = "agenttrace_receiver_accepted_spans_total"
DECODE_ERRORS = "agenttrace_receiver_decode_errors_total"
CLOSED = "agenttrace_receiver_connections_closed_total"
DROPPED_ATTRS = "agenttrace_span_limits_dropped_attributes_total"
DROPPED_EVENTS = "agenttrace_span_limits_dropped_events_total"
DROPPED_LINKS = "agenttrace_span_limits_dropped_links_total"
TRUNCATED = "agenttrace_span_limits_truncated_values_total"

LISTENER_LIMITS = {
    "read_header_timeout": "%gs" % READ_HEADER_TIMEOUT,
    "read_timeout": "%gs" % READ_TIMEOUT,
}
HOSTILE_CONFIG = {
    "receivers": {"otlp": {"protocols": {
        "http": dict(LISTENER_LIMITS, idle_timeout="%gs" % IDLE_TIMEOUT, max_header_bytes=8192, max_header_count=50),
        "grpc": dict(LISTENER_LIMITS, max_header_list_size=8192),
    }}},
}
EVENT_LIMIT = 4
LINK_LIMIT = 3
SPAN_LIMITS = {"span_limits": {"attribute_count_limit": ATTR_LIMIT, "attribute_value_length_limit": VALUE_LIMIT,
                               "event_count_limit": EVENT_LIMIT, "link_count_limit": LINK_LIMIT}}


def record(case, transport, answer):
    h.HOSTILE_REPORT.append((case, transport, answer))


@pytest.fixture(scope="module")
def col(agenttrace_bin, tmp_path_factory):
    c = h.Collector(agenttrace_bin, tmp_path_factory.mktemp("hostile"), grpc={}, max_request_body_size=BODY_LIMIT,
                    processors_before_batch=SPAN_LIMITS, overrides=HOSTILE_CONFIG)
    c.start()
    yield c
    rc = c.stop()
    assert rc == 0, "collector exited %s after SIGTERM\n%s" % (rc, c.describe())


def key(name, transport, **labels):
    return (name, tuple(sorted(dict({"receiver": "otlp", "transport": transport}, **labels).items())))


def closed(transport, reason):
    return key(CLOSED, transport, reason=reason)


# --- requests ------------------------------------------------------------------

def span_json(n_attrs=0, attrs=None, name="hostile"):
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    span = {"traceId": tid, "spanId": sid, "name": name, "kind": 1,
            "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225600001000000"}
    attributes = list(attrs or [])
    attributes += [{"key": "k%d" % i, "value": {"intValue": str(i)}} for i in range(n_attrs)]
    if attributes:
        span["attributes"] = attributes
    req = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "hostile"}}]},
        "scopeSpans": [{"scope": {"name": "hostile"}, "spans": [span]}],
    }]}
    return req, (tid, sid)


def span_proto(**kw):
    req, k = span_json(**kw)
    return h.request_to_protobuf(req).SerializeToString(), k


def nested_any_value_proto(depth):
    """A KeyValue whose AnyValue is an array holding an array ... `depth` levels deep, as raw protobuf."""
    def field(number, payload):
        return bytes([number << 3 | 2]) + varint(len(payload)) + payload
    inner = field(1, b"leaf")                       # AnyValue.string_value
    for _ in range(depth):
        inner = field(5, field(1, inner))            # AnyValue.array_value -> ArrayValue.values
    return field(1, b"deep") + field(2, inner)       # KeyValue.key, KeyValue.value


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def request_with_raw_attribute(raw_keyvalue):
    """A valid one-span request (protobuf) with one more attribute given as raw KeyValue bytes."""
    body, k = span_proto()
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    msg = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    span = msg.resource_spans[0].scope_spans[0].spans[0]
    span_bytes = span.SerializeToString() + bytes([9 << 3 | 2]) + varint(len(raw_keyvalue)) + raw_keyvalue  # Span.attributes = 9
    scope = msg.resource_spans[0].scope_spans[0]
    scope.ClearField("spans")
    scope_bytes = scope.SerializeToString() + bytes([2 << 3 | 2]) + varint(len(span_bytes)) + span_bytes  # ScopeSpans.spans = 2
    rs = msg.resource_spans[0]
    rs.ClearField("scope_spans")
    rs_bytes = rs.SerializeToString() + bytes([2 << 3 | 2]) + varint(len(scope_bytes)) + scope_bytes     # ResourceSpans.scope_spans = 2
    return bytes([1 << 3 | 2]) + varint(len(rs_bytes)) + rs_bytes, k


def nested_json(depth):
    """Written as text: Python's json module would itself recurse too deep."""
    value = '{"arrayValue": {"values": [' * depth + '{"stringValue": "leaf"}' + ']}}' * depth
    req, k = span_json(attrs=[{"key": "deep", "value": {"stringValue": "PLACEHOLDER"}}])
    return json.dumps(req).replace('{"stringValue": "PLACEHOLDER"}', value).encode(), k


def post(col, body, content_type="application/x-protobuf", headers=None):
    return col.post_traces(body, content_type, headers=headers)


def still_serves_http(col):
    req, k = span_json(name="still-alive")
    r = post(col, json.dumps(req).encode(), "application/json")
    assert r.status == 200, "a valid request after the attack answered %d: %r\n%s" % (r.status, r.body[:200], col.describe())
    return k


def still_serves_grpc(col):
    body, k = span_proto(name="still-alive-grpc")
    with h.grpc_channel(col.grpc_address) as ch:
        r = h.grpc_export(ch, body)
    import grpc
    assert r.code == grpc.StatusCode.OK, "a valid Export after the attack: %s %r\n%s" % (r.code, r.details, col.describe())
    return k


def ok_delta(transport):
    return {key(REQUESTS, transport, code="200" if transport == "http" else "OK"): 1, key(ACCEPTED, transport): 1}


def merged(*ds):
    out = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# --- HTTP/1: bodies ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_http_truncated_request_400(col, fmt):
    if fmt == "protobuf":
        body, _ = span_proto(n_attrs=10)
        ctype = "application/x-protobuf"
    else:
        req, _ = span_json(n_attrs=10)
        body, ctype = json.dumps(req).encode(), "application/json"
    before = col.scrape()
    r = post(col, body[:len(body) // 2], ctype)
    assert r.status == 400, r
    record("truncated %s body" % fmt, "http", r.status)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="400"): 1,
                                                         key(DECODE_ERRORS, "http", encoding=fmt): 1}))


def raw_http(col, head, body=b"", read_timeout=10.0):
    """Send bytes on a fresh connection, read until the server closes (or the timeout); the reply."""
    host, port = h.split_address(col.http_address)
    with socket.create_connection((host, port), timeout=read_timeout) as s:
        s.sendall(head + body)
        return read_all(s, read_timeout)


def read_all(s, timeout):
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def test_http_declared_length_huge_413_before_body(col):
    """Content-Length of 8 GiB with 10 bytes sent: 413 comes back at once."""
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 8589934592\r\nConnection: close\r\n\r\n")
    before = col.scrape()
    host, port = h.split_address(col.http_address)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head + b"0123456789")
        reply = b""
        s.settimeout(10)
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    record("Content-Length 8 GiB, body never sent", "http", 413)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="413"): 1}))


def test_http_chunked_body_over_limit_413(col):
    """No Content-Length: the chunked body grows past max_request_body_size and is refused."""
    chunk = b"\x0a" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(BODY_LIMIT // len(chunk) + 2)) + b"0\r\n\r\n"
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    before = col.scrape()
    reply = raw_http(col, head, body)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    record("chunked body over max_request_body_size", "http", 413)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="413"): 1}))


def multi_member_gzip_bomb(total, members=64):
    """`members` concatenated gzip members, each inflating to total/members zero bytes."""
    one = gzip.compress(bytes(total // members), 9)
    return one * members


def test_http_multi_member_gzip_bomb_413(col):
    bomb = multi_member_gzip_bomb(256 << 20)
    assert len(bomb) < BODY_LIMIT
    before = col.scrape()
    r = post(col, bomb, headers={"Content-Encoding": "gzip"})
    assert r.status == 413, r
    record("gzip bomb, 64 members, 256 MiB inflated", "http", r.status)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="413"): 1}))


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_http_deeply_nested_anyvalue_400(col, fmt):
    if fmt == "protobuf":
        body, _ = request_with_raw_attribute(nested_any_value_proto(20000))
        ctype = "application/x-protobuf"
    else:
        body, _ = nested_json(20000)
        ctype = "application/json"
    before = col.scrape()
    r = post(col, body, ctype)
    assert r.status == 400, r
    record("AnyValue nested 20000 deep (%s)" % fmt, "http", r.status)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="400"): 1,
                                                         key(DECODE_ERRORS, "http", encoding=fmt): 1}))


def test_http_moderately_nested_anyvalue_accepted(col):
    body, k = request_with_raw_attribute(nested_any_value_proto(20))
    r = post(col, body)
    assert r.status == 200, r
    record("AnyValue nested 20 deep (legitimate)", "http", r.status)
    spans = col.wait_for_spans(lambda spans: k in {s.key for s in spans})
    value = [s for s in spans if s.key == k][0].attributes["deep"]
    for _ in range(20):
        assert isinstance(value, list) and len(value) == 1, value
        value = value[0]
    assert value == "leaf"


def test_http_invalid_utf8_json_400(col):
    req, _ = span_json(name="PLACEHOLDER")
    body = json.dumps(req).encode().replace(b"PLACEHOLDER", b"bad\xff\xfeutf8")
    before = col.scrape()
    r = post(col, body, "application/json")
    assert r.status == 400, r
    record("invalid UTF-8 in a JSON string", "http", r.status)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {key(REQUESTS, "http", code="400"): 1,
                                                         key(DECODE_ERRORS, "http", encoding="json"): 1}))


def test_http_invalid_utf8_protobuf_string_replaced(col):
    """proto3 strings must be UTF-8; the collector repairs them (U+FFFD) so every exporter writes valid
    UTF-8, instead of refusing a whole batch for one bad name."""
    body, k = span_proto(name="PLACEHOLDER")
    body = body.replace(b"PLACEHOLDER", b"bad\xff\xfeutf8!!")  # the same length: the prefixes stay right
    r = post(col, body)
    assert r.status == 200, r
    record("invalid UTF-8 in a protobuf string", "http", "200 (repaired to U+FFFD)")
    spans = col.wait_for_spans(lambda spans: k in {s.key for s in spans})
    name = [s for s in spans if s.key == k][0].name
    assert name.startswith("bad") and name.endswith("utf8!!") and "\ufffd" in name, name


def test_http_huge_attribute_count_truncated(col):
    """50 000 attributes on one span: accepted, the first ATTR_LIMIT kept, the rest counted as dropped."""
    n = 50000
    long_value = "v" * 100000
    body, k = span_proto(n_attrs=n, attrs=[{"key": "long", "value": {"stringValue": long_value}}])
    assert len(body) < BODY_LIMIT
    before = col.scrape()
    r = post(col, body)
    assert r.status == 200, r
    record("50 000 attributes + a 100 kB value on one span", "http", "200 (truncated)")
    spans = col.wait_for_spans(lambda spans: k in {s.key for s in spans})
    span = [s for s in spans if s.key == k][0]
    assert len(span.attributes) == ATTR_LIMIT, len(span.attributes)
    assert span.attributes["long"] == "v" * VALUE_LIMIT
    assert span.raw.get("droppedAttributesCount") == n + 1 - ATTR_LIMIT, span.raw.get("droppedAttributesCount")
    lab = (("processor", "span_limits"),)
    after = col.scrape()
    assert after.value(DROPPED_ATTRS, dict(lab)) - before.value(DROPPED_ATTRS, dict(lab)) == n + 1 - ATTR_LIMIT
    assert after.value(TRUNCATED, dict(lab)) - before.value(TRUNCATED, dict(lab)) == 1


def test_http_span_limits_on_events_and_links(col):
    """10 events and 7 links (the sender already dropped 2 of each) against event_count_limit 4 and
    link_count_limit 3: the first ones are kept, and what is dropped adds to the span's dropped counts (the
    OpenTelemetry SDK's span limits: "the dropped ... count" is the number discarded) and to the metrics."""
    n_events, n_links, already = 10, 7, 2
    req, k = span_json(name="events-and-links")
    span = req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["events"] = [{"timeUnixNano": str(1767225600000000000 + i), "name": "e%d" % i} for i in range(n_events)]
    span["links"] = [{"traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8),
                      "attributes": [{"key": "i", "value": {"intValue": str(i)}}]} for i in range(n_links)]
    span["droppedEventsCount"] = already
    span["droppedLinksCount"] = already
    before = col.scrape()
    r = post(col, json.dumps(req).encode(), "application/json")
    assert r.status == 200, r
    record("10 events and 7 links on one span", "http", "200 (first %d events, %d links kept)" % (EVENT_LIMIT, LINK_LIMIT))
    out = [s for s in col.wait_for_spans(lambda spans: k in {s.key for s in spans}) if s.key == k][0]
    assert [e[0] for e in out.events] == ["e%d" % i for i in range(EVENT_LIMIT)], out.events
    assert [(ln[0], ln[1]) for ln in out.links] == [(ln["traceId"], ln["spanId"]) for ln in span["links"][:LINK_LIMIT]]
    assert out.raw.get("droppedEventsCount") == already + n_events - EVENT_LIMIT, out.raw
    assert out.raw.get("droppedLinksCount") == already + n_links - LINK_LIMIT, out.raw
    lab = {"processor": "span_limits"}
    after = col.scrape()
    assert after.value(DROPPED_EVENTS, lab) - before.value(DROPPED_EVENTS, lab) == n_events - EVENT_LIMIT
    assert after.value(DROPPED_LINKS, lab) - before.value(DROPPED_LINKS, lab) == n_links - LINK_LIMIT


# --- HTTP/1: heads -------------------------------------------------------------------

def test_http_too_many_headers_431(col):
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + b"".join(
        b"X-Flood-%d: y\r\n" % i for i in range(200)) + b"\r\n"
    before = col.scrape()
    reply = raw_http(col, head)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    record("200 header fields", "http", 431)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "header_too_large"): 1}))


@pytest.mark.parametrize("size", [20 << 10, 200 << 10])
def test_http_oversized_header_431(col, size):
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\nContent-Length: 0\r\n\r\n"
    before = col.scrape()
    reply = raw_http(col, head)
    status = int(reply[9:12]) if reply.startswith(b"HTTP/1.1 ") else None
    assert status == 431, reply[:200]
    record("one %d KiB header" % (size >> 10), "http", status)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "header_too_large"): 1}))


def test_http_malformed_request_line_400(col):
    before = col.scrape()
    reply = raw_http(col, b"\x16\x03\x01 GARBAGE NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    record("malformed request line (TLS hello bytes)", "http", 400)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "protocol_error"): 1}))


# --- HTTP/1: slow and idle peers ---------------------------------------------------------

def trickle(s, data, interval, deadline):
    """Send `data` one byte every `interval` seconds until the server closes; returns (reply, seconds)."""
    start = time.monotonic()
    s.settimeout(interval)
    reply = b""
    for b in data:
        try:
            s.sendall(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
        if time.monotonic() - start > deadline:
            raise AssertionError("the server still reads a trickling peer after %.1fs" % deadline)
    if not reply:
        reply = read_all(s, 2)
    return reply, time.monotonic() - start


def test_http_slowloris_head_cut_off(col):
    """A header byte every second: cut off with 408 after read_header_timeout."""
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    before = col.scrape()
    host, port = h.split_address(col.http_address)
    with socket.create_connection((host, port), timeout=10) as s:
        reply, took = trickle(s, head, 1.0, READ_HEADER_TIMEOUT + 4)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    record("slowloris: a header byte a second", "http", "408 + close after %.1fs" % took)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "read_header_timeout"): 1}))


def test_http_slow_body_cut_off(col):
    """The head at once, then a body byte every 0.5 s: cut off with 408 after read_timeout."""
    body, _ = span_proto()
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    before = col.scrape()
    host, port = h.split_address(col.http_address)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(head)
        reply, took = trickle(s, body, 0.5, READ_TIMEOUT + 4)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    record("slow body: a byte every 0.5 s", "http", "408 + close after %.1fs" % took)
    still_serves_http(col)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "read_timeout"): 1}))


def test_http_silent_and_idle_connections_closed(col):
    """A connection that never sends is closed after read_header_timeout; one that goes quiet after a
    request is closed after idle_timeout."""
    before = col.scrape()
    host, port = h.split_address(col.http_address)
    with socket.create_connection((host, port), timeout=10) as silent:
        start = time.monotonic()
        assert read_all(silent, READ_HEADER_TIMEOUT + 4) == b""
        silent_took = time.monotonic() - start
    assert silent_took < READ_HEADER_TIMEOUT + 3, silent_took
    req, _ = span_json(name="then-idle")
    body = json.dumps(req).encode()
    with socket.create_connection((host, port), timeout=10) as idle:
        idle.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        start = time.monotonic()
        reply = read_all(idle, IDLE_TIMEOUT + 4)
        idle_took = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert IDLE_TIMEOUT - 0.5 < idle_took < IDLE_TIMEOUT + 3, idle_took
    record("connection that never sends", "http", "closed after %.1fs" % silent_took)
    record("kept-alive connection gone quiet", "http", "closed after %.1fs" % idle_took)
    expect_deltas(col, before, merged(ok_delta("http"), {closed("http", "read_header_timeout"): 1,
                                                         closed("http", "idle_timeout"): 1}))


# --- gRPC: messages ------------------------------------------------------------------

def grpc_raw(col, body, extra=()):
    return h.h2_request(col.grpc_address, h.grpc_request_headers(col.grpc_address, extra=extra), body)


def test_grpc_truncated_protobuf_invalid_argument(col):
    body, _ = span_proto(n_attrs=10)
    before = col.scrape()
    r = grpc_raw(col, h.grpc_frame(body[:len(body) // 2]))
    assert r.grpc_status == 3, r
    record("truncated protobuf message", "grpc", "INVALID_ARGUMENT")
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {key(REQUESTS, "grpc", code="INVALID_ARGUMENT"): 1,
                                                         key(DECODE_ERRORS, "grpc", encoding="protobuf"): 1}))


def test_grpc_deeply_nested_anyvalue_invalid_argument(col):
    body, _ = request_with_raw_attribute(nested_any_value_proto(20000))
    before = col.scrape()
    r = grpc_raw(col, h.grpc_frame(body))
    assert r.grpc_status == 3, r
    record("AnyValue nested 20000 deep", "grpc", "INVALID_ARGUMENT")
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {key(REQUESTS, "grpc", code="INVALID_ARGUMENT"): 1,
                                                         key(DECODE_ERRORS, "grpc", encoding="protobuf"): 1}))


def test_grpc_multi_member_gzip_bomb_resource_exhausted(col):
    bomb = multi_member_gzip_bomb(256 << 20)
    before = col.scrape()
    r = grpc_raw(col, h.grpc_frame(bomb, compressed=True), extra=[("grpc-encoding", "gzip")])
    assert r.grpc_status == 8, r
    record("gzip bomb, 64 members, 256 MiB inflated", "grpc", "RESOURCE_EXHAUSTED")
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {key(REQUESTS, "grpc", code="RESOURCE_EXHAUSTED"): 1}))


def test_grpc_huge_attribute_count_truncated(col):
    n = 50000
    body, k = span_proto(n_attrs=n)
    r = grpc_raw(col, h.grpc_frame(body))
    assert r.grpc_status == 0, r
    record("50 000 attributes on one span", "grpc", "OK (truncated)")
    spans = col.wait_for_spans(lambda spans: k in {s.key for s in spans})
    span = [s for s in spans if s.key == k][0]
    assert len(span.attributes) == ATTR_LIMIT
    assert span.raw.get("droppedAttributesCount") == n - ATTR_LIMIT


def test_grpc_header_list_too_large_refused(col):
    """A 20 KiB header against max_header_list_size 8192: the stream is refused, the connection lives."""
    before = col.scrape()
    r = h.h2_request(col.grpc_address, h.grpc_request_headers(col.grpc_address, extra=[("x-big", "a" * (20 << 10))]),
                     h.grpc_frame(span_proto()[0]))
    assert r.reset_code is not None or r.status == 431, r
    record("a 20 KiB header", "grpc", "RST_STREAM(%s)" % r.reset_code if r.reset_code is not None else r.status)
    still_serves_grpc(col)
    expect_deltas(col, before, ok_delta("grpc"))


# --- gRPC: malformed HTTP/2 frames -------------------------------------------------------

PROTOCOL_ERROR, INTERNAL_ERROR, FRAME_SIZE_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x1, 0x2, 0x6, 0x9, 0xB
ERROR_NAMES = {0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR", 0x6: "FRAME_SIZE_ERROR",
               0x9: "COMPRESSION_ERROR", 0xB: "ENHANCE_YOUR_CALM"}


def goaway_after(col, payload, timeout=10.0):
    """Send the preface, SETTINGS and `payload`; return the GOAWAY error code the server closes with."""
    reply = h.raw_exchange(col.grpc_address, h.H2_PREFACE + h.h2_frame(4, 0, 0) + payload, timeout=timeout)
    goaways = [f for f in h.parse_h2_frames(reply) if f.type == 7]
    assert goaways, "no GOAWAY; frames: %s" % [(f.type_name, f.payload[:20]) for f in h.parse_h2_frames(reply)]
    return int.from_bytes(goaways[-1].payload[4:8], "big")


def hpack(headers):
    import hpack as hp
    return hp.Encoder().encode(headers)


MALFORMED_FRAMES = {
    "DATA on stream 0": (h.h2_frame(0, 0, 0, b"x"), {PROTOCOL_ERROR}),
    "HEADERS with undecodable HPACK": (h.h2_frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff\xff\xff\xff"), {COMPRESSION_ERROR}),
    "frame over SETTINGS_MAX_FRAME_SIZE": (h.h2_frame(0, 0, 1, b"x" * 20000), {FRAME_SIZE_ERROR}),
    "SETTINGS of 5 bytes": (h.h2_frame(4, 0, 0, b"\x00\x03\x00\x00\x00"), {FRAME_SIZE_ERROR}),
    "PING of 7 bytes": (h.h2_frame(6, 0, 0, b"1234567"), {FRAME_SIZE_ERROR}),
    "WINDOW_UPDATE of 0": (h.h2_frame(8, 0, 0, b"\x00\x00\x00\x00"), {PROTOCOL_ERROR}),
    "WINDOW_UPDATE overflowing the window": (h.h2_frame(8, 0, 0, b"\x7f\xff\xff\xff") * 2, {0x3}),
    "HEADERS on an even stream id": (h.h2_frame(1, 0x5, 2, b""), {PROTOCOL_ERROR}),
    "CONTINUATION without HEADERS": (h.h2_frame(9, 0x4, 1, b""), {PROTOCOL_ERROR}),
    "SETTINGS ENABLE_PUSH=2": (h.h2_frame(4, 0, 0, b"\x00\x02\x00\x00\x00\x02"), {PROTOCOL_ERROR}),
    "unknown frame inside a header block": (h.h2_frame(1, 0x0, 1, b"") + h.h2_frame(0xFA, 0, 0, b""), {PROTOCOL_ERROR}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_FRAMES))
def test_grpc_malformed_frame_goaway(col, case):
    payload, want = MALFORMED_FRAMES[case]
    before = col.scrape()
    code = goaway_after(col, payload)
    assert code in want, "%s: GOAWAY %s, want %s" % (case, ERROR_NAMES.get(code, code), [ERROR_NAMES[w] for w in want])
    record(case, "grpc", "GOAWAY(%s) + close" % ERROR_NAMES.get(code, code))
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "protocol_error"): 1}))


def flood_goaway(col, flood, timeout=5.0):
    """Send the preface, SETTINGS and `flood`; returns (frames the server sent before closing, GOAWAY codes)."""
    reply = h.raw_exchange(col.grpc_address, h.H2_PREFACE + h.h2_frame(4, 0, 0) + flood, timeout=timeout)
    frames = h.parse_h2_frames(reply)
    return frames, [int.from_bytes(f.payload[4:8], "big") for f in frames if f.type == 7]


def test_grpc_rapid_reset_flood_goaway(col):
    """CVE-2023-44487: 2000 streams opened and reset at once. docs/hardening.md: answered with GOAWAY and
    closed; the collector keeps serving. The code is nghttp2's: its fix for the CVE (1.57.0, backported to
    Debian 12's 1.52.0-1+deb12u1) drains a token bucket of 1000 resets (33 a second) per connection and
    then queues GOAWAY(INTERNAL_ERROR) (lib/nghttp2_session.c, session_update_stream_reset_ratelim)."""
    headers = hpack(h.grpc_request_headers(col.grpc_address))
    flood = b"".join(h.h2_frame(1, 0x4, sid, headers) + h.h2_frame(3, 0, sid, b"\x00\x00\x00\x08")
                     for sid in range(1, 4001, 2))
    before = col.scrape()
    frames, goaways = flood_goaway(col, flood)
    record("rapid reset: 2000 HEADERS+RST_STREAM", "grpc",
           "GOAWAY(%s) + close" % ERROR_NAMES.get(goaways[-1], goaways[-1]) if goaways else "no GOAWAY")
    assert goaways == [INTERNAL_ERROR], "want one GOAWAY(INTERNAL_ERROR), got %s" % [
        ERROR_NAMES.get(g, g) for g in goaways]
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "protocol_error"): 1}))


def test_grpc_ping_flood_goaway(col):
    """20000 PINGs, each asking for an ACK: GOAWAY(ENHANCE_YOUR_CALM) and close, not 20000 ACKs. RFC 9113
    §10.5: "An endpoint MAY treat activity that is suspicious as a connection error of type ENHANCE_YOUR_CALM"
    (nghttp2 reports the flood once 1000 ACKs wait unsent)."""
    flood = h.h2_frame(6, 0, 0, b"12345678") * 20000
    before = col.scrape()
    frames, goaways = flood_goaway(col, flood)
    acks = sum(1 for f in frames if f.type == 6)
    record("PING flood: 20000 PINGs", "grpc",
           "GOAWAY(%s) after %d acks" % (ERROR_NAMES.get(goaways[-1], goaways[-1]), acks) if goaways else "%d acks" % acks)
    assert goaways == [ENHANCE_YOUR_CALM], "want one GOAWAY(ENHANCE_YOUR_CALM), got %s after %d PING ACKs" % (
        [ERROR_NAMES.get(g, g) for g in goaways], acks)
    assert acks < 20000, "every PING was answered: the flood was not detected"
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "protocol_error"): 1}))


def test_grpc_settings_flood_goaway(col):
    """20000 SETTINGS frames, each asking for an ACK: GOAWAY(ENHANCE_YOUR_CALM) and close (RFC 9113 §10.5, as
    for the PING flood)."""
    flood = h.h2_frame(4, 0, 0, b"\x00\x04\x00\x01\x00\x00") * 20000   # SETTINGS_INITIAL_WINDOW_SIZE = 65536
    before = col.scrape()
    frames, goaways = flood_goaway(col, flood)
    acks = sum(1 for f in frames if f.type == 4 and f.flags & 0x1)
    record("SETTINGS flood: 20000 SETTINGS", "grpc",
           "GOAWAY(%s) after %d acks" % (ERROR_NAMES.get(goaways[-1], goaways[-1]), acks) if goaways else "%d acks" % acks)
    assert goaways == [ENHANCE_YOUR_CALM], "want one GOAWAY(ENHANCE_YOUR_CALM), got %s after %d SETTINGS ACKs" % (
        [ERROR_NAMES.get(g, g) for g in goaways], acks)
    assert acks < 20000, "every SETTINGS was answered: the flood was not detected"
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "protocol_error"): 1}))


def test_grpc_continuation_flood_refused(col):
    """A header block spread over 5000 CONTINUATION frames (CVE-2024-27316's shape): refused, not buffered."""
    first = hpack(h.grpc_request_headers(col.grpc_address))
    flood = h.h2_frame(1, 0x0, 1, first) + b"".join(
        h.h2_frame(9, 0, 1, hpack([("x-c%d" % i, "v" * 100)])) for i in range(5000))
    before = col.scrape()
    reply = h.raw_exchange(col.grpc_address, h.H2_PREFACE + h.h2_frame(4, 0, 0) + flood, timeout=READ_HEADER_TIMEOUT + 5)
    frames = h.parse_h2_frames(reply)
    goaways = [int.from_bytes(f.payload[4:8], "big") for f in frames if f.type == 7]
    resets = [int.from_bytes(f.payload[0:4], "big") for f in frames if f.type == 3]
    assert goaways == [PROTOCOL_ERROR], "want one GOAWAY(PROTOCOL_ERROR), got %s" % [
        (f.type_name, f.payload[:20]) for f in frames]
    record("CONTINUATION flood: 5000 frames, no END_HEADERS", "grpc",
           "GOAWAY(%s) + close" % ERROR_NAMES.get(goaways[-1], goaways[-1]) if goaways else "RST_STREAM")
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "protocol_error"): 1}))


# --- gRPC: slow and silent peers -----------------------------------------------------------

def test_grpc_slowloris_preface_cut_off(col):
    """The connection preface one byte a second: closed after read_header_timeout."""
    before = col.scrape()
    host, port = h.split_address(col.grpc_address)
    with socket.create_connection((host, port), timeout=10) as s:
        _, took = trickle(s, h.H2_PREFACE, 1.0, READ_HEADER_TIMEOUT + 4)
    record("slowloris: the HTTP/2 preface a byte a second", "grpc", "close after %.1fs" % took)
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "read_header_timeout"): 1}))


def test_grpc_slowloris_headers_frame_cut_off(col):
    """A complete preface, then a HEADERS frame a byte a second: GOAWAY and close after read_header_timeout."""
    frame = h.h2_frame(1, 0x5, 1, hpack(h.grpc_request_headers(col.grpc_address)))
    before = col.scrape()
    host, port = h.split_address(col.grpc_address)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(h.H2_PREFACE + h.h2_frame(4, 0, 0))
        reply, took = trickle(s, frame, 1.0, READ_HEADER_TIMEOUT + 4)
    goaways = [f for f in h.parse_h2_frames(reply) if f.type == 7]
    assert goaways, reply[:200]
    record("slowloris: a HEADERS frame a byte a second", "grpc", "GOAWAY + close after %.1fs" % took)
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {closed("grpc", "read_header_timeout"): 1}))


def test_grpc_slow_body_deadline_exceeded(col):
    """HEADERS, then a DATA frame of one byte every 0.5 s: DEADLINE_EXCEEDED after read_timeout."""
    body = h.grpc_frame(span_proto()[0])
    before = col.scrape()
    c = h.H2FrameClient(col.grpc_address)
    try:
        assert c.send_headers(1, h.grpc_request_headers(col.grpc_address))
        start = time.monotonic()
        for b in body:
            if not c.send_data(1, bytes([b])) or 1 in c.ended or 1 in c.resets:
                break
            c.read_until(lambda: 1 in c.ended or 1 in c.resets, timeout=0.5)
            if 1 in c.ended or 1 in c.resets or time.monotonic() - start > READ_TIMEOUT + 4:
                break
        took = time.monotonic() - start
        status = c.grpc_status(1)
    finally:
        c.close()
    assert status == 4, "want DEADLINE_EXCEEDED, got grpc-status %r after %.1fs" % (status, took)
    record("slow body: a DATA byte every 0.5 s", "grpc", "DEADLINE_EXCEEDED after %.1fs" % took)
    still_serves_grpc(col)
    expect_deltas(col, before, merged(ok_delta("grpc"), {key(REQUESTS, "grpc", code="DEADLINE_EXCEEDED"): 1}))


# --- connection limit ----------------------------------------------------------------

def test_connection_limit_per_listener(start_collector):
    col = start_collector("limit", grpc={}, overrides={"receivers": {"otlp": {"protocols": {
        "http": {"max_connections": 4}, "grpc": {"max_connections": 4}}}}})
    for transport, address in (("http", col.http_address), ("grpc", col.grpc_address)):
        before = col.scrape()
        host, port = h.split_address(address)
        held = [socket.create_connection((host, port), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            with socket.create_connection((host, port), timeout=5) as extra:
                extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" if transport == "http" else h.H2_PREFACE)
                assert read_all(extra, 5) == b"", "the fifth connection was served"
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        record("5th connection past max_connections 4", transport, "closed at once")
        (still_serves_http if transport == "http" else still_serves_grpc)(col)
        expect_deltas(col, before, merged(ok_delta(transport), {closed(transport, "connection_limit"): 1}))
