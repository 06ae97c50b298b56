"""What the exporters must send, computed from the OTLP spans that went in, following
docs/exporter-mappings.md section by section (the section numbers are quoted).

  * zipkin_mismatches(sent, received)  -- OTLPSpan vs. a Zipkin v2 span in JSON form (fakes.ZipkinSpan.span)
  * jaeger_mismatches(sent, received)  -- OTLPSpan vs. fakes.JaegerSpan (span + its Batch's Process)
  * otlp_mismatches(sent, received)    -- OTLPSpan vs. OTLPSpan (forwarded unchanged)

Each returns a list of human-readable differences ("" free when the span is right).
"""

import base64
import ipaddress
import json
import math
from decimal import Decimal

UNKNOWN_SERVICE = "unknown_service"

OTLP_KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
ZIPKIN_KIND = {2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
JAEGER_KIND = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

# Jaeger ValueType numbers (model.proto)
V_STRING, V_BOOL, V_INT64, V_FLOAT64, V_BINARY = 0, 1, 2, 3, 4
V_NAMES = {0: "STRING", 1: "BOOL", 2: "INT64", 3: "FLOAT64", 4: "BINARY"}
CHILD_OF, FOLLOWS_FROM = 0, 1


# ---------------------------------------------------------------------------
# §0.1 attribute values as strings
# ---------------------------------------------------------------------------

def es6_number(x):
    """ECMAScript Number::toString of a double (shortest round-trip digits)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    d = Decimal(repr(abs(x))).normalize()
    _, digits, exp = d.as_tuple()
    s = "".join(map(str, digits))
    k = len(s)
    n = exp + k
    if k <= n <= 21:
        out = s + "0" * (n - k)
    elif 0 < n <= 21:
        out = s[:n] + "." + s[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + s
    else:
        e = n - 1
        es = ("+" if e >= 0 else "-") + str(abs(e))
        out = (s + "e" + es) if k == 1 else (s[0] + "." + s[1:] + "e" + es)
    return sign + out


def raw_value(v):
    """AnyValue -> the Python value its JSON text must parse to (bytes as base64 strings)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if which == "array_value":
        return [raw_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: raw_value(kv.value) for kv in v.kvlist_value.values}
    raise ValueError("unknown AnyValue %s" % which)


class JsonText:
    """An expected string that must be JSON text equal to `value` (types checked strictly)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "JSON %s" % json.dumps(self.value, ensure_ascii=False)

    def check(self, actual):
        if not isinstance(actual, str):
            return "want JSON text %r, got %r" % (self, actual)
        try:
            parsed = json.loads(actual)
        except ValueError:
            return "want JSON text %r, got %r (not JSON)" % (self, actual)
        if not json_equal(parsed, self.value):
            return "want JSON text %r, got %r" % (self, actual)
        return None


def json_equal(a, b):
    if isinstance(b, bool) or isinstance(a, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(b, (int, float)) and isinstance(a, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(b, dict):
        return isinstance(a, dict) and set(a) == set(b) and all(json_equal(a[k], b[k]) for k in b)
    return type(a) is type(b) and a == b


def stringify(v):
    """§0.1: AnyValue -> expected tag value (a str, or a JsonText for arrays/maps)."""
    which = v.WhichOneof("value")
    if which is None:
        return ""
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "int_value":
        return str(v.int_value)
    if which == "double_value":
        return es6_number(v.double_value)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return JsonText(raw_value(v))


def check_value(expected, actual):
    """None if `actual` matches `expected` (a plain value, or an object with .check)."""
    if hasattr(expected, "check"):
        return expected.check(actual)
    if isinstance(expected, float) and isinstance(actual, float) and math.isnan(expected) and math.isnan(actual):
        return None
    if type(expected) is not type(actual) or expected != actual:
        return "want %r, got %r" % (expected, actual)
    return None


def compare_maps(what, expected, actual, out):
    for k in sorted(set(expected) | set(actual)):
        if k not in actual:
            out.append("%s: missing key %r (want %r)" % (what, k, expected[k]))
        elif k not in expected:
            out.append("%s: unexpected key %r = %r" % (what, k, actual[k]))
        else:
            err = check_value(expected[k], actual[k])
            if err:
                out.append("%s[%r]: %s" % (what, k, err))


def attr_map(kvs):
    """Repeated KeyValue -> {key: AnyValue} (a later duplicate key wins, as §0.3 says)."""
    return {kv.key: kv.value for kv in kvs}


def service_name(resource):
    for kv in resource.attributes:
        if kv.key == "service.name" and kv.value.WhichOneof("value") == "string_value" and kv.value.string_value:
            return kv.value.string_value
    return UNKNOWN_SERVICE


def span_label(o):
    return "span %r (%s/%s)" % (o.span.name, o.span.trace_id.hex(), o.span.span_id.hex())


# ---------------------------------------------------------------------------
# §1 Zipkin
# ---------------------------------------------------------------------------

# CLIENT, PRODUCER, INTERNAL: zipkin.md's "Remote endpoint" ranking, which it gives for spans that
# "resolve to either SpanKind.CLIENT or SpanKind.PRODUCER".
REMOTE_SERVICE_KEYS = ["peer.service", "server.address", "net.peer.name", "server.socket.domain",
                       "net.sock.peer.name", "peer.hostname", "peer.address", "db.name"]
REMOTE_ADDRESS_KEYS = [("network.peer.address", "network.peer.port"),
                       ("server.socket.address", "server.socket.port"),
                       ("net.sock.peer.addr", "net.sock.peer.port"),
                       ("net.peer.ip", "net.peer.port")]
# SERVER (2) and CONSUMER (5): the semantic conventions make server.address (and net.peer.name) the
# span's own host there, so only attributes naming the caller count (§1.1): peer.service, then
# client.address when it is a host name; the address from the peer socket or client.address.
INCOMING_KINDS = (2, 5)
INCOMING_SERVICE_KEYS = ["peer.service", "client.address"]
INCOMING_ADDRESS_KEYS = [("network.peer.address", "network.peer.port"),
                         ("net.sock.peer.addr", "net.sock.peer.port"),
                         ("net.peer.ip", "net.peer.port"),
                         ("client.address", "client.port")]


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _port(v):
    if v is None:
        return None
    which = v.WhichOneof("value")
    if which == "int_value":
        p = v.int_value
    elif which == "string_value" and v.string_value.isdigit():
        p = int(v.string_value)
    else:
        return None
    return p if 1 <= p <= 65535 else None


def expected_remote_endpoint(attrs, kind=3):
    """§1.1 -> dict or None."""
    incoming = kind in INCOMING_KINDS
    ep = {}
    for k in (INCOMING_SERVICE_KEYS if incoming else REMOTE_SERVICE_KEYS):
        v = attrs.get(k)
        if v is not None and v.WhichOneof("value") == "string_value" and v.string_value:
            if k == "client.address" and _is_ip(v.string_value):
                continue
            ep["serviceName"] = v.string_value
            break
    for ak, pk in (INCOMING_ADDRESS_KEYS if incoming else REMOTE_ADDRESS_KEYS):
        v = attrs.get(ak)
        if v is None or v.WhichOneof("value") != "string_value":
            continue
        try:
            ip = ipaddress.ip_address(v.string_value)
        except ValueError:
            continue
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ep["ipv4"] = str(ip.ipv4_mapped)
        elif ip.version == 4:
            ep["ipv4"] = str(ip)
        else:
            ep["ipv6"] = str(ip)
        p = _port(attrs.get(pk))
        if p is not None:
            ep["port"] = p
        break
    return ep or None


class EventAnnotation:
    """§1.2: `<name>|<attributes JSON>|<dropped>`."""

    def __init__(self, name, attrs, dropped):
        self.name, self.attrs, self.dropped = name, attrs, dropped

    def __repr__(self):
        return "%s|%s|%d" % (self.name, json.dumps(self.attrs, ensure_ascii=False, separators=(",", ":")),
                             self.dropped)

    def check(self, actual):
        prefix = self.name + "|"
        if not isinstance(actual, str) or not actual.startswith(prefix) or "|" not in actual[len(prefix):]:
            return "want %r, got %r" % (self, actual)
        body, _, dropped = actual[len(prefix):].rpartition("|")
        try:
            parsed = json.loads(body)
        except ValueError:
            return "want %r, got %r (attributes are not JSON)" % (self, actual)
        if not json_equal(parsed, self.attrs) or dropped != str(self.dropped):
            return "want %r, got %r" % (self, actual)
        return None


class LinkTag:
    """§1 links row: `<traceIdHex32>|<spanIdHex16>|<trace_state>|<attributes JSON>|<dropped>`."""

    def __init__(self, link):
        self.trace_id = link.trace_id.hex()
        self.span_id = link.span_id.hex()
        self.trace_state = link.trace_state
        self.attrs = {kv.key: raw_value(kv.value) for kv in link.attributes}
        self.dropped = link.dropped_attributes_count

    def __repr__(self):
        return "%s|%s|%s|%s|%d" % (self.trace_id, self.span_id, self.trace_state,
                                   json.dumps(self.attrs, separators=(",", ":")), self.dropped)

    def check(self, actual):
        head = "%s|%s|%s|" % (self.trace_id, self.span_id, self.trace_state)
        if not isinstance(actual, str) or not actual.startswith(head):
            return "want %r, got %r" % (self, actual)
        body, sep, dropped = actual[len(head):].rpartition("|")
        try:
            parsed = json.loads(body) if sep else None
        except ValueError:
            parsed = None
        if not sep or not json_equal(parsed, self.attrs) or dropped != str(self.dropped):
            return "want %r, got %r" % (self, actual)
        return None


def expected_zipkin_tags(o):
    """§0.2, §0.3 and the §1 table -> {key: expected}."""
    sp = o.span
    tags = {}
    for kv in o.resource.attributes:
        if kv.key != "service.name":
            tags[kv.key] = stringify(kv.value)
    if o.scope.name:
        tags["otel.scope.name"] = o.scope.name
        tags["otel.library.name"] = o.scope.name
    if o.scope.version:
        tags["otel.scope.version"] = o.scope.version
        tags["otel.library.version"] = o.scope.version
    for kv in o.scope.attributes:
        tags[kv.key] = stringify(kv.value)
    for kv in sp.attributes:
        tags[kv.key] = stringify(kv.value)
    code = sp.status.code
    if code != STATUS_ERROR:
        tags.pop("error", None)
    if sp.kind == 1:
        tags["span.kind"] = "internal"
    if code == STATUS_OK:
        tags["otel.status_code"] = "OK"
    elif code == STATUS_ERROR:
        tags["otel.status_code"] = "ERROR"
        tags["error"] = sp.status.message
    if code != STATUS_UNSET and sp.status.message:
        tags["otel.status_description"] = sp.status.message
    if sp.trace_state:
        tags["w3c.tracestate"] = sp.trace_state
    for i, ln in enumerate(sp.links):
        tags["otlp.link.%d" % i] = LinkTag(ln)
    for key, n in (("otel.dropped_attributes_count", sp.dropped_attributes_count),
                   ("otel.dropped_events_count", sp.dropped_events_count),
                   ("otel.dropped_links_count", sp.dropped_links_count)):
        if n:
            tags[key] = str(n)
    return tags


def expected_zipkin(o):
    """The §1 table for one OTLPSpan -> {field: expected} (tags and annotations as expectations)."""
    sp = o.span
    z = {"traceId": sp.trace_id.hex(), "id": sp.span_id.hex()}
    if sp.parent_span_id and any(sp.parent_span_id):
        z["parentId"] = sp.parent_span_id.hex()
    if sp.name:
        z["name"] = sp.name
    if sp.kind in ZIPKIN_KIND:
        z["kind"] = ZIPKIN_KIND[sp.kind]
    start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
    if start:
        z["timestamp"] = start // 1000
        if end and end >= start:
            z["duration"] = max(1, (end - start) // 1000)
    z["localEndpoint"] = {"serviceName": service_name(o.resource)}
    remote = expected_remote_endpoint(attr_map(sp.attributes), sp.kind)
    if remote:
        z["remoteEndpoint"] = remote
    if sp.events:
        anns = []
        for ev in sp.events:
            if not ev.attributes and not ev.dropped_attributes_count:
                value = ev.name
            else:
                value = EventAnnotation(ev.name, {kv.key: raw_value(kv.value) for kv in ev.attributes},
                                        ev.dropped_attributes_count)
            anns.append({"timestamp": ev.time_unix_nano // 1000, "value": value})
        z["annotations"] = anns
    tags = expected_zipkin_tags(o)
    if tags:
        z["tags"] = tags
    return z


def zipkin_mismatches(o, actual):
    """Differences between what §1 asks for OTLPSpan `o` and the Zipkin JSON-form span `actual`."""
    want = expected_zipkin(o)
    out = []
    label = span_label(o)
    for k in sorted(set(want) | set(actual)):
        if k not in actual:
            out.append("%s: Zipkin field %r missing (want %r)" % (label, k, want[k]))
            continue
        if k not in want:
            out.append("%s: Zipkin field %r must be absent, got %r" % (label, k, actual[k]))
            continue
        if k == "tags":
            if not isinstance(actual[k], dict):
                out.append("%s: tags is not an object: %r" % (label, actual[k]))
            else:
                compare_maps("%s: tags" % label, want[k], actual[k], out)
        elif k == "annotations":
            got = actual[k]
            if not isinstance(got, list) or len(got) != len(want[k]):
                out.append("%s: annotations: want %d %r, got %r" % (label, len(want[k]), want[k], got))
                continue
            for i, (w, g) in enumerate(zip(want[k], got)):
                if not isinstance(g, dict):
                    out.append("%s: annotations[%d] is %r" % (label, i, g))
                    continue
                if g.get("timestamp") != w["timestamp"]:
                    out.append("%s: annotations[%d].timestamp: want %r, got %r"
                               % (label, i, w["timestamp"], g.get("timestamp")))
                err = check_value(w["value"], g.get("value"))
                if err:
                    out.append("%s: annotations[%d].value: %s" % (label, i, err))
        else:
            err = check_value(want[k], actual[k])
            if err:
                out.append("%s: %s: %s" % (label, k, err))
    return out


# ---------------------------------------------------------------------------
# §2 Jaeger
# ---------------------------------------------------------------------------

def jaeger_typed(v):
    """§2.4: AnyValue -> (ValueType, expected value)."""
    which = v.WhichOneof("value")
    if which == "string_value":
        return (V_STRING, v.string_value)
    if which == "bool_value":
        return (V_BOOL, v.bool_value)
    if which == "int_value":
        return (V_INT64, v.int_value)
    if which == "double_value":
        return (V_FLOAT64, v.double_value)
    if which == "bytes_value":
        return (V_BINARY, v.bytes_value)
    if which in ("array_value", "kvlist_value"):
        return (V_STRING, JsonText(raw_value(v)))
    return (V_STRING, "")


def kv_actual(kv):
    t = kv.v_type
    value = {V_STRING: kv.v_str, V_BOOL: kv.v_bool, V_INT64: kv.v_int64, V_FLOAT64: kv.v_float64,
             V_BINARY: kv.v_binary}.get(t)
    return (t, value)


def kv_map(kvs, what, out):
    """Repeated jaeger KeyValue -> {key: (type, value)}, reporting duplicate keys."""
    m = {}
    for kv in kvs:
        if kv.key in m:
            out.append("%s: key %r appears more than once" % (what, kv.key))
        m[kv.key] = kv_actual(kv)
    return m


def compare_typed(what, expected, actual, out):
    for k in sorted(set(expected) | set(actual)):
        if k not in actual:
            out.append("%s: missing %r (want %s %r)" % (what, k, V_NAMES.get(expected[k][0]), expected[k][1]))
        elif k not in expected:
            out.append("%s: unexpected %r = %s %r" % (what, k, V_NAMES.get(actual[k][0], actual[k][0]),
                                                        actual[k][1]))
        else:
            (wt, wv), (gt, gv) = expected[k], actual[k]
            if wt != gt:
                out.append("%s[%r]: want type %s (%r), got %s (%r)"
                           % (what, k, V_NAMES.get(wt), wv, V_NAMES.get(gt, gt), gv))
                continue
            err = check_value(wv, gv)
            if err:
                out.append("%s[%r]: %s" % (what, k, err))


def expected_process(resource):
    """§2.1 -> (service_name, {key: (type, value)})."""
    tags = {}
    for kv in resource.attributes:
        if kv.key != "service.name":
            tags[kv.key] = jaeger_typed(kv.value)
    return service_name(resource), tags


def expected_jaeger_tags(o):
    sp = o.span
    tags = {}
    if o.scope.name:
        tags["otel.scope.name"] = (V_STRING, o.scope.name)
        tags["otel.library.name"] = (V_STRING, o.scope.name)
    if o.scope.version:
        tags["otel.scope.version"] = (V_STRING, o.scope.version)
        tags["otel.library.version"] = (V_STRING, o.scope.version)
    for kv in o.scope.attributes:
        tags[kv.key] = jaeger_typed(kv.value)
    for kv in sp.attributes:
        tags[kv.key] = jaeger_typed(kv.value)
    if sp.kind in JAEGER_KIND:
        tags["span.kind"] = (V_STRING, JAEGER_KIND[sp.kind])
    code = sp.status.code
    if code == STATUS_OK:
        tags["otel.status_code"] = (V_STRING, "OK")
    elif code == STATUS_ERROR:
        tags["otel.status_code"] = (V_STRING, "ERROR")
        tags["error"] = (V_BOOL, True)
    if code != STATUS_UNSET and sp.status.message:
        tags["otel.status_description"] = (V_STRING, sp.status.message)
    if sp.trace_state:
        tags["w3c.tracestate"] = (V_STRING, sp.trace_state)
    for key, n in (("otel.dropped_attributes_count", sp.dropped_attributes_count),
                   ("otel.dropped_events_count", sp.dropped_events_count),
                   ("otel.dropped_links_count", sp.dropped_links_count)):
        if n:
            tags[key] = (V_INT64, n)
    return tags


def expected_references(sp):
    """§2.2 references: [(trace hex, span hex, ref type)]."""
    refs = []
    parent = sp.parent_span_id if sp.parent_span_id and any(sp.parent_span_id) else None
    if parent:
        refs.append([sp.trace_id.hex(), parent.hex(), CHILD_OF])
    for ln in sp.links:
        attrs = attr_map(ln.attributes)
        rt = attrs.get("opentracing.ref_type")
        ref_type = CHILD_OF if (rt is not None and rt.WhichOneof("value") == "string_value"
                                and rt.string_value == "child_of") else FOLLOWS_FROM
        if parent and ln.trace_id == sp.trace_id and ln.span_id == parent:
            refs[0][2] = ref_type
            continue
        refs.append([ln.trace_id.hex(), ln.span_id.hex(), ref_type])
    return [tuple(r) for r in refs]


def _ts(ns):
    return (ns // 10 ** 9, ns % 10 ** 9)


def jaeger_mismatches(o, actual):
    """Differences between §2 for OTLPSpan `o` and fakes.JaegerSpan `actual`."""
    sp, js = o.span, actual.span
    out = []
    label = span_label(o)
    if js.trace_id != sp.trace_id:
        out.append("%s: trace_id: want %s, got %s" % (label, sp.trace_id.hex(), js.trace_id.hex()))
    if js.span_id != sp.span_id:
        out.append("%s: span_id: want %s, got %s" % (label, sp.span_id.hex(), js.span_id.hex()))
    if js.operation_name != sp.name:
        out.append("%s: operation_name: want %r, got %r" % (label, sp.name, js.operation_name))
    want_refs = expected_references(sp)
    got_refs = [(r.trace_id.hex(), r.span_id.hex(), r.ref_type) for r in js.references]
    if got_refs != want_refs:
        out.append("%s: references: want %r, got %r (0 = CHILD_OF, 1 = FOLLOWS_FROM)" % (label, want_refs, got_refs))
    if js.flags != 1:
        out.append("%s: flags: want 1 (sampled), got %d" % (label, js.flags))
    want_start = _ts(sp.start_time_unix_nano)
    got_start = (js.start_time.seconds, js.start_time.nanos)
    if got_start != want_start:
        out.append("%s: start_time: want %r, got %r" % (label, want_start, got_start))
    d = max(0, sp.end_time_unix_nano - sp.start_time_unix_nano)
    want_dur = _ts(d)
    got_dur = (js.duration.seconds, js.duration.nanos)
    if got_dur != want_dur:
        out.append("%s: duration: want %r, got %r" % (label, want_dur, got_dur))
    compare_typed("%s: tags" % label, expected_jaeger_tags(o), kv_map(js.tags, "%s: tags" % label, out), out)
    if js.HasField("process"):
        out.append("%s: Span.process must be unset (the Batch's Process applies)" % label)
    if js.process_id:
        out.append("%s: Span.process_id must be empty, got %r" % (label, js.process_id))
    if list(js.warnings):
        out.append("%s: Span.warnings must be empty, got %r" % (label, list(js.warnings)))
    # logs
    if len(js.logs) != len(sp.events):
        out.append("%s: logs: want %d (one per event), got %d" % (label, len(sp.events), len(js.logs)))
    for i, (ev, lg) in enumerate(zip(sp.events, js.logs)):
        what = "%s: logs[%d]" % (label, i)
        got_ts = (lg.timestamp.seconds, lg.timestamp.nanos)
        if got_ts != _ts(ev.time_unix_nano):
            out.append("%s.timestamp: want %r, got %r" % (what, _ts(ev.time_unix_nano), got_ts))
        attrs = attr_map(ev.attributes)
        want = {}
        fields = list(lg.fields)
        if ev.name and "event" not in attrs:
            want["event"] = (V_STRING, ev.name)
            if not fields or fields[0].key != "event":
                out.append("%s.fields: the first field must be event=%r, got %r"
                           % (what, ev.name, [f.key for f in fields]))
        for kv in ev.attributes:
            want[kv.key] = jaeger_typed(kv.value)
        if ev.dropped_attributes_count:
            want["otel.dropped_attributes_count"] = (V_INT64, ev.dropped_attributes_count)
        compare_typed(what + ".fields", want, kv_map(fields, what + ".fields", out), out)
    # process
    want_service, want_ptags = expected_process(o.resource)
    proc = actual.process
    if proc.service_name != want_service:
        out.append("%s: Batch.process.service_name: want %r, got %r" % (label, want_service, proc.service_name))
    compare_typed("%s: Batch.process.tags" % label, want_ptags, kv_map(proc.tags, "process.tags", out), out)
    return out


# ---------------------------------------------------------------------------
# §3 OTLP forwarded unchanged
# ---------------------------------------------------------------------------

def _sorted_attrs(msg_attrs):
    items = sorted(((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in msg_attrs))
    return items


def normalized_span(sp):
    """A comparable form of an OTLP Span: attribute order does not matter, everything else does."""
    c = type(sp)()
    c.CopyFrom(sp)
    for holder in [c] + list(c.events) + list(c.links):
        attrs = sorted(holder.attributes, key=lambda kv: kv.key)
        copies = [type(kv)() for kv in attrs]
        for dst, src in zip(copies, attrs):
            dst.CopyFrom(src)
        del holder.attributes[:]
        holder.attributes.extend(copies)
    return c


def otlp_mismatches(o, actual):
    out = []
    label = span_label(o)
    if _sorted_attrs(actual.resource.attributes) != _sorted_attrs(o.resource.attributes):
        out.append("%s: resource attributes differ: want %s, got %s"
                   % (label, _short(o.resource), _short(actual.resource)))
    if actual.resource.dropped_attributes_count != o.resource.dropped_attributes_count:
        out.append("%s: resource.dropped_attributes_count differs" % label)
    if (actual.scope.name, actual.scope.version) != (o.scope.name, o.scope.version) or \
            _sorted_attrs(actual.scope.attributes) != _sorted_attrs(o.scope.attributes):
        out.append("%s: scope differs: want %s, got %s" % (label, _short(o.scope), _short(actual.scope)))
    if actual.resource_schema_url != o.resource_schema_url or actual.scope_schema_url != o.scope_schema_url:
        out.append("%s: schema_url differs: want %r/%r, got %r/%r"
                   % (label, o.resource_schema_url, o.scope_schema_url, actual.resource_schema_url,
                      actual.scope_schema_url))
    a, b = normalized_span(o.span), normalized_span(actual.span)
    if a != b:
        for fd in a.DESCRIPTOR.fields:
            va, vb = getattr(a, fd.name), getattr(b, fd.name)
            if va != vb:
                out.append("%s: Span.%s (field %d) differs: want %s, got %s"
                           % (label, fd.name, fd.number, _short(va), _short(vb)))
    return out


def _short(v, limit=400):
    s = str(v).replace("\n", " ")
    return s if len(s) <= limit else s[:limit] + "..."
