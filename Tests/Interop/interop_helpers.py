"""Helpers for the interop tests that drive the real `agenttrace` binary.

Nothing here imports the binary's code: the tests see the collector only the
way a user does (config file, stdout, HTTP, files it writes).

  * config writer      -- build_config() / to_yaml() / write_config()
  * metrics parser     -- parse_metrics() -> MetricSet (Prometheus text format)
  * OTLP reader        -- load_requests(), spans_of(), read_output_spans()
  * OTLP/JSON writer   -- Trace (spans of one trace by service), otlp_request(), otlp_any()
  * process control    -- Collector (serve), run_cli(), parse_replay_output()
  * raw HTTP           -- http_request()
  * Prometheus         -- Prometheus (a real server scraping a collector), prometheus_config()
  * alert sinks        -- AlertReceiver (webhook, Slack, PagerDuty), rule_of()
  * gRPC               -- grpc_channel(), grpc_export(), grpc_frame()
  * raw HTTP/2         -- h2_request() / H2Client (hyper-h2), H2FrameClient (frame level),
                          raw_exchange(), parse_h2_frames(), parse_h2load_output()
"""

import base64
import gzip
import http.client
import http.server
import json
import math
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTDATA = os.path.join(REPO_ROOT, "testdata")

READY_LINE = "agenttrace: ready"
RECEIVER_LINE_RE = re.compile(r"^agenttrace: listening receiver=(\S+) protocol=(\S+) address=(\S+)$")
ADMIN_LINE_RE = re.compile(r"^agenttrace: listening admin address=(\S+)$")
REPLAY_LINE_RE = re.compile(r"^replay: files=(\d+) spans_read=(\d+) accepted=(\d+) rejected=(\d+)$")
EXPORTER_LINE_RE = re.compile(r"^exporter (\S+): sent=(\d+) failed=(\d+)$")


# ---------------------------------------------------------------------------
# Binary location
# ---------------------------------------------------------------------------

def binary_path():
    """AGENTTRACE_BIN, or .build/debug/agenttrace under the repository root."""
    p = os.environ.get("AGENTTRACE_BIN") or os.path.join(".build", "debug", "agenttrace")
    if not os.path.isabs(p):
        p = os.path.join(REPO_ROOT, p)
    return p


def binary_problem(path):
    """None if `path` is a runnable file, else a sentence saying what is wrong."""
    if not os.path.exists(path):
        return ("agenttrace binary not found at %s: build it first (swift build) "
                "or point AGENTTRACE_BIN at it" % path)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return "agenttrace binary at %s is not an executable file" % path
    return None


# ---------------------------------------------------------------------------
# Config writer (a tiny YAML emitter: mappings, lists, scalars)
# ---------------------------------------------------------------------------

_PLAIN_RE = re.compile(r"^[A-Za-z0-9_/.][A-Za-z0-9_./:@+-]*$")
_YAML_SPECIAL = {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"}


def _yaml_scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError("non-finite float in config")
        return repr(v)
    if isinstance(v, str):
        if (_PLAIN_RE.match(v) and v.lower() not in _YAML_SPECIAL and not _looks_numeric(v)
                and not v.endswith(":")):
            return v
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError("cannot write %r to YAML" % (v,))


def _looks_numeric(s):
    try:
        float(s)
        return True
    except ValueError:
        pass
    return bool(re.match(r"^[-+]?(0x[0-9a-fA-F]+|0o[0-7]+|\.inf|\.nan)$", s, re.IGNORECASE))


def to_yaml(obj, indent=0):
    """Serialise nested dicts/lists/scalars as block-style YAML (lists of scalars in flow style)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            key = _yaml_scalar(str(k))
            if isinstance(v, dict) and v:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(v, indent + 1)))
            elif isinstance(v, dict):
                lines.append("%s%s: {}\n" % (pad, key))
            elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(v, indent + 1)))
            elif isinstance(v, list):
                lines.append("%s%s: [%s]\n" % (pad, key, ", ".join(_yaml_scalar(x) for x in v)))
            else:
                lines.append("%s%s: %s\n" % (pad, key, _yaml_scalar(v)))
        return "".join(lines)
    if isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                lines.append("%s- %s" % (pad, body.lstrip(" ")))
            else:
                lines.append("%s- %s\n" % (pad, _yaml_scalar(item) if not isinstance(item, (dict, list))
                                           else ("{}" if isinstance(item, dict) else "[]")))
        return "".join(lines)
    return pad + _yaml_scalar(obj) + "\n"


# `receivers: otlp: protocols: grpc:` as the gRPC tests configure it (the documented example).
GRPC_SETTINGS = {
    "endpoint": "127.0.0.1:0",
    "max_recv_msg_size_mib": 4,
    "max_concurrent_streams": 100,
    "keepalive": {"server_parameters": {"max_connection_idle": "5m"}},
}


def build_config(output_path, max_request_body_size=1048576, send_batch_size=512, timeout="200ms",
                 receiver_endpoint="127.0.0.1:0", admin_endpoint="127.0.0.1:0", http=True, grpc=None,
                 exporter="file", service_graph=None, processors_before_batch=None, overrides=None):
    """The collector config the tests use: OTLP/HTTP receiver -> batch -> file exporter.

    grpc: settings for an OTLP/gRPC receiver next to the HTTP one (e.g. GRPC_SETTINGS), None for none;
    http=False leaves the HTTP one out. exporter: "file" (writing output_path), "nop" or "debug".
    service_graph: settings of a `service_graph` processor, placed before `batch` in the pipeline;
    None for none. processors_before_batch: more processors ({type: settings}, in order), after service_graph and
    before batch. overrides: a dict deep-merged into the result last (limits, auth, tls, service settings)."""
    protocols = {}
    if grpc is not None:
        protocols["grpc"] = dict({"endpoint": "127.0.0.1:0"}, **grpc)
    if http:
        protocols["http"] = {
            "endpoint": receiver_endpoint,
            "max_request_body_size": max_request_body_size,
        }
    if exporter == "file":
        exporters = {"file": {"path": output_path}}
    elif exporter in ("nop", "debug"):
        exporters = {exporter: {}}
    else:
        raise ValueError("unknown exporter %r" % (exporter,))
    processors = {}
    if service_graph is not None:
        processors["service_graph"] = service_graph
    processors.update(processors_before_batch or {})
    processors["batch"] = {
        "send_batch_size": send_batch_size,
        "timeout": timeout,
    }
    config = {
        "receivers": {
            "otlp": {
                "protocols": protocols,
            },
        },
        "processors": processors,
        "exporters": exporters,
        "service": {
            "admin": {"endpoint": admin_endpoint},
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": list(processors),
                    "exporters": list(exporters),
                },
            },
        },
    }
    return deep_merge(config, overrides or {})


def deep_merge(base, extra):
    """`base` with `extra` merged in: nested dicts merge, anything else replaces."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(path, config):
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_yaml(config))
    return path


# ---------------------------------------------------------------------------
# Prometheus text format parser
# ---------------------------------------------------------------------------

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class MetricsParseError(ValueError):
    pass


class MetricSet:
    """Samples from one scrape: {(name, sorted label tuple): value}, plus # TYPE and # HELP."""

    def __init__(self):
        self.samples = {}
        self.types = {}
        self.help = {}

    def value(self, name, labels=None, default=0.0, **kw):
        """The value of the series with exactly these labels (default if absent)."""
        lab = dict(labels or {}, **kw)
        return self.samples.get((name, tuple(sorted(lab.items()))), default)

    def has(self, name, labels=None, **kw):
        lab = dict(labels or {}, **kw)
        return (name, tuple(sorted(lab.items()))) in self.samples

    def series(self, name):
        """[(labels dict, value)] for every series of this metric name."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def total(self, name, labels=None, **kw):
        """Sum over all series of `name` whose labels include the given ones."""
        want = dict(labels or {}, **kw)
        return sum(v for labs, v in self.series(name) if all(labs.get(k) == x for k, x in want.items()))

    def names(self):
        return {k[0] for k in self.samples}


def _parse_labels(text, pos, line):
    """Parse `{a="b",c="d"}` starting at text[pos] == '{'; return (labels, new pos)."""
    assert text[pos] == "{"
    pos += 1
    labels = {}
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        m = _LABEL_NAME_RE.match(text, pos)
        if not m:
            raise MetricsParseError("bad label name in line: %r" % line)
        name = m.group(0)
        pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text) or text[pos] != "=":
            raise MetricsParseError("expected '=' in line: %r" % line)
        pos += 1
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text) or text[pos] != '"':
            raise MetricsParseError("expected '\"' in line: %r" % line)
        pos += 1
        val = []
        while True:
            if pos >= len(text):
                raise MetricsParseError("unterminated label value in line: %r" % line)
            c = text[pos]
            if c == "\\":
                if pos + 1 >= len(text):
                    raise MetricsParseError("bad escape in line: %r" % line)
                n = text[pos + 1]
                val.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
                pos += 2
            elif c == '"':
                pos += 1
                break
            else:
                val.append(c)
                pos += 1
        if name in labels:
            raise MetricsParseError("duplicate label %s in line: %r" % (name, line))
        labels[name] = "".join(val)
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        raise MetricsParseError("expected ',' or '}' in line: %r" % line)


def _parse_value(s, line):
    low = s.lower()
    if low in ("+inf", "inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low == "nan":
        return math.nan
    try:
        return float(s)
    except ValueError:
        raise MetricsParseError("bad sample value %r in line: %r" % (s, line))


def parse_metrics(text):
    """Parse the Prometheus text exposition format (version 0.0.4)."""
    ms = MetricSet()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                ms.types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "HELP":
                ms.help[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = _NAME_RE.match(line)
        if not m:
            raise MetricsParseError("bad metric name in line: %r" % raw)
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, raw)
        rest = line[pos:].split()
        if not rest or len(rest) > 2:
            raise MetricsParseError("expected value [timestamp] in line: %r" % raw)
        value = _parse_value(rest[0], raw)
        key = (name, tuple(sorted(labels.items())))
        if key in ms.samples:
            raise MetricsParseError("duplicate series in line: %r" % raw)
        ms.samples[key] = value
    return ms


# ---------------------------------------------------------------------------
# OTLP/JSON reading
# ---------------------------------------------------------------------------

ID_KEYS = ("traceId", "spanId", "parentSpanId")
KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def decode_any_value(v):
    """OTLP/JSON AnyValue -> Python value (int, float, str, bool, bytes, list, dict, or None)."""
    if not isinstance(v, dict):
        raise ValueError("AnyValue must be an object, got %r" % (v,))
    if not v:
        return None
    if len(v) != 1:
        raise ValueError("AnyValue must have exactly one field, got %r" % (v,))
    (k, x), = v.items()
    if k == "stringValue":
        return x
    if k == "boolValue":
        if not isinstance(x, bool):
            raise ValueError("boolValue must be a JSON boolean: %r" % (x,))
        return x
    if k == "intValue":
        if isinstance(x, bool) or not isinstance(x, (str, int)):
            raise ValueError("intValue must be a decimal string or integer: %r" % (x,))
        return int(x)
    if k == "doubleValue":
        if isinstance(x, str):
            return float({"Infinity": "inf", "-Infinity": "-inf", "NaN": "nan"}.get(x, x))
        return float(x)
    if k == "bytesValue":
        return base64.b64decode(x, validate=True)
    if k == "arrayValue":
        return [decode_any_value(e) for e in x.get("values", [])]
    if k == "kvlistValue":
        return decode_attributes(x.get("values", []))
    raise ValueError("unknown AnyValue field %r" % k)


def decode_attributes(kvs):
    out = {}
    for kv in kvs or []:
        out[kv["key"]] = decode_any_value(kv.get("value", {}))
    return out


@dataclass
class FlatSpan:
    """One span with its resource and scope, values decoded from OTLP/JSON."""
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: int
    end: int
    attributes: dict
    events: list          # [(name, time_unix_nano, attributes)]
    links: list           # [(trace_id, span_id, attributes)]
    status_code: int
    status_message: str
    resource: dict
    scope_name: str
    scope_version: str
    trace_state: str = ""
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def key(self):
        return (self.trace_id, self.span_id)


def _hex_id(v):
    if v is None:
        return ""
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-fA-F]*", v):
        raise ValueError("id is not hex: %r" % (v,))
    return v.lower()


def spans_of(request):
    """Flatten one ExportTraceServiceRequest (OTLP/JSON dict) into FlatSpans."""
    out = []
    for rs in request.get("resourceSpans", []) or []:
        resource = decode_attributes((rs.get("resource") or {}).get("attributes", []))
        for ss in rs.get("scopeSpans", []) or []:
            scope = ss.get("scope") or {}
            for sp in ss.get("spans", []) or []:
                st = sp.get("status") or {}
                out.append(FlatSpan(
                    trace_id=_hex_id(sp.get("traceId")),
                    span_id=_hex_id(sp.get("spanId")),
                    parent_span_id=_hex_id(sp.get("parentSpanId")),
                    name=sp.get("name", ""),
                    kind=int(sp.get("kind", 0)),
                    start=int(sp.get("startTimeUnixNano", 0)),
                    end=int(sp.get("endTimeUnixNano", 0)),
                    attributes=decode_attributes(sp.get("attributes", [])),
                    events=[(e.get("name", ""), int(e.get("timeUnixNano", 0)),
                             decode_attributes(e.get("attributes", []))) for e in sp.get("events", []) or []],
                    links=[(_hex_id(ln.get("traceId")), _hex_id(ln.get("spanId")),
                            decode_attributes(ln.get("attributes", []))) for ln in sp.get("links", []) or []],
                    status_code=int(st.get("code", 0)),
                    status_message=st.get("message", ""),
                    resource=resource,
                    scope_name=scope.get("name", ""),
                    scope_version=scope.get("version", ""),
                    trace_state=sp.get("traceState", ""),
                    raw=sp,
                ))
    return out


def _convert_ids(obj, fn):
    if isinstance(obj, dict):
        return {k: (fn(v) if k in ID_KEYS and isinstance(v, str) else _convert_ids(v, fn)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert_ids(x, fn) for x in obj]
    return obj


def otlp_json_to_proto_json(obj):
    """OTLP/JSON (hex ids) -> proto3 canonical JSON (base64 bytes), for json_format."""
    return _convert_ids(obj, lambda h: base64.b64encode(bytes.fromhex(h)).decode("ascii"))


def proto_json_to_otlp_json(obj):
    return _convert_ids(obj, lambda b: base64.b64decode(b).hex())


def request_from_protobuf(data):
    """Binary ExportTraceServiceRequest -> OTLP/JSON dict."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    msg = trace_service_pb2.ExportTraceServiceRequest()
    msg.ParseFromString(data)
    return proto_json_to_otlp_json(json_format.MessageToDict(msg, use_integers_for_enums=True))


def request_to_protobuf(request):
    """OTLP/JSON dict -> ExportTraceServiceRequest message; raises on any key protobuf does not know."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    msg = trace_service_pb2.ExportTraceServiceRequest()
    json_format.Parse(json.dumps(otlp_json_to_proto_json(request)), msg, ignore_unknown_fields=False)
    return msg


def parse_jsonl(data, allow_partial_tail=False):
    """Parse OTLP/JSON lines. With allow_partial_tail, an unterminated last line is ignored
    (the writer may be in the middle of it)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    lines = text.split("\n")
    tail = lines.pop()  # "" when the text ends with a newline
    if tail.strip() and not allow_partial_tail:
        lines.append(tail)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError("line %d is not JSON (%s): %.200r" % (i + 1, e, line))
    return out


def load_requests(path):
    """Read a trace file as replay would: .jsonl, .json, .pb, and any of them gzipped (.gz)."""
    with open(path, "rb") as f:
        data = f.read()
    name = path
    if name.endswith(".gz"):
        data = gzip.decompress(data)
        name = name[:-3]
    if name.endswith(".pb"):
        return [request_from_protobuf(data)]
    if name.endswith(".jsonl"):
        return parse_jsonl(data)
    if name.endswith(".json"):
        return [json.loads(data)]
    raise ValueError("unknown trace file type: %s" % path)


def load_spans(path):
    return [s for r in load_requests(path) for s in spans_of(r)]


def read_output_spans(path, allow_partial_tail=True):
    """Spans in the file exporter's output so far ([] if the file does not exist yet)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return [s for r in parse_jsonl(data, allow_partial_tail) for s in spans_of(r)]


def wait_for_output_spans(path, want, timeout=10.0, interval=0.05):
    """Poll the exporter's output until `want(spans)` is true; returns the spans.
    `want` may be an int (at least that many spans) or a predicate."""
    pred = (lambda spans: len(spans) >= want) if isinstance(want, int) else want
    deadline = time.monotonic() + timeout
    spans = []
    while True:
        spans = read_output_spans(path)
        if pred(spans):
            return spans
        if time.monotonic() >= deadline:
            raise AssertionError("file output %s did not reach the expected state within %.0fs; "
                                 "it has %d spans" % (path, timeout, len(spans)))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Hand-built OTLP/JSON: spans of one trace, tagged with the service that reports each
# ---------------------------------------------------------------------------

def otlp_any(v):
    """A Python value as an OTLP/JSON AnyValue."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


class Trace:
    """Spans of one trace, each tagged with the service (resource) that reports it."""

    def __init__(self, base_ns=None):
        self.trace_id = os.urandom(16).hex()
        self.base = base_ns if base_ns is not None else time.time_ns() - 10 * 1_000_000_000
        self.spans = []   # (service, span json)

    def span(self, service, name, kind, parent=None, start_s=0.0, dur_s=0.01, attrs=None, status=None):
        """Add a span; parent is the parent's span id (hex) or None. Returns the span id."""
        sid = os.urandom(8).hex()
        sp = {
            "traceId": self.trace_id,
            "spanId": sid,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(self.base + int(start_s * 1e9)),
            "endTimeUnixNano": str(self.base + int((start_s + dur_s) * 1e9)),
        }
        if parent:
            sp["parentSpanId"] = parent
        if attrs:
            sp["attributes"] = [{"key": k, "value": otlp_any(v)} for k, v in attrs.items()]
        if status is not None:
            sp["status"] = {"code": status}
        self.spans.append((service, sp))
        return sid


def otlp_request(tagged_spans):
    """One ExportTraceServiceRequest: one resourceSpans per service, in first-seen order."""
    order, groups = [], {}
    for service, sp in tagged_spans:
        if service not in groups:
            groups[service] = []
            order.append(service)
        groups[service].append(sp)
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]},
        "scopeSpans": [{"scope": {"name": "agenttrace-interop"}, "spans": groups[s]}],
    } for s in order]}


ANY_VALUE_KEYS = {"stringValue", "boolValue", "intValue", "doubleValue", "bytesValue"}


def explicit_defaults(obj, path="$"):
    """Paths of fields holding a proto3 default value ("" 0 "0" false []) outside AnyValue,
    which OTLP/JSON writers should omit."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = "%s.%s" % (path, k)
            if k in ANY_VALUE_KEYS:
                continue
            if v in ("", "0", []) or (v == 0 and not isinstance(v, dict)) or v is False:
                found.append(p)
            else:
                found.extend(explicit_defaults(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found.extend(explicit_defaults(v, "%s[%d]" % (path, i)))
    return found


# ---------------------------------------------------------------------------
# Raw HTTP
# ---------------------------------------------------------------------------

@dataclass
class HTTPResult:
    status: int
    headers: dict   # lower-cased names
    body: bytes

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def http_request(address, method, path, body=None, headers=None, timeout=15.0, ssl_context=None):
    """One request on a fresh connection (HTTPS with `ssl_context`). The body is sent even if the
    server answers early (e.g. 413); the response is still read in that case."""
    host, port = split_address(address)
    if ssl_context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        send_error = None
        if body:
            try:
                view = memoryview(body)
                for i in range(0, len(view), 256 * 1024):
                    conn.send(view[i:i + 256 * 1024])
            except (BrokenPipeError, ConnectionResetError) as e:
                send_error = e  # the server may have answered and closed early; read the answer
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as e:
            raise AssertionError("%s %s: no HTTP response (%r; sending the body failed with %r)"
                                 % (method, path, e, send_error))
        return HTTPResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def split_address(address):
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    return host, int(port)


def gzip_bomb(uncompressed_size=100 * 1024 * 1024):
    """A small gzip member that inflates to `uncompressed_size` zero bytes."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    chunk = bytes(1024 * 1024)
    parts = []
    left = uncompressed_size
    while left > 0:
        n = min(left, len(chunk))
        parts.append(co.compress(chunk[:n]))
        left -= n
    parts.append(co.flush())
    return b"".join(parts)


# ---------------------------------------------------------------------------
# gRPC (grpcio)
# ---------------------------------------------------------------------------

GRPC_EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# Channel options for every test client: never route loopback traffic through a proxy from the
# environment, and no client-side message size limits (the server's limit is what is tested).
GRPC_CHANNEL_OPTIONS = (
    ("grpc.enable_http_proxy", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)


def grpc_channel(address):
    """An insecure (h2c) grpcio channel to host:port; use it as a context manager."""
    import grpc
    return grpc.insecure_channel(address, options=list(GRPC_CHANNEL_OPTIONS))


@dataclass
class GRPCResult:
    code: object        # grpc.StatusCode
    details: str
    response: object    # ExportTraceServiceResponse, or None unless the code is OK


def grpc_export(channel, message, compression=None, timeout=10.0, method=GRPC_EXPORT_PATH):
    """One unary call of `method` with `message` (an ExportTraceServiceRequest or raw bytes, sent as
    they are); returns the status instead of raising it."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    body = message if isinstance(message, bytes) else message.SerializeToString()
    call = channel.unary_unary(method, request_serializer=None,
                               response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString)
    try:
        response, c = call.with_call(body, timeout=timeout, compression=compression)
        return GRPCResult(c.code(), c.details() or "", response)
    except grpc.RpcError as e:
        return GRPCResult(e.code(), e.details() or "", None)


def grpc_frame(message, compressed=False, declared_length=None):
    """gRPC's Length-Prefixed-Message: flag byte, 4-byte big-endian length, message.
    declared_length overrides the length the prefix states (for malformed framing)."""
    n = len(message) if declared_length is None else declared_length
    return bytes([1 if compressed else 0]) + n.to_bytes(4, "big") + message


# ---------------------------------------------------------------------------
# Raw HTTP/2 (h2c with prior knowledge)
# ---------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE",
                  6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


@dataclass
class H2Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def type_name(self):
        return H2_FRAME_TYPES.get(self.type, "0x%02x" % self.type)


def parse_h2_frames(data):
    """Split bytes a server sent into HTTP/2 frames; an incomplete frame at the end is ignored."""
    frames = []
    pos = 0
    while len(data) - pos >= 9:
        length = int.from_bytes(data[pos:pos + 3], "big")
        if len(data) - pos - 9 < length:
            break
        stream_id = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        frames.append(H2Frame(data[pos + 3], data[pos + 4], stream_id, bytes(data[pos + 9:pos + 9 + length])))
        pos += 9 + length
    return frames


def grpc_request_headers(address, path=GRPC_EXPORT_PATH, content_type="application/grpc", extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":authority", address), (":path", path),
            ("content-type", content_type), ("te", "trailers")] + list(extra)


@dataclass
class H2Response:
    status: int = None          # :status of the response headers, None if none arrived
    headers: dict = field(default_factory=dict)    # response headers (Trailers-Only: the status too)
    trailers: dict = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False         # the server ended its side of the stream
    reset_code: int = None      # RST_STREAM error code, if the server reset the stream
    goaway_code: int = None     # GOAWAY error code, if the server sent one
    connection_closed: bool = False
    request_finished: bool = False  # whether the client had ended its side when the response ended

    @property
    def grpc_status(self):
        """grpc-status from the trailers, or from the headers of a Trailers-Only response."""
        v = self.trailers.get("grpc-status", self.headers.get("grpc-status"))
        return None if v is None else int(v)

    @property
    def grpc_message(self):
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))


class H2Client:
    """An h2c client connection with prior knowledge (hyper-h2 over a plain socket), driven step by step:
    open streams, send DATA under flow control, and read until a condition holds."""

    def __init__(self, address, timeout=10.0):
        import h2.config
        import h2.connection

        self.address = address
        self.timeout = timeout
        self.responses = {}         # stream id -> H2Response
        self.goaway_code = None     # error code of the server's GOAWAY, if one arrived
        self.goaway_last_stream_id = None
        self.closed = False         # the server closed the connection
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        host, port = split_address(address)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn.initiate_connection()
        self._flush()

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True

    def send_headers(self, headers, end_stream=False):
        """Open a stream; returns its id."""
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = H2Response()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        self.responses[sid].request_finished = end_stream
        self._flush()
        return sid

    def send_data(self, sid, data, end_stream=False):
        """Send `data` on stream `sid` as the flow-control windows allow; stops early if the server
        ends or resets the stream or closes the connection. Returns whether everything was sent."""
        resp = self.responses[sid]
        view = memoryview(data)
        while True:
            if resp.ended or resp.reset_code is not None or self.closed:
                return False
            n = min(len(view), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if n == 0 and view:
                if not self.read_once(self.timeout):  # wait for a WINDOW_UPDATE
                    return False
                continue
            last = n == len(view)
            self.conn.send_data(sid, bytes(view[:n]), end_stream=(end_stream and last))
            view = view[n:]
            self._flush()
            if last:
                resp.request_finished = end_stream
                return True

    def read_once(self, timeout):
        """One read (waiting up to `timeout`); handles the events. False once the connection is gone
        or nothing arrived in time."""
        import h2.events
        import h2.exceptions

        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(chunk)
        except h2.exceptions.ProtocolError as e:
            raise AssertionError("the server broke the HTTP/2 protocol: %r" % (e,))
        for ev in events:
            resp = self.responses.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.ResponseReceived) and resp:
                resp.headers = dict(ev.headers)
                resp.status = int(resp.headers.get(":status", 0))
            elif isinstance(ev, h2.events.TrailersReceived) and resp:
                resp.trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived) and resp:
                resp.data += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and resp:
                resp.ended = True
            elif isinstance(ev, h2.events.StreamReset) and resp:
                resp.reset_code = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway_code = int(ev.error_code)
                self.goaway_last_stream_id = ev.last_stream_id
        self._flush()
        return True

    def read_until(self, predicate, timeout=None):
        """Read until predicate() holds (True), the connection closes or the timeout passes (False)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return predicate()
            self.read_once(left)
        return True

    def finished(self, sid):
        """Whether the server is done with stream `sid` (ended, reset, or the connection is gone)."""
        r = self.responses[sid]
        return r.ended or r.reset_code is not None or self.closed

    def wait_response(self, sid, timeout=None):
        """Read until the server is done with `sid`; then also take an RST_STREAM that follows an early
        answer. Fails if the server is not done within the timeout."""
        if not self.read_until(lambda: self.finished(sid), timeout):
            raise AssertionError("no complete HTTP/2 response on stream %d within %.0fs: %r"
                                 % (sid, self.timeout if timeout is None else timeout, self.responses[sid]))
        r = self.responses[sid]
        if r.ended and r.reset_code is None and not r.request_finished:
            self.read_until(lambda: r.reset_code is not None, timeout=0.2)
        r.connection_closed = self.closed
        r.goaway_code = self.goaway_code
        return r


def h2_request(address, headers, data=b"", end_stream=True, timeout=10.0):
    """One request on a fresh h2c connection, read until the server ends or resets the stream or
    closes the connection.

    With end_stream=False the request body stays open after `data`: any response is then one the
    server sent before the client finished sending."""
    with H2Client(address, timeout) as c:
        sid = c.send_headers(headers, end_stream=(end_stream and not data))
        if data:
            c.send_data(sid, data, end_stream=end_stream)
        return c.wait_response(sid)


def h2_frame(frame_type, flags, stream_id, payload=b""):
    """One HTTP/2 frame: 9-byte header, then the payload."""
    return (len(payload).to_bytes(3, "big") + bytes([frame_type, flags]) + stream_id.to_bytes(4, "big")
            + payload)


class H2FrameClient:
    """HTTP/2 at the frame level, with HPACK from the hpack package, for what hyper-h2's state machine
    refuses: going on with a stream after the server's GOAWAY (RFC 9113 §6.8 lets a client finish the
    streams up to the GOAWAY's last stream id). Bodies must fit in the default 65 535-byte windows."""

    def __init__(self, address, timeout=10.0):
        import hpack

        self.timeout = timeout
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.frames = []           # every H2Frame received, in order
        self.headers = {}          # stream id -> [decoded header dict, ...] (response headers, trailers)
        self.data = {}             # stream id -> bytes
        self.ended = set()         # stream ids the server ended
        self.resets = {}           # stream id -> RST_STREAM error code
        self.goaway = None         # (last_stream_id, error_code)
        self.closed = False
        self._block = None         # (stream id, flags, fragments) of a header block awaiting CONTINUATION
        host, port = split_address(address)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.send(H2_PREFACE + h2_frame(4, 0, 0))  # preface, empty SETTINGS

    def send(self, data):
        """False if the connection is gone."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def close(self):
        self.sock.close()

    def send_headers(self, stream_id, headers, end_stream=False):
        return self.send(h2_frame(1, 0x4 | (0x1 if end_stream else 0), stream_id, self.encoder.encode(headers)))

    def send_data(self, stream_id, data, end_stream=False):
        chunks = [data[i:i + 16384] for i in range(0, len(data), 16384)] or [b""]
        frames = b"".join(h2_frame(0, 0x1 if (end_stream and i == len(chunks) - 1) else 0, stream_id, c)
                          for i, c in enumerate(chunks))
        return self.send(frames)

    def _handle(self, f):
        self.frames.append(f)
        if f.type == 4 and not f.flags & 0x1:
            self.send(h2_frame(4, 0x1, 0))                   # SETTINGS ACK
        elif f.type == 6 and not f.flags & 0x1:
            self.send(h2_frame(6, 0x1, 0, f.payload))        # PING ACK
        elif f.type == 7:
            self.goaway = (int.from_bytes(f.payload[0:4], "big") & 0x7FFFFFFF, int.from_bytes(f.payload[4:8], "big"))
        elif f.type == 3:
            self.resets[f.stream_id] = int.from_bytes(f.payload[0:4], "big")
        elif f.type == 0:
            payload = f.payload
            if f.flags & 0x8:                                 # PADDED
                payload = payload[1:len(payload) - payload[0]]
            self.data[f.stream_id] = self.data.get(f.stream_id, b"") + payload
            if f.payload:                                     # give the window back
                inc = len(f.payload).to_bytes(4, "big")
                self.send(h2_frame(8, 0, 0, inc) + h2_frame(8, 0, f.stream_id, inc))
            if f.flags & 0x1:
                self.ended.add(f.stream_id)
        elif f.type in (1, 9):
            if f.type == 1:
                payload = f.payload
                if f.flags & 0x8:
                    payload = payload[1:len(payload) - payload[0]]
                if f.flags & 0x20:                            # PRIORITY
                    payload = payload[5:]
                self._block = (f.stream_id, f.flags, [payload])
            else:
                self._block[2].append(f.payload)
            if f.flags & 0x4:                                 # END_HEADERS
                sid, flags, parts = self._block
                self._block = None
                self.headers.setdefault(sid, []).append(dict(self.decoder.decode(b"".join(parts))))
                if flags & 0x1:
                    self.ended.add(sid)

    def read_until(self, predicate, timeout=None):
        """Read frames until predicate() holds (True), the connection closes or the timeout passes (False)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return predicate()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self.buffer += chunk
            frames = parse_h2_frames(self.buffer)
            self.buffer = self.buffer[sum(9 + len(f.payload) for f in frames):]
            for f in frames:
                self._handle(f)
        return True

    def grpc_status(self, stream_id):
        """grpc-status in the last header block of the stream (trailers, or a Trailers-Only response)."""
        blocks = self.headers.get(stream_id) or [{}]
        v = blocks[-1].get("grpc-status")
        return None if v is None else int(v)


def raw_exchange(address, payload, timeout=10.0):
    """Send raw bytes on a fresh TCP connection and read until the server closes it.
    Returns everything the server sent; fails if it does not close within `timeout`."""
    host, port = split_address(address)
    got = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not close the connection within %.0fs; it sent %r"
                                     % (timeout, bytes(got[:300])))
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return bytes(got)


H2LOAD_REQUESTS_RE = re.compile(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                                r"(\d+) failed, (\d+) errored, (\d+) timeout$", re.MULTILINE)
H2LOAD_STATUS_RE = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$", re.MULTILINE)


def parse_h2load_output(stdout):
    """The `requests:` and `status codes:` lines of h2load's summary, as a dict of ints."""
    m = H2LOAD_REQUESTS_RE.search(stdout)
    s = H2LOAD_STATUS_RE.search(stdout)
    if not m or not s:
        raise AssertionError("h2load output has no 'requests:' and 'status codes:' summary:\n%s" % stdout[-3000:])
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    out = dict(zip(keys, map(int, m.groups())))
    out.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, s.groups())))
    return out


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class Collector:
    """An `agenttrace serve` process with its config, output file and bound addresses."""

    def __init__(self, binary, workdir, **config_kw):
        self.binary = binary
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.output = os.path.join(self.workdir, "traces.jsonl")
        self.config = build_config(self.output, **config_kw)
        self.config_path = write_config(os.path.join(self.workdir, "agenttrace.yaml"), self.config)
        self.stderr_path = os.path.join(self.workdir, "stderr.log")
        self.proc = None
        self.stdout_lines = []
        self._lines = queue.Queue()
        self.receivers = {}   # (receiver, protocol) -> address
        self.admin = None
        self.returncode = None
        self.stop_requested = False   # SIGTERM sent (by stop() or terminate())
        self.admin_headers = {}       # sent with every admin_get (an Authorization header when admin auth is on)
        self.admin_ssl = None         # an ssl.SSLContext when the admin API serves TLS
        self.cpus = None              # a set of CPU numbers: the process's affinity (as `taskset -c`) when set

    # -- life cycle --

    def start(self, timeout=30.0):
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
            cwd=self.workdir, start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, self.cpus)) if self.cpus else None,
        )
        t = threading.Thread(target=self._pump, name="agenttrace-stdout", daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._abort()
                raise AssertionError("agenttrace serve did not print %r within %.0fs\n%s"
                                     % (READY_LINE, timeout, self.describe()))
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=5)
                raise AssertionError("agenttrace serve exited with code %s before it was ready\n%s"
                                     % (self.proc.returncode, self.describe()))
            m = RECEIVER_LINE_RE.match(line)
            if m:
                self.receivers[(m.group(1), m.group(2))] = m.group(3)
                continue
            m = ADMIN_LINE_RE.match(line)
            if m:
                self.admin = m.group(1)
                continue
            if line == READY_LINE:
                break
        want = [("otlp", p) for p in self.config["receivers"]["otlp"]["protocols"]]
        if any(w not in self.receivers for w in want) or self.admin is None:
            self._abort()
            raise AssertionError("agenttrace printed %r without the listening lines for the otlp %s "
                                 "receiver and the admin server\n%s"
                                 % (READY_LINE, " and ".join(p for _, p in want), self.describe()))
        for addr in [self.receivers[w] for w in want] + [self.admin]:
            host, port = split_address(addr)
            if port == 0:
                self._abort()
                raise AssertionError("agenttrace reported port 0 instead of the bound port: %s" % addr)
        return self

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _abort(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def terminate(self):
        """Send SIGTERM without waiting (wait with stop(), which does not signal again)."""
        if self.proc is not None and self.proc.poll() is None and not self.stop_requested:
            self.proc.send_signal(signal.SIGTERM)
        self.stop_requested = True

    def stop(self, timeout=15.0):
        """SIGTERM (unless terminate() sent it) and wait; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.returncode = None
                self._close()
                return None
        self.returncode = self.proc.returncode
        self._close()
        return self.returncode

    def _close(self):
        try:
            self._stderr.close()
        except Exception:
            pass

    def describe(self):
        try:
            with open(self.stderr_path, "rb") as f:
                err = f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            err = ""
        return ("command: %s serve --config %s\nstdout:\n%s\nstderr (tail):\n%s"
                % (self.binary, self.config_path, "\n".join(self.stdout_lines[-40:]), err))

    # -- addresses and requests --

    @property
    def http_address(self):
        return self.receivers[("otlp", "http")]

    @property
    def endpoint(self):
        return "http://%s" % self.http_address

    @property
    def grpc_address(self):
        return self.receivers[("otlp", "grpc")]

    def post_traces(self, body, content_type="application/x-protobuf", headers=None, path="/v1/traces",
                    method="POST"):
        h = {"Content-Type": content_type} if content_type is not None else {}
        h.update(headers or {})
        return http_request(self.http_address, method, path, body, h)

    def admin_get(self, path):
        return http_request(self.admin, "GET", path, headers=self.admin_headers, ssl_context=self.admin_ssl)

    def scrape(self):
        r = self.admin_get("/metrics")
        assert r.status == 200, "GET /metrics answered %d: %r" % (r.status, r.body[:300])
        return parse_metrics(r.body.decode("utf-8"))

    def output_spans(self):
        return read_output_spans(self.output)

    def wait_for_spans(self, want, timeout=10.0):
        return wait_for_output_spans(self.output, want, timeout)


def run_cli(binary, args, timeout=60.0, cwd=None):
    """Run `agenttrace ARGS...`; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([binary] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or REPO_ROOT)


@dataclass
class ReplaySummary:
    files: int
    spans_read: int
    accepted: int
    rejected: int
    exporters: dict   # name -> (sent, failed)


def parse_replay_output(stdout):
    """The final lines of `agenttrace replay`: the replay line, then one line per exporter."""
    lines = [ln.rstrip("\r") for ln in stdout.splitlines() if ln.strip()]
    exporters = {}
    i = len(lines) - 1
    while i >= 0 and EXPORTER_LINE_RE.match(lines[i]):
        m = EXPORTER_LINE_RE.match(lines[i])
        exporters[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        i -= 1
    if i < 0 or not REPLAY_LINE_RE.match(lines[i]):
        raise AssertionError("replay output does not end with 'replay: files=N spans_read=N accepted=N "
                             "rejected=N' followed by exporter lines:\n%s" % stdout[-2000:])
    m = REPLAY_LINE_RE.match(lines[i])
    return ReplaySummary(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4)), exporters)


def free_port():
    """A loopback port that was free a moment ago (for negative tests only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# (case, transport, answer) for every hostile input test_hostile.py sent; printed in the terminal summary.
HOSTILE_REPORT = []


# ---------------------------------------------------------------------------
# A real Prometheus (Debian's `prometheus`) scraping a collector
# ---------------------------------------------------------------------------

def prometheus_config(target, interval="1s"):
    """A Prometheus config scraping one AgentTrace admin address every `interval`."""
    return ("global:\n  scrape_interval: %s\n  evaluation_interval: %s\n"
            "scrape_configs:\n  - job_name: agenttrace\n    scrape_interval: %s\n    scrape_timeout: %s\n"
            "    metrics_path: /metrics\n    static_configs:\n      - targets: ['%s']\n"
            % (interval, interval, interval, interval, target))


class Prometheus:
    """`prometheus` on a free loopback port with its own config file and storage under `workdir`.

    config_text: the whole prometheus.yml; `config(address)` may be a callable of the server's own
    address instead (for a config that also scrapes Prometheus itself). By default prometheus_config(target)."""

    def __init__(self, binary, workdir, target=None, config_text=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        if config_text is None:
            config_text = prometheus_config(target)
        elif callable(config_text):
            config_text = config_text(self.address)
        self.config = os.path.join(self.workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(self.workdir, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--config.file=" + self.config, "--storage.tsdb.path=" + os.path.join(self.workdir, "data"),
             "--web.listen-address=" + self.address],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir,
            start_new_session=True)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited with %s\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if http_request(self.address, "GET", "/-/ready", timeout=2).status == 200:
                    return self
            except (OSError, AssertionError):
                pass
            time.sleep(0.2)
        raise AssertionError("prometheus not ready within %.0fs\n%s" % (timeout, self.log_tail()))

    def query(self, promql):
        """The instant vector of `promql` now: [{"metric": {labels}, "value": [ts, "v"]}, ...]."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        r = http_request(self.address, "GET", path)
        assert r.status == 200, "prometheus GET %s answered %d: %r" % (path, r.status, r.body[:300])
        d = r.json()
        assert d.get("status") == "success" and d["data"]["resultType"] == "vector", d
        return d["data"]["result"]

    def targets(self):
        r = http_request(self.address, "GET", "/api/v1/targets")
        return r.body.decode("utf-8", "replace")[:2000]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


# ---------------------------------------------------------------------------
# An alert receiver: webhook, Slack incoming webhook and PagerDuty Events API v2 in one tiny server
# ---------------------------------------------------------------------------

class AlertReceiver:
    """Records every POST (monotonic arrival time, path, headers, parsed JSON) and answers per path:
    /hook 200, /slack 200 "ok" (as Slack does), /v2/enqueue 202 with PagerDuty's success body,
    /refuse 400."""

    def __init__(self):
        self.posts = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                # Headers and body leave in two writes; without this, Nagle's algorithm and the client's
                # delayed ACK hold the body back ~40 ms per request, which would be the receiver's latency.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    parsed = json.loads(body.decode("utf-8"))
                except ValueError as e:
                    parsed = e
                with receiver.cond:
                    receiver.posts.append({"time": arrived, "path": self.path, "json": parsed, "raw": body,
                                           "headers": {k.lower(): v for k, v in self.headers.items()}})
                    receiver.cond.notify_all()
                if self.path == "/refuse":
                    status, answer = 400, b'{"error":"refused by the test"}'
                elif self.path == "/v2/enqueue":
                    status, answer = 202, json.dumps({"status": "success", "message": "Event processed",
                                                      "dedup_key": parsed.get("dedup_key", "")
                                                      if isinstance(parsed, dict) else ""}).encode()
                elif self.path == "/slack":
                    status, answer = 200, b"ok"
                else:
                    status, answer = 200, b"{}"
                self.send_response(status)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)

    def at(self, path, rule=None):
        """The posts to `path` so far (for one rule, by the payload's rule field)."""
        with self.cond:
            posts = [p for p in self.posts if p["path"] == path]
        return [p for p in posts if rule is None or rule_of(p) == rule]

    def wait(self, path, n=1, rule=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.at(path, rule)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s received %d alerts%s within %.0fs, want %d; all posts: %s"
                                         % (path, len(self.at(path, rule)), " of %s" % rule if rule else "", timeout,
                                            n, [(p["path"], rule_of(p)) for p in self.posts]))
                self.cond.wait(min(left, 0.05))
        return self.at(path, rule)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def rule_of(post):
    """The rule an alert POST is about, whichever sink's payload it is."""
    body = post["json"]
    if not isinstance(body, dict):
        return None
    if "rule" in body:
        return body["rule"]
    if isinstance(body.get("payload"), dict):
        return body["payload"].get("class")
    m = re.search(r"\] (\S+)", body.get("text", "")) if isinstance(body.get("text"), str) else None
    return m.group(1).rstrip(":") if m else None
