"""Fake Zipkin, Jaeger and OTLP backends for the exporter interop tests.

Each fake runs in this process on 127.0.0.1 (port 0 unless told), records every request it gets,
answers what its `script` says (success, or a failure for some seconds / some requests / always),
and validates everything it receives against the peer's own published schema:

  * ZipkinFake     POST /api/v2/spans, application/json (definitions/Span of zipkin2-api.yaml, as
                   ZIPKIN_SPAN_SCHEMA below) or application/x-protobuf (zipkin.proto3.ListOfSpans),
                   optionally gzip; answers 202.
  * JaegerFake     gRPC jaeger.api_v2.CollectorService/PostSpans (jaeger-idl api_v2 model.proto).
  * OTLPGrpcFake   gRPC opentelemetry.proto.collector.trace.v1.TraceService/Export.
  * OTLPHttpFake   POST /v1/traces, protobuf or JSON, optionally gzip.

Anything unknown or malformed (an unknown protobuf field, a JSON key the schema does not declare, a
bad id, a wrong content type...) is recorded in `fake.violations` (and on the request), and the
request is refused (HTTP 400 / INVALID_ARGUMENT) so the sender notices too. Tests assert
`fake.violations == []`.

The gRPC fakes sit behind an H2Sniffer, a transparent TCP proxy that decodes the client's HTTP/2
HEADERS (HPACK) and the first byte of each gRPC message, so tests can see `grpc-encoding`, the
compressed flag and `content-type`, which grpcio hides from servers.

Python code for zipkin.proto and jaeger/api_v2/*.proto is generated at test time from the repository's
proto/ directory with grpcio-tools (generated_modules()); nothing generated is checked in.
"""

import base64
import collections
import gzip
import http.server
import ipaddress
import json
import os
import socket
import sys
import tempfile
import threading
import time
import zlib
from concurrent import futures
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO_ROOT, "proto")

# ---------------------------------------------------------------------------
# Code generated from proto/ at test time
# ---------------------------------------------------------------------------

_GEN_LOCK = threading.Lock()
_GEN = None


class GeneratedModules:
    """zipkin_pb2 (zipkin.proto3), model_pb2 and collector_pb2 (jaeger.api_v2)."""

    def __init__(self, directory, zipkin_pb2, model_pb2, collector_pb2):
        self.directory = directory
        self.zipkin_pb2 = zipkin_pb2
        self.model_pb2 = model_pb2
        self.collector_pb2 = collector_pb2


def generated_modules():
    """Run grpc_tools.protoc once per process on proto/zipkin/zipkin.proto and proto/jaeger/api_v2/*.proto
    into a temporary directory, put it on sys.path and import the modules. The well-known types
    (google/protobuf/timestamp.proto, duration.proto) come from the installed protobuf package."""
    global _GEN
    with _GEN_LOCK:
        if _GEN is not None:
            return _GEN
        try:
            from grpc_tools import protoc
        except ImportError as e:
            raise AssertionError("grpcio-tools is not installed (scripts/install-deps --test "
                                 "installs it into .venv/): %s" % e)
        out = tempfile.mkdtemp(prefix="agenttrace-fakes-gen-")
        files = ["zipkin/zipkin.proto", "jaeger/api_v2/model.proto", "jaeger/api_v2/collector.proto"]
        for f in files:
            if not os.path.exists(os.path.join(PROTO_DIR, f)):
                raise AssertionError("proto file %s is missing" % os.path.join(PROTO_DIR, f))
        import grpc_tools
        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["grpc_tools.protoc", "-I" + PROTO_DIR, "-I" + wkt, "--python_out=" + out] + files
        rc = protoc.main(args)
        if rc != 0:
            raise AssertionError("grpc_tools.protoc failed (%d): %s" % (rc, " ".join(args)))
        sys.path.insert(0, out)
        import importlib
        zipkin_pb2 = importlib.import_module("zipkin.zipkin_pb2")
        model_pb2 = importlib.import_module("jaeger.api_v2.model_pb2")
        collector_pb2 = importlib.import_module("jaeger.api_v2.collector_pb2")
        _GEN = GeneratedModules(out, zipkin_pb2, model_pb2, collector_pb2)
        return _GEN


# ---------------------------------------------------------------------------
# Protobuf strictness helpers
# ---------------------------------------------------------------------------

def _repeated(fd):
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return rep
    return fd.label == fd.LABEL_REPEATED


def unknown_field_paths(msg, path=""):
    """Paths of unknown fields anywhere in a parsed protobuf message (fields the schema does not have)."""
    from google.protobuf import unknown_fields

    found = []
    name = path or msg.DESCRIPTOR.full_name
    ufs = unknown_fields.UnknownFieldSet(msg)
    for i in range(len(ufs)):
        found.append("%s: unknown field number %d (wire type %d)" % (name, ufs[i].field_number, ufs[i].wire_type))
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            if vfd.message_type is not None:
                for k, v in value.items():
                    found.extend(unknown_field_paths(v, "%s.%s[%r]" % (name, fd.name, k)))
            continue
        if _repeated(fd):
            for i, v in enumerate(value):
                found.extend(unknown_field_paths(v, "%s.%s[%d]" % (name, fd.name, i)))
        else:
            found.extend(unknown_field_paths(value, "%s.%s" % (name, fd.name)))
    return found


def enum_violations(msg, path=""):
    """Enum fields holding a number the enum does not define (proto3 parsers keep those silently)."""
    found = []
    name = path or msg.DESCRIPTOR.full_name
    for fd, value in msg.ListFields():
        if fd.enum_type is not None:
            values = value if _repeated(fd) else [value]
            for v in values:
                if v not in fd.enum_type.values_by_number:
                    found.append("%s.%s: %d is not a value of enum %s" % (name, fd.name, v, fd.enum_type.full_name))
        elif fd.message_type is not None and not fd.message_type.GetOptions().map_entry:
            if _repeated(fd):
                for i, v in enumerate(value):
                    found.extend(enum_violations(v, "%s.%s[%d]" % (name, fd.name, i)))
            else:
                found.extend(enum_violations(value, "%s.%s" % (name, fd.name)))
    return found


def strict_parse(cls, data):
    """(message, violations): parse `data` as `cls`, listing unknown fields and undefined enum numbers."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError
        return None, ["body is not a valid %s: %s" % (cls.DESCRIPTOR.full_name, e)]
    return msg, unknown_field_paths(msg) + enum_violations(msg)


# ---------------------------------------------------------------------------
# Scripted answers
# ---------------------------------------------------------------------------

@dataclass
class Failure:
    code: object                 # HTTP status (int) or grpc.StatusCode
    retry_after: object = None   # seconds (HTTP Retry-After, gRPC RetryInfo.retry_delay)
    message: str = "scripted failure"


class Script:
    """What a fake answers next. Without rules: success. Rules are tried in order:

      fail_for(seconds, code)  fail every request during `seconds`, counted from the first request
                               that arrives after the call; then the rule expires
      fail_next(n, code)       fail the next n requests
      fail_always(code)        fail every request until succeed()
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []

    def fail_for(self, seconds, code, retry_after=None, message="scripted failure"):
        with self._lock:
            self._rules.append({"kind": "for", "seconds": seconds, "start": None,
                                "failure": Failure(code, retry_after, message)})

    def fail_next(self, n, code, retry_after=None, message="scripted failure"):
        with self._lock:
            self._rules.append({"kind": "next", "left": n, "failure": Failure(code, retry_after, message)})

    def fail_always(self, code, retry_after=None, message="scripted failure"):
        with self._lock:
            self._rules.append({"kind": "always", "failure": Failure(code, retry_after, message)})

    def succeed(self):
        with self._lock:
            self._rules = []

    def decide(self, now=None):
        """None for success, else the Failure to answer."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._rules:
                r = self._rules[0]
                if r["kind"] == "always":
                    return r["failure"]
                if r["kind"] == "next":
                    if r["left"] > 0:
                        r["left"] -= 1
                        return r["failure"]
                    self._rules.pop(0)
                    continue
                if r["start"] is None:
                    r["start"] = now
                if now - r["start"] < r["seconds"]:
                    return r["failure"]
                self._rules.pop(0)
            return None


# ---------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------

@dataclass
class Received:
    """One request as a fake saw it."""
    time: float                      # time.monotonic() at arrival
    transport: str                   # "http" or "grpc"
    path: str                        # HTTP path, or the gRPC method path
    headers: dict                    # HTTP headers / gRPC metadata, lower-case names (last value wins)
    body: bytes                      # as received, before Content-Encoding was undone
    content_type: str = ""
    content_encoding: str = ""
    message: object = None           # the parsed message (protobuf) or JSON value
    spans: list = field(default_factory=list)   # fake-specific span records (see each fake)
    violations: list = field(default_factory=list)
    answer: object = None            # HTTP status (int) or gRPC status name (str)
    accepted: bool = False           # answered success
    failure: object = None           # the scripted Failure answered, if any

    def span_ids(self):
        return [s.key for s in self.spans]


class FakeBase:
    name = "fake"

    def __init__(self):
        self.script = Script()
        self.requests = []
        self.violations = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)

    def _record(self, rec):
        with self._cond:
            self.requests.append(rec)
            for v in rec.violations:
                self.violations.append("%s request #%d (%s %s): %s"
                                       % (self.name, len(self.requests), rec.transport, rec.path, v))
            self._cond.notify_all()

    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def accepted_requests(self):
        return [r for r in self.snapshot() if r.accepted]

    def accepted_spans(self):
        return [s for r in self.accepted_requests() for s in r.spans]

    def accepted_counts(self):
        """Counter: span key -> how many accepted requests carried it."""
        return collections.Counter(s.key for s in self.accepted_spans())

    def attempt_counts(self, accepted=None):
        """Counter: span key -> how many requests (any answer, or only failed ones with accepted=False) carried it."""
        return collections.Counter(s.key for r in self.snapshot()
                                   if accepted is None or r.accepted == accepted for s in r.spans)

    def wait_for(self, predicate, timeout):
        """Wait until predicate(self) holds; returns whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._lock.release()
                try:
                    ok = predicate(self)
                finally:
                    self._lock.acquire()
                if ok:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))

    def wait_for_keys(self, keys, timeout):
        """Wait until every span key in `keys` arrived in an accepted request; returns the missing ones."""
        keys = set(keys)
        self.wait_for(lambda f: keys <= set(f.accepted_counts()), timeout)
        return keys - set(self.accepted_counts())

    def describe(self, limit=8):
        reqs = self.snapshot()
        lines = ["%s: %d requests, %d violations" % (self.name, len(reqs), len(self.violations))]
        for r in reqs[-limit:]:
            lines.append("  %s %s ct=%r ce=%r spans=%d answer=%s violations=%s"
                         % (r.transport, r.path, r.content_type, r.content_encoding, len(r.spans), r.answer,
                            r.violations[:3]))
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# HTTP plumbing shared by the Zipkin and OTLP/HTTP fakes
# ---------------------------------------------------------------------------

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _read_body(handler):
    """The request body, handling Content-Length and chunked transfer encoding."""
    te = (handler.headers.get("Transfer-Encoding") or "").lower()
    if "chunked" in te:
        chunks = []
        while True:
            line = handler.rfile.readline()
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n else b""


def _media_type(value):
    return (value or "").split(";")[0].strip().lower()


def _decode_content_encoding(body, encoding):
    """(payload, violation or None)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body, None
    if enc == "gzip":
        try:
            return gzip.decompress(body), None
        except (OSError, EOFError, zlib.error) as e:
            return None, "Content-Encoding: gzip but the body is not valid gzip (%s)" % e
    return None, "unsupported Content-Encoding %r (want gzip or none)" % encoding


class HTTPFakeBase(FakeBase):
    """A ThreadingHTTPServer whose POSTs go to self._handle(handler, path, headers, body) -> (status, headers, body)."""

    paths = ()

    def __init__(self, port=0):
        super().__init__()
        self._port = port
        self.server = None
        self.thread = None

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, status, headers, body):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = _read_body(self)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, headers, out = fake._handle_post(self.path, hdrs, body)
                except Exception as e:  # a bug in the fake must show up, not hang the sender
                    fake._record(Received(time.monotonic(), "http", self.path, hdrs, body,
                                          violations=["fake crashed handling the request: %r" % (e,)],
                                          answer=500))
                    status, headers, out = 500, {}, b""
                self._answer(status, headers, out)

            def _other(self):
                body = _read_body(self)
                rec = Received(time.monotonic(), "http", self.path,
                               {k.lower(): v for k, v in self.headers.items()}, body,
                               violations=["unexpected method %s (only POST)" % self.command], answer=405)
                fake._record(rec)
                self._answer(405, {"Allow": "POST"}, b"")

            do_GET = do_PUT = do_DELETE = do_PATCH = _other

        self.server = _Server(("127.0.0.1", self._port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=self.name, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _handle_post(self, path, headers, body):
        rec = Received(time.monotonic(), "http", path, headers, body,
                       content_type=headers.get("content-type", ""),
                       content_encoding=headers.get("content-encoding", ""))
        if path.split("?")[0] not in self.paths:
            rec.violations.append("POST to unexpected path %r (want %s)" % (path, " or ".join(self.paths)))
            rec.answer = 404
            self._record(rec)
            return 404, {}, b""
        payload, v = _decode_content_encoding(body, rec.content_encoding)
        if v:
            rec.violations.append(v)
        else:
            self.parse(rec, payload)
        failure = self.script.decide()
        if rec.violations:
            status, hdrs, out = self.bad_request(rec)
        elif failure is not None:
            rec.failure = failure
            status, hdrs, out = self.failure_answer(rec, failure)
        else:
            status, hdrs, out = self.success(rec)
            rec.accepted = True
        rec.answer = status
        self._record(rec)
        return status, hdrs, out

    # subclasses
    def parse(self, rec, payload):
        raise NotImplementedError

    def success(self, rec):
        raise NotImplementedError

    def bad_request(self, rec):
        return 400, {"Content-Type": "text/plain"}, ("; ".join(rec.violations)).encode("utf-8")[:4000]

    def failure_answer(self, rec, failure):
        hdrs = {"Content-Type": "text/plain"}
        if failure.retry_after is not None:
            hdrs["Retry-After"] = str(int(failure.retry_after))
        return int(failure.code), hdrs, failure.message.encode("utf-8")


# ---------------------------------------------------------------------------
# Zipkin
# ---------------------------------------------------------------------------

# definitions/Span, Endpoint, Annotation and Tags of openzipkin/zipkin-api zipkin2-api.yaml (swagger 2.0),
# as JSON Schema. Stricter than the yaml where the brief says so (documented in docs/exporter-mappings.md
# §1.3): anchored lower-case hex id patterns, timestamp >= 1, port 1..65535, no additional properties.
ZIPKIN_ENDPOINT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "serviceName": {"type": "string"},
        "ipv4": {"type": "string", "format": "ipv4"},
        "ipv6": {"type": "string", "format": "ipv6"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}

ZIPKIN_ANNOTATION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["timestamp", "value"],
    "properties": {
        "timestamp": {"type": "integer", "minimum": 1},
        "value": {"type": "string"},
    },
}

ZIPKIN_SPAN_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Span",
    "type": "object",
    "additionalProperties": False,
    "required": ["traceId", "id"],
    "properties": {
        "traceId": {"type": "string", "minLength": 16, "maxLength": 32, "pattern": "^[a-f0-9]{16,32}$"},
        "name": {"type": "string"},
        "parentId": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": "^[a-f0-9]{16}$"},
        "id": {"type": "string", "minLength": 16, "maxLength": 16, "pattern": "^[a-f0-9]{16}$"},
        "kind": {"type": "string", "enum": ["CLIENT", "SERVER", "PRODUCER", "CONSUMER"]},
        "timestamp": {"type": "integer", "minimum": 1},
        "duration": {"type": "integer", "minimum": 1},
        "debug": {"type": "boolean"},
        "shared": {"type": "boolean"},
        "localEndpoint": ZIPKIN_ENDPOINT_SCHEMA,
        "remoteEndpoint": ZIPKIN_ENDPOINT_SCHEMA,
        "annotations": {"type": "array", "uniqueItems": True, "items": ZIPKIN_ANNOTATION_SCHEMA},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

ZIPKIN_LIST_OF_SPANS_SCHEMA = {"type": "array", "items": ZIPKIN_SPAN_SCHEMA}


def zipkin_schema_violations(value):
    """Messages for every way `value` (a decoded JSON ListOfSpans) breaks ZIPKIN_LIST_OF_SPANS_SCHEMA."""
    import jsonschema

    validator = jsonschema.Draft7Validator(ZIPKIN_LIST_OF_SPANS_SCHEMA, format_checker=jsonschema.FormatChecker())
    out = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "$" + "".join("[%r]" % p if isinstance(p, str) else "[%d]" % p for p in err.absolute_path)
        out.append("%s: %s" % (where, err.message))
    # JSON Schema counts 1.0 as an integer; Zipkin's int64 fields must be JSON integers.
    if isinstance(value, list):
        for i, span in enumerate(value):
            if not isinstance(span, dict):
                continue
            for k in ("timestamp", "duration"):
                if isinstance(span.get(k), float):
                    out.append("$[%d][%r]: %r is not an integer literal" % (i, k, span[k]))
            for j, a in enumerate(span.get("annotations") or []):
                if isinstance(a, dict) and isinstance(a.get("timestamp"), float):
                    out.append("$[%d]['annotations'][%d]['timestamp']: not an integer literal" % (i, j))
            for k in ("localEndpoint", "remoteEndpoint"):
                ep = span.get(k)
                if isinstance(ep, dict) and isinstance(ep.get("port"), float):
                    out.append("$[%d][%r]['port']: not an integer literal" % (i, k))
    return out


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError("duplicate JSON object keys %s" % dup)
    return dict(pairs)


def _reject_constant(name):
    raise ValueError("non-JSON number %s" % name)


def strict_json_loads(text):
    """json.loads that refuses duplicate keys and NaN/Infinity."""
    return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)


@dataclass
class ZipkinSpan:
    key: tuple          # (traceId hex, id hex)
    span: dict          # the JSON form (proto spans converted: hex ids, kind names, text IPs, defaults omitted)
    encoding: str       # "json" or "proto"


def zipkin_proto_span_to_json(span, zipkin_pb2):
    """zipkin.proto3.Span -> the equivalent JSON v2 object (proto3 defaults are 'absent')."""
    out = {}
    if span.trace_id:
        out["traceId"] = span.trace_id.hex()
    if span.parent_id:
        out["parentId"] = span.parent_id.hex()
    if span.id:
        out["id"] = span.id.hex()
    if span.kind:
        kinds = zipkin_pb2.Span.Kind.DESCRIPTOR.values_by_number
        out["kind"] = kinds[span.kind].name if span.kind in kinds else span.kind
    if span.name:
        out["name"] = span.name
    if span.timestamp:
        out["timestamp"] = span.timestamp
    if span.duration:
        out["duration"] = span.duration
    for fname, jname in (("local_endpoint", "localEndpoint"), ("remote_endpoint", "remoteEndpoint")):
        if span.HasField(fname):
            ep = getattr(span, fname)
            e = {}
            if ep.service_name:
                e["serviceName"] = ep.service_name
            if ep.ipv4:
                e["ipv4"] = str(ipaddress.IPv4Address(ep.ipv4)) if len(ep.ipv4) == 4 else ep.ipv4.hex()
            if ep.ipv6:
                e["ipv6"] = str(ipaddress.IPv6Address(ep.ipv6)) if len(ep.ipv6) == 16 else ep.ipv6.hex()
            if ep.port:
                e["port"] = ep.port
            out[jname] = e
    if span.annotations:
        out["annotations"] = [{"timestamp": a.timestamp, "value": a.value} for a in span.annotations]
    if span.tags:
        out["tags"] = dict(span.tags)
    if span.debug:
        out["debug"] = True
    if span.shared:
        out["shared"] = True
    return out


def zipkin_proto_violations(i, span):
    """Checks of zipkin.proto's field comments that the JSON schema of the converted span cannot see."""
    p = "spans[%d]" % i
    out = []
    if len(span.trace_id) not in (8, 16):
        out.append("%s.trace_id: %d bytes (want 8 or 16)" % (p, len(span.trace_id)))
    elif not any(span.trace_id):
        out.append("%s.trace_id: all zero" % p)
    if len(span.id) != 8:
        out.append("%s.id: %d bytes (want 8)" % (p, len(span.id)))
    elif not any(span.id):
        out.append("%s.id: all zero" % p)
    if span.parent_id and len(span.parent_id) != 8:
        out.append("%s.parent_id: %d bytes (want 8 or absent)" % (p, len(span.parent_id)))
    for fname in ("local_endpoint", "remote_endpoint"):
        if span.HasField(fname):
            ep = getattr(span, fname)
            if ep.ipv4 and len(ep.ipv4) != 4:
                out.append("%s.%s.ipv4: %d bytes (want 4)" % (p, fname, len(ep.ipv4)))
            if ep.ipv6 and len(ep.ipv6) != 16:
                out.append("%s.%s.ipv6: %d bytes (want 16)" % (p, fname, len(ep.ipv6)))
            if ep.port < 0 or ep.port > 65535:
                out.append("%s.%s.port: %d out of range" % (p, fname, ep.port))
    for j, a in enumerate(span.annotations):
        if a.timestamp == 0:
            out.append("%s.annotations[%d].timestamp: 0 (zipkin.proto: zero is an invalid timestamp)" % (p, j))
    return out


class ZipkinFake(HTTPFakeBase):
    """Zipkin's v2 collector endpoint. `spans` of each Received are ZipkinSpan records."""

    name = "zipkin"
    paths = ("/api/v2/spans",)

    def __init__(self, port=0):
        super().__init__(port)
        self._pb = generated_modules().zipkin_pb2

    @property
    def url(self):
        return "http://%s/api/v2/spans" % self.address

    def parse(self, rec, payload):
        ct = _media_type(rec.content_type)
        if ct == "application/json":
            try:
                value = strict_json_loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                rec.violations.append("body is not valid JSON: %s" % e)
                return
            rec.message = value
            rec.violations.extend(zipkin_schema_violations(value))
            if isinstance(value, list):
                for s in value:
                    if isinstance(s, dict):
                        rec.spans.append(ZipkinSpan((s.get("traceId"), s.get("id")), s, "json"))
        elif ct == "application/x-protobuf":
            msg, v = strict_parse(self._pb.ListOfSpans, payload)
            rec.violations.extend(v)
            if msg is None:
                return
            rec.message = msg
            converted = []
            for i, s in enumerate(msg.spans):
                rec.violations.extend(zipkin_proto_violations(i, s))
                js = zipkin_proto_span_to_json(s, self._pb)
                converted.append(js)
                rec.spans.append(ZipkinSpan((js.get("traceId"), js.get("id")), js, "proto"))
            rec.violations.extend("(protobuf, as JSON) " + x for x in zipkin_schema_violations(converted))
        else:
            rec.violations.append("unsupported Content-Type %r (want application/json or application/x-protobuf)"
                                  % rec.content_type)

    def success(self, rec):
        return 202, {}, b""


# ---------------------------------------------------------------------------
# OTLP over HTTP
# ---------------------------------------------------------------------------

@dataclass
class OTLPSpan:
    key: tuple          # (trace id hex, span id hex)
    resource: object    # opentelemetry.proto.resource.v1.Resource
    scope: object       # InstrumentationScope
    span: object        # opentelemetry.proto.trace.v1.Span
    resource_schema_url: str = ""
    scope_schema_url: str = ""


def otlp_spans_of(msg):
    """ExportTraceServiceRequest -> [OTLPSpan]."""
    out = []
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append(OTLPSpan((sp.trace_id.hex(), sp.span_id.hex()), rs.resource, ss.scope, sp,
                                    rs.schema_url, ss.schema_url))
    return out


def otlp_request_violations(msg):
    out = []
    for i, rs in enumerate(msg.resource_spans):
        for j, ss in enumerate(rs.scope_spans):
            for k, sp in enumerate(ss.spans):
                p = "resource_spans[%d].scope_spans[%d].spans[%d]" % (i, j, k)
                if len(sp.trace_id) != 16 or not any(sp.trace_id):
                    out.append("%s.trace_id: %r is not 16 non-zero bytes" % (p, sp.trace_id.hex()))
                if len(sp.span_id) != 8 or not any(sp.span_id):
                    out.append("%s.span_id: %r is not 8 non-zero bytes" % (p, sp.span_id.hex()))
                if sp.parent_span_id and len(sp.parent_span_id) != 8:
                    out.append("%s.parent_span_id: %d bytes" % (p, len(sp.parent_span_id)))
                for n, ln in enumerate(sp.links):
                    if len(ln.trace_id) != 16 or len(ln.span_id) != 8:
                        out.append("%s.links[%d]: bad ids" % (p, n))
    return out


_OTLP_JSON_ID_KEYS = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def otlp_json_id_violations(obj, path="$"):
    """OTLP/JSON ids must be hex strings (not base64): 32 chars for traceId, 16 for span ids."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = "%s.%s" % (path, k)
            if k in _OTLP_JSON_ID_KEYS:
                n = _OTLP_JSON_ID_KEYS[k]
                if k == "parentSpanId" and v == "":
                    continue  # a root span
                if not isinstance(v, str) or len(v) != n or any(c not in "0123456789abcdefABCDEF" for c in v):
                    out.append("%s: %r is not a %d-character hex id (OTLP/JSON)" % (p, v, n))
            else:
                out.extend(otlp_json_id_violations(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(otlp_json_id_violations(v, "%s[%d]" % (path, i)))
    return out


def _hex_ids_to_base64(obj):
    if isinstance(obj, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode("ascii")
                    if k in _OTLP_JSON_ID_KEYS and isinstance(v, str) else _hex_ids_to_base64(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hex_ids_to_base64(x) for x in obj]
    return obj


def parse_otlp_json(payload):
    """(ExportTraceServiceRequest, violations) from an OTLP/JSON body, refusing unknown keys."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    try:
        value = strict_json_loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return None, ["body is not valid JSON: %s" % e]
    v = otlp_json_id_violations(value)
    if v:
        return None, v
    msg = trace_service_pb2.ExportTraceServiceRequest()
    try:
        json_format.Parse(json.dumps(_hex_ids_to_base64(value)), msg, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        return None, ["body is not a valid OTLP/JSON ExportTraceServiceRequest: %s" % e]
    return msg, enum_violations(msg)


class OTLPHttpFake(HTTPFakeBase):
    """OTLP/HTTP trace receiver. `spans` of each Received are OTLPSpan records."""

    name = "otlp-http"

    def __init__(self, port=0, path="/v1/traces"):
        super().__init__(port)
        self.paths = (path,)

    @property
    def base_url(self):
        return "http://%s" % self.address

    @property
    def url(self):
        return "http://%s%s" % (self.address, self.paths[0])

    def parse(self, rec, payload):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        ct = _media_type(rec.content_type)
        if ct == "application/x-protobuf":
            msg, v = strict_parse(trace_service_pb2.ExportTraceServiceRequest, payload)
        elif ct == "application/json":
            msg, v = parse_otlp_json(payload)
        else:
            rec.violations.append("unsupported Content-Type %r (want application/x-protobuf or application/json)"
                                  % rec.content_type)
            return
        rec.violations.extend(v)
        if msg is None:
            return
        rec.message = msg
        rec.violations.extend(otlp_request_violations(msg))
        rec.spans.extend(otlp_spans_of(msg))

    def _encode(self, rec, msg):
        if _media_type(rec.content_type) == "application/json":
            from google.protobuf import json_format
            return "application/json", json_format.MessageToJson(msg).encode("utf-8")
        return "application/x-protobuf", msg.SerializeToString()

    def success(self, rec):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        ct, body = self._encode(rec, trace_service_pb2.ExportTraceServiceResponse())
        return 200, {"Content-Type": ct}, body

    def _status(self, rec, code, message, status):
        from google.rpc import status_pb2
        ct, body = self._encode(rec, status_pb2.Status(code=code, message=message))
        return status, {"Content-Type": ct}, body

    def bad_request(self, rec):
        return self._status(rec, 3, "; ".join(rec.violations)[:4000], 400)

    def failure_answer(self, rec, failure):
        status, hdrs, body = self._status(rec, 14 if int(failure.code) >= 500 else 3, failure.message,
                                          int(failure.code))
        if failure.retry_after is not None:
            hdrs["Retry-After"] = str(int(failure.retry_after))
        return status, hdrs, body


# ---------------------------------------------------------------------------
# HTTP/2 sniffer in front of the gRPC fakes
# ---------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@dataclass
class SniffedStream:
    connection: int
    stream_id: int
    headers: dict                       # request headers (first header block), lower-case names
    message_flags: list = field(default_factory=list)   # the compressed-flag byte of each gRPC message
    message_sizes: list = field(default_factory=list)   # the length prefix of each gRPC message
    errors: list = field(default_factory=list)


class H2Sniffer:
    """A TCP proxy from `port` to 127.0.0.1:target_port that decodes the client's HTTP/2 request
    headers and gRPC message prefixes (client -> server direction only)."""

    def __init__(self, target_port, port=0):
        self.target_port = target_port
        self.streams = []
        self.errors = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self._closed = False
        self._conns = []
        self._count = 0
        threading.Thread(target=self._accept, name="h2sniffer", daemon=True).start()

    @property
    def port(self):
        return self._listener.getsockname()[1]

    def close(self):
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        for s in list(self._conns):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self._count += 1
            cid = self._count
            self._conns.extend([client, upstream])
            threading.Thread(target=self._pump, args=(client, upstream, cid, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, cid, False), daemon=True).start()

    def _pump(self, src, dst, cid, parse):
        parser = _H2RequestParser(self, cid) if parse else None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if parser is not None:
                    parser.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def snapshot(self):
        with self._lock:
            return list(self.streams)


class _H2RequestParser:
    def __init__(self, sniffer, cid):
        import hpack

        self.sniffer = sniffer
        self.cid = cid
        self.buf = b""
        self.preface_done = False
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 20
        self.block = None            # (stream id, [fragments]) awaiting CONTINUATION
        self.streams = {}            # stream id -> SniffedStream
        self.pending = {}            # stream id -> bytes of gRPC framing not yet complete
        self.dead = False

    def feed(self, data):
        if self.dead:
            return
        self.buf += data
        try:
            if not self.preface_done:
                if len(self.buf) < len(H2_PREFACE):
                    return
                if not self.buf.startswith(H2_PREFACE):
                    self._error("connection does not start with the HTTP/2 preface (h2c prior knowledge)")
                    self.dead = True
                    return
                self.buf = self.buf[len(H2_PREFACE):]
                self.preface_done = True
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[0:3], "big")
                if len(self.buf) < 9 + length:
                    return
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload = self.buf[9:9 + length]
                self.buf = self.buf[9 + length:]
                self._frame(ftype, flags, sid, payload)
        except Exception as e:  # never break the proxied traffic
            self._error("sniffer could not parse the client's HTTP/2 frames: %r" % (e,))
            self.dead = True

    def _error(self, msg):
        with self.sniffer._lock:
            self.sniffer.errors.append("connection %d: %s" % (self.cid, msg))

    def _frame(self, ftype, flags, sid, payload):
        if ftype == 1:  # HEADERS
            if flags & 0x8:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & 0x20:
                payload = payload[5:]
            self.block = (sid, [payload])
            if flags & 0x4:
                self._headers_done()
        elif ftype == 9:  # CONTINUATION
            self.block[1].append(payload)
            if flags & 0x4:
                self._headers_done()
        elif ftype == 0:  # DATA
            if flags & 0x8:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            st = self.streams.get(sid)
            if st is None:
                return
            buf = self.pending.get(sid, b"") + payload
            while len(buf) >= 5:
                n = int.from_bytes(buf[1:5], "big")
                if len(buf) < 5 + n:
                    break
                st.message_flags.append(buf[0])
                st.message_sizes.append(n)
                buf = buf[5 + n:]
            self.pending[sid] = buf

    def _headers_done(self):
        sid, parts = self.block
        self.block = None
        headers = self.decoder.decode(b"".join(parts), raw=False)
        if sid in self.streams:
            return  # trailers (clients send none for unary calls)
        st = SniffedStream(self.cid, sid, {k.lower(): v for k, v in headers})
        self.streams[sid] = st
        with self.sniffer._lock:
            self.sniffer.streams.append(st)


# ---------------------------------------------------------------------------
# gRPC fakes
# ---------------------------------------------------------------------------

def _retry_info_trailer(seconds):
    """grpc-status-details-bin carrying google.rpc.RetryInfo{retry_delay: seconds}."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(
        seconds=int(seconds), nanos=int(round((seconds - int(seconds)) * 1e9))))
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(details=[detail])


class GRPCFakeBase(FakeBase):
    """A grpcio server for one unary method, taking raw bytes, behind an H2Sniffer."""

    service = ""
    method = ""

    def __init__(self, port=0):
        super().__init__()
        self._port = port
        self.server = None
        self.sniffer = None

    @property
    def path(self):
        return "/%s/%s" % (self.service, self.method)

    def start(self):
        import grpc

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=[("grpc.max_receive_message_length", -1),
                                           ("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(self._call, request_deserializer=None,
                                                      response_serializer=lambda m: m.SerializeToString())
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(self.service,
                                                                                   {self.method: handler}),))
        inner = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.sniffer = H2Sniffer(inner, self._port)
        return self

    @property
    def port(self):
        return self.sniffer.port

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        if self.sniffer is not None:
            self.sniffer.close()
        if self.server is not None:
            self.server.stop(grace=None)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def streams(self):
        return [s for s in self.sniffer.snapshot() if s.headers.get(":path") == self.path]

    def _call(self, body, context):
        import grpc

        md = {}
        for k, v in context.invocation_metadata():
            md[k.lower()] = v
        rec = Received(time.monotonic(), "grpc", self.path, md, body)
        try:
            self.parse(rec, body)
        except Exception as e:  # a bug in the fake must show up as a violation
            rec.violations.append("fake crashed handling the request: %r" % (e,))
        failure = self.script.decide()
        if rec.violations:
            rec.answer = "INVALID_ARGUMENT"
            self._record(rec)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(rec.violations)[:2000])
        if failure is not None:
            code = failure.code
            rec.answer = code.name
            rec.failure = failure
            self._record(rec)
            if failure.retry_after is not None:
                st = _retry_info_trailer(failure.retry_after)
                context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            context.abort(code, failure.message)
        rec.answer = "OK"
        rec.accepted = True
        self._record(rec)
        return self.response()

    def parse(self, rec, body):
        raise NotImplementedError

    def response(self):
        raise NotImplementedError


@dataclass
class JaegerSpan:
    key: tuple          # (trace id hex, span id hex)
    span: object        # jaeger.api_v2.Span
    process: object     # the Batch's jaeger.api_v2.Process
    batch_index: int    # index of the request in the fake's requests


def jaeger_batch_violations(batch, model_pb2):
    """Checks of jaeger-idl model.proto's field rules beyond what parsing sees."""
    out = []
    if not batch.HasField("process"):
        out.append("batch.process is missing")
    elif not batch.process.service_name:
        out.append("batch.process.service_name is empty")
    else:
        out.extend(_kv_violations(batch.process.tags, "batch.process.tags", model_pb2))
    if not batch.spans:
        out.append("batch.spans is empty")
    for i, s in enumerate(batch.spans):
        p = "batch.spans[%d]" % i
        if len(s.trace_id) != 16 or not any(s.trace_id):
            out.append("%s.trace_id: %r is not 16 non-zero bytes" % (p, s.trace_id.hex()))
        if len(s.span_id) != 8 or not any(s.span_id):
            out.append("%s.span_id: %r is not 8 non-zero bytes" % (p, s.span_id.hex()))
        for j, r in enumerate(s.references):
            if len(r.trace_id) != 16 or len(r.span_id) != 8 or not any(r.span_id):
                out.append("%s.references[%d]: bad ids %s/%s" % (p, j, r.trace_id.hex(), r.span_id.hex()))
        if not s.HasField("start_time") or s.start_time.seconds <= 0:
            out.append("%s.start_time missing or not after the epoch" % p)
        elif not 0 <= s.start_time.nanos < 10 ** 9:
            out.append("%s.start_time.nanos out of range" % p)
        if not s.HasField("duration"):
            out.append("%s.duration missing" % p)
        elif s.duration.seconds < 0 or not 0 <= s.duration.nanos < 10 ** 9:
            out.append("%s.duration %ss %sns is not a non-negative normalised Duration"
                       % (p, s.duration.seconds, s.duration.nanos))
        out.extend(_kv_violations(s.tags, p + ".tags", model_pb2))
        for j, lg in enumerate(s.logs):
            if not lg.HasField("timestamp") or lg.timestamp.seconds <= 0:
                out.append("%s.logs[%d].timestamp missing" % (p, j))
            out.extend(_kv_violations(lg.fields, "%s.logs[%d].fields" % (p, j), model_pb2))
    return out


_JAEGER_VALUE_FIELD = {0: "v_str", 1: "v_bool", 2: "v_int64", 3: "v_float64", 4: "v_binary"}


def _kv_violations(kvs, path, model_pb2):
    out = []
    for i, kv in enumerate(kvs):
        p = "%s[%d]" % (path, i)
        if not kv.key:
            out.append("%s.key is empty" % p)
        want = _JAEGER_VALUE_FIELD.get(kv.v_type)
        for f in _JAEGER_VALUE_FIELD.values():
            if f != want and getattr(kv, f) not in ("", b"", 0, False):
                out.append("%s (%s, v_type %s): %s is set as well"
                           % (p, kv.key, model_pb2.ValueType.Name(kv.v_type) if want else kv.v_type, f))
    return out


class JaegerFake(GRPCFakeBase):
    """Jaeger collector gRPC API. `spans` of each Received are JaegerSpan records."""

    name = "jaeger"
    service = "jaeger.api_v2.CollectorService"
    method = "PostSpans"

    def __init__(self, port=0):
        super().__init__(port)
        self._gen = generated_modules()

    def parse(self, rec, body):
        msg, v = strict_parse(self._gen.collector_pb2.PostSpansRequest, body)
        rec.violations.extend(v)
        if msg is None:
            return
        rec.message = msg
        if not msg.HasField("batch"):
            rec.violations.append("PostSpansRequest.batch is missing")
            return
        rec.violations.extend(jaeger_batch_violations(msg.batch, self._gen.model_pb2))
        with self._lock:
            index = len(self.requests)
        for s in msg.batch.spans:
            rec.spans.append(JaegerSpan((s.trace_id.hex(), s.span_id.hex()), s, msg.batch.process, index))

    def response(self):
        return self._gen.collector_pb2.PostSpansResponse()


class OTLPGrpcFake(GRPCFakeBase):
    """OTLP/gRPC trace service. `spans` of each Received are OTLPSpan records."""

    name = "otlp-grpc"
    service = "opentelemetry.proto.collector.trace.v1.TraceService"
    method = "Export"

    def parse(self, rec, body):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        msg, v = strict_parse(trace_service_pb2.ExportTraceServiceRequest, body)
        rec.violations.extend(v)
        if msg is None:
            return
        rec.message = msg
        rec.violations.extend(otlp_request_violations(msg))
        rec.spans.extend(otlp_spans_of(msg))

    def response(self):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        return trace_service_pb2.ExportTraceServiceResponse()


# ---------------------------------------------------------------------------
# Ports for backends that start later
# ---------------------------------------------------------------------------

class ReservedPort:
    """A loopback port held by a bound, non-listening socket: connections to it are refused (a backend
    that is down) and no one else can take it. release() just before starting the fake on it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def release(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        return self.port
