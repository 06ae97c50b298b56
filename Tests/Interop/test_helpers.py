"""Unit tests of the interop helpers themselves (no binary needed)."""

import base64
import gzip
import json
import math
import os
import zlib

import pytest

import interop_helpers as h


# --- config writer ---------------------------------------------------------

def test_config_yaml_shape_and_round_trip(tmp_path):
    cfg = h.build_config(str(tmp_path / "out dir" / "traces.jsonl"), max_request_body_size=4096)
    text = h.to_yaml(cfg)
    assert text.startswith("receivers:\n  otlp:\n    protocols:\n      http:\n")
    assert "        endpoint: 127.0.0.1:0\n" in text
    assert "        max_request_body_size: 4096\n" in text
    assert "    timeout: 200ms\n" in text
    assert "      receivers: [otlp]\n" in text
    # The path contains a space, so it must be quoted.
    assert '    path: "%s"\n' % (tmp_path / "out dir" / "traces.jsonl") in text
    yaml = pytest.importorskip("yaml")  # only to double-check the emitter; the suite does not need it
    assert yaml.safe_load(text) == cfg


def test_yaml_scalars_that_need_quotes():
    assert h._yaml_scalar("plain") == "plain"
    assert h._yaml_scalar("127.0.0.1:4318") == "127.0.0.1:4318"
    for s in ["", "true", "no", "null", "123", "1.5", "0x1f", "a: b", "# x", "-x", "x:", "é", "a b"]:
        out = h._yaml_scalar(s)
        assert out.startswith('"') and json.loads(out) == s, s
    assert h._yaml_scalar(True) == "true"
    assert h._yaml_scalar(12) == "12"


def test_yaml_lists_of_mappings_round_trip():
    yaml = pytest.importorskip("yaml")
    obj = {"a": [{"x": 1, "y": ["p", "q"]}, {"x": 2}], "b": {}, "c": [], "d": {"e": {"f": "g h"}}}
    assert yaml.safe_load(h.to_yaml(obj)) == obj


def test_config_with_grpc_and_nop_exporter(tmp_path):
    cfg = h.build_config(str(tmp_path / "out.jsonl"), grpc=h.GRPC_SETTINGS, exporter="nop")
    text = h.to_yaml(cfg)
    assert text.startswith("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n")
    assert "        max_recv_msg_size_mib: 4\n" in text
    assert "        keepalive:\n          server_parameters:\n            max_connection_idle: 5m\n" in text
    assert "      http:\n" in text
    assert "exporters:\n  nop: {}\n" in text and "      exporters: [nop]\n" in text
    only_grpc = h.build_config(str(tmp_path / "out.jsonl"), http=False, grpc={})
    assert only_grpc["receivers"]["otlp"]["protocols"] == {"grpc": {"endpoint": "127.0.0.1:0"}}
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(text) == cfg


def test_write_config(tmp_path):
    p = h.write_config(str(tmp_path / "c.yaml"), {"service": {"pipelines": {}}})
    assert open(p).read() == "service:\n  pipelines: {}\n"


# --- metrics parser --------------------------------------------------------

METRICS_TEXT = r'''# HELP agenttrace_receiver_accepted_spans_total Spans accepted.
# TYPE agenttrace_receiver_accepted_spans_total counter
agenttrace_receiver_accepted_spans_total{receiver="otlp",transport="http"} 42
agenttrace_receiver_requests_total{receiver="otlp",transport="http",code="200"} 3
agenttrace_receiver_requests_total{code="400",receiver="otlp",transport="http"} 1 1767225600000
# TYPE agenttrace_pipeline_queue_size gauge
agenttrace_pipeline_queue_size{pipeline="traces"} 0
weird{a="x,y}",b="quote\"back\\slash\nnl" , } 1.5e3
up 1
nan_metric NaN
inf_metric{le="+Inf"} +Inf
'''


def test_parse_metrics():
    ms = h.parse_metrics(METRICS_TEXT)
    assert ms.value("agenttrace_receiver_accepted_spans_total", receiver="otlp", transport="http") == 42
    assert ms.value("agenttrace_receiver_requests_total", receiver="otlp", transport="http", code="400") == 1
    assert ms.value("agenttrace_receiver_requests_total", receiver="otlp", transport="http", code="413") == 0
    assert not ms.has("agenttrace_receiver_requests_total", receiver="otlp", transport="http", code="413")
    assert ms.total("agenttrace_receiver_requests_total", receiver="otlp") == 4
    assert ms.value("weird", a="x,y}", b='quote"back\\slash\nnl') == 1500
    assert ms.value("up") == 1
    assert math.isnan(ms.value("nan_metric"))
    assert ms.value("inf_metric", le="+Inf") == math.inf
    assert ms.types["agenttrace_pipeline_queue_size"] == "gauge"
    assert ms.help["agenttrace_receiver_accepted_spans_total"] == "Spans accepted."
    assert "agenttrace_pipeline_queue_size" in ms.names()


@pytest.mark.parametrize("bad", [
    'x{a="b"',            # unterminated
    'x{a=b} 1',           # unquoted value
    'x 1 2 3',            # too many fields
    'x{a="1",a="2"} 1',   # duplicate label
    'x notanumber',
    '9x 1',
])
def test_parse_metrics_rejects(bad):
    with pytest.raises(h.MetricsParseError):
        h.parse_metrics(bad + "\n")


def test_parse_metrics_duplicate_series():
    with pytest.raises(h.MetricsParseError):
        h.parse_metrics('x{a="1"} 1\nx{a="1"} 2\n')


# --- OTLP reading ----------------------------------------------------------

def test_decode_any_value_kinds():
    kv = [
        {"key": "s", "value": {"stringValue": "hé"}},
        {"key": "b", "value": {"boolValue": False}},
        {"key": "i", "value": {"intValue": "-9007199254740993"}},
        {"key": "i2", "value": {"intValue": 7}},
        {"key": "d", "value": {"doubleValue": 0.5}},
        {"key": "dn", "value": {"doubleValue": "NaN"}},
        {"key": "by", "value": {"bytesValue": base64.b64encode(b"\x00\xff").decode()}},
        {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}}},
        {"key": "ea", "value": {"arrayValue": {}}},
        {"key": "kv", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}},
        {"key": "empty", "value": {}},
    ]
    d = h.decode_attributes(kv)
    assert d["s"] == "hé" and d["b"] is False and d["i"] == -9007199254740993 and d["i2"] == 7
    assert d["d"] == 0.5 and math.isnan(d["dn"]) and d["by"] == b"\x00\xff"
    assert d["a"] == [1, "x"] and d["ea"] == [] and d["kv"] == {"k": True} and d["empty"] is None
    with pytest.raises(ValueError):
        h.decode_any_value({"intValue": True})
    with pytest.raises(ValueError):
        h.decode_any_value({"stringValue": "a", "intValue": "1"})


SAMPLE_REQUEST = {
    "resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{
            "scope": {"name": "sc", "version": "1"},
            "spans": [{
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "parentSpanId": "EEE19B7EC3C1B173",
                "name": "op",
                "kind": 3,
                "startTimeUnixNano": "1544712660000000000",
                "endTimeUnixNano": "1544712661000000000",
                "events": [{"timeUnixNano": "1544712660500000000", "name": "ev",
                            "attributes": [{"key": "n", "value": {"intValue": "1"}}]}],
                "links": [{"traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175"}],
                "status": {"code": 2, "message": "bad"},
            }, {
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b173",
                "name": "root",
                "startTimeUnixNano": "1544712659000000000",
                "endTimeUnixNano": "1544712662000000000",
            }],
        }],
    }],
}


def test_spans_of():
    a, b = h.spans_of(SAMPLE_REQUEST)
    assert a.trace_id == "5b8efff798038103d269b633813fc60c" and a.span_id == "eee19b7ec3c1b174"
    assert a.parent_span_id == "eee19b7ec3c1b173" and a.kind == 3 and a.name == "op"
    assert a.start == 1544712660000000000 and a.end == 1544712661000000000
    assert a.events == [("ev", 1544712660500000000, {"n": 1})]
    assert a.links == [("5b8efff798038103d269b633813fc60d", "eee19b7ec3c1b175", {})]
    assert (a.status_code, a.status_message) == (2, "bad")
    assert a.resource == {"service.name": "svc"} and (a.scope_name, a.scope_version) == ("sc", "1")
    assert b.parent_span_id == "" and b.kind == 0 and b.status_code == 0 and b.events == []


def test_protobuf_round_trip():
    msg = h.request_to_protobuf(SAMPLE_REQUEST)
    span = msg.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert len(span.span_id) == 8 and span.kind == 3
    back = h.request_from_protobuf(msg.SerializeToString())
    assert [s.key for s in h.spans_of(back)] == [s.key for s in h.spans_of(SAMPLE_REQUEST)]
    with pytest.raises(Exception):
        h.request_to_protobuf({"resourceSpans": [{"unknownKey": 1}]})


def test_parse_jsonl_partial_tail():
    line = json.dumps(SAMPLE_REQUEST)
    data = (line + "\n" + line + "\n" + line[:50]).encode()
    assert len(h.parse_jsonl(data, allow_partial_tail=True)) == 2
    with pytest.raises(ValueError):
        h.parse_jsonl(data)
    assert len(h.parse_jsonl((line + "\n\n" + line).encode())) == 2


def test_read_and_wait_for_output(tmp_path):
    p = str(tmp_path / "out.jsonl")
    assert h.read_output_spans(p) == []
    with open(p, "w") as f:
        f.write(json.dumps(SAMPLE_REQUEST) + "\n" + '{"resourceSpans": [')
    assert len(h.read_output_spans(p)) == 2
    assert len(h.wait_for_output_spans(p, 2, timeout=0.2)) == 2
    with pytest.raises(AssertionError):
        h.wait_for_output_spans(p, 3, timeout=0.2)


def test_load_requests_all_formats(tmp_path):
    line = json.dumps(SAMPLE_REQUEST)
    (tmp_path / "a.jsonl").write_text(line + "\n" + line + "\n")
    (tmp_path / "a.json").write_text(json.dumps(SAMPLE_REQUEST, indent=2))
    (tmp_path / "a.pb").write_bytes(h.request_to_protobuf(SAMPLE_REQUEST).SerializeToString())
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress((line + "\n").encode()))
    counts = {n: len(h.load_spans(str(tmp_path / n))) for n in ("a.jsonl", "a.json", "a.pb", "a.jsonl.gz")}
    assert counts == {"a.jsonl": 4, "a.json": 2, "a.pb": 2, "a.jsonl.gz": 2}


def test_explicit_defaults():
    assert h.explicit_defaults(SAMPLE_REQUEST) == []
    bad = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "parentSpanId": "", "kind": 0, "droppedAttributesCount": 0, "status": {"code": 0},
        "attributes": [{"key": "x", "value": {"intValue": "0"}}, {"key": "y", "value": {"boolValue": False}}],
        "events": [],
    }]}]}]}
    found = h.explicit_defaults(bad)
    prefix = "$.resourceSpans[0].scopeSpans[0].spans[0]."
    assert sorted(found) == sorted(prefix + k for k in
                                   ("parentSpanId", "kind", "droppedAttributesCount", "status.code", "events"))


# --- process output parsing ------------------------------------------------

def test_parse_replay_output():
    out = ("replaying testdata/multi-agent.jsonl\n"
           "replay: files=1 spans_read=111 accepted=111 rejected=0\n"
           "exporter file: sent=111 failed=0\n")
    s = h.parse_replay_output(out)
    assert (s.files, s.spans_read, s.accepted, s.rejected) == (1, 111, 111, 0)
    assert s.exporters == {"file": (111, 0)}
    with pytest.raises(AssertionError):
        h.parse_replay_output("exporter file: sent=1 failed=0\n")
    with pytest.raises(AssertionError):
        h.parse_replay_output("replay: files=1 spans_read=1 accepted=1 rejected=0\nsomething else\n")


def test_listening_line_patterns():
    m = h.RECEIVER_LINE_RE.match("agenttrace: listening receiver=otlp protocol=http address=127.0.0.1:43121")
    assert m and m.groups() == ("otlp", "http", "127.0.0.1:43121")
    m = h.RECEIVER_LINE_RE.match("agenttrace: listening receiver=otlp protocol=grpc address=127.0.0.1:4317")
    assert m and m.groups() == ("otlp", "grpc", "127.0.0.1:4317")
    m = h.ADMIN_LINE_RE.match("agenttrace: listening admin address=127.0.0.1:40001")
    assert m and m.group(1) == "127.0.0.1:40001"
    assert h.split_address("[::1]:4318") == ("::1", 4318)


# --- gRPC and HTTP/2 framing ------------------------------------------------

def test_grpc_frame():
    assert h.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert h.grpc_frame(b"abc", compressed=True)[:1] == b"\x01"
    assert h.grpc_frame(b"0123456789", declared_length=100) == b"\x00\x00\x00\x00\x640123456789"
    assert h.grpc_frame(b"", declared_length=0x7FFFFFFF) == b"\x00\x7f\xff\xff\xff"


def test_parse_h2_frames():
    settings = h.h2_frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64")
    goaway = h.h2_frame(7, 0, 0, (1).to_bytes(4, "big") + (6).to_bytes(4, "big") + b"why")
    data = settings + goaway + h.h2_frame(0, 1, 0x80000003, b"xyz")[:-1]  # R bit set, last frame incomplete
    frames = h.parse_h2_frames(data)
    assert [(f.type_name, f.flags, f.stream_id) for f in frames] == [("SETTINGS", 0, 0), ("GOAWAY", 0, 0)]
    assert frames[1].payload[8:] == b"why"
    full = h.parse_h2_frames(data + b"z")
    assert (full[2].type_name, full[2].stream_id, full[2].payload) == ("DATA", 3, b"xyz")
    assert h.parse_h2_frames(b"\x00\x00") == []


H2LOAD_OUTPUT = """finished in 2.61s, 7662.84 req/s, 263.37KB/s
requests: 20000 total, 20000 started, 19990 done, 19980 succeeded, 10 failed, 10 errored, 0 timeout
status codes: 19980 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 687.37KB (703868) total, 39.28KB (40224) headers (space savings 94.71%), 97.66KB (100000) data
"""


def test_parse_h2load_output():
    r = h.parse_h2load_output(H2LOAD_OUTPUT)
    assert r == {"total": 20000, "started": 20000, "done": 19990, "succeeded": 19980, "failed": 10, "errored": 10,
                 "timeout": 0, "2xx": 19980, "3xx": 0, "4xx": 0, "5xx": 0}
    with pytest.raises(AssertionError):
        h.parse_h2load_output("connect to 127.0.0.1:1 failed\n")


def test_gzip_bomb_is_small_and_inflates():
    bomb = h.gzip_bomb(8 * 1024 * 1024)
    assert len(bomb) < 64 * 1024
    assert len(zlib.decompress(bomb, 31)) == 8 * 1024 * 1024


def test_binary_problem(tmp_path):
    assert "not found" in h.binary_problem(str(tmp_path / "nope"))
    f = tmp_path / "f"
    f.write_text("")
    assert "not an executable" in h.binary_problem(str(f))
    os.chmod(f, 0o755)
    assert h.binary_problem(str(f)) is None


def test_testdata_is_current():
    """testdata/ matches what scripts/generate-testdata produces (deterministic generator)."""
    import subprocess
    import sys
    script = os.path.join(h.REPO_ROOT, "scripts", "generate-testdata")
    r = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_testdata_contents():
    """The fixtures have the scenarios the suite relies on."""
    spans = h.load_spans(os.path.join(h.TESTDATA, "multi-agent.jsonl"))
    traces = {s.trace_id for s in spans}
    assert 6 <= len(traces) <= 10
    by_key = {s.key: s for s in spans}
    assert len(by_key) == len(spans)
    services = {s.resource["service.name"] for s in spans}
    assert services == {"coordinator-main", "planner-agent", "research-agent", "coder-agent"}
    # every parent exists in the same trace; SERVER spans in callees hang off CLIENT spans in callers
    for s in spans:
        if s.parent_span_id:
            parent = by_key[(s.trace_id, s.parent_span_id)]
            if s.kind == 2 and parent.resource != s.resource:
                assert parent.kind == 3
    assert any(s.status_code == 2 and any(e[0] == "exception" for e in s.events) for s in spans)
    assert any(s.links for s in spans)
    roots = [s for s in spans if not s.parent_span_id]
    assert any(r.end - r.start > 5 * 10**9 for r in roots)
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert {c.attributes["gen_ai.system"] for c in chats} == {"openai", "anthropic"}
    assert all(isinstance(c.attributes.get("gen_ai.usage.input_tokens", 0), int) for c in chats)
    single = h.load_spans(os.path.join(h.TESTDATA, "multi-agent.json"))
    pb = h.load_spans(os.path.join(h.TESTDATA, "multi-agent.pb"))
    assert [s.key for s in single] == [s.key for s in pb] and len(single) > 0
    gz = h.load_spans(os.path.join(h.TESTDATA, "multi-agent.jsonl.gz"))
    assert [s.key for s in gz] == [s.key for s in spans]
    invalid = h.load_spans(os.path.join(h.TESTDATA, "invalid-ids.json"))
    bad = [s for s in invalid if len(s.trace_id) != 32 or set(s.trace_id) == {"0"}
           or len(s.span_id) != 16 or set(s.span_id) == {"0"}]
    assert len(invalid) == 5 and len(bad) == 2
