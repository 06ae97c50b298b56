"""The fake backends (fakes.py) and the mapping oracle (mapping_oracle.py) on their own, without the
collector: valid input is accepted, anything the peers' schemas do not allow is refused and recorded,
scripted failures are answered as configured."""

import gzip
import json
import socket
import time

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

import fakes
import interop_helpers as h
import mapping_oracle as mo

# The example of definitions/Span in zipkin2-api.yaml (with a 128-bit trace id).
ZIPKIN_EXAMPLE = {
    "id": "352bff9a74ca9ad2", "traceId": "5af7183fb1d4cf5f5af7183fb1d4cf5f", "parentId": "6b221d5bc9e6496c",
    "name": "get /api", "timestamp": 1556604172355737, "duration": 1431, "kind": "SERVER",
    "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
    "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
    "tags": {"http.method": "GET", "http.path": "/api"},
}


@pytest.fixture
def zipkin():
    with fakes.ZipkinFake() as f:
        yield f


def post_json(fake, value, path="/api/v2/spans", gz=False, content_type="application/json"):
    body = value if isinstance(value, bytes) else json.dumps(value).encode("utf-8")
    headers = {"Content-Type": content_type}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return h.http_request(fake.address, "POST", path, body, headers)


def test_zipkin_accepts_the_published_example(zipkin):
    r = post_json(zipkin, [ZIPKIN_EXAMPLE], gz=True)
    assert r.status == 202 and zipkin.violations == []
    assert zipkin.accepted_counts() == {("5af7183fb1d4cf5f5af7183fb1d4cf5f", "352bff9a74ca9ad2"): 1}
    assert post_json(zipkin, [dict(ZIPKIN_EXAMPLE, traceId="5af7183fb1d4cf5f")]).status == 202  # 64-bit
    assert zipkin.violations == []


@pytest.mark.parametrize("change,fragment", [
    ({"extra": 1}, "Additional properties"),
    ({"traceId": "5AF7183FB1D4CF5F"}, "does not match"),
    ({"traceId": "5af7183fb1d4cf5g"}, "does not match"),
    ({"id": "352bff9a74ca9ad"}, "is too short"),
    ({"parentId": "6b221d5bc9e6496c00"}, "is too long"),
    ({"duration": 0}, "less than the minimum of 1"),
    ({"timestamp": 0}, "less than the minimum of 1"),
    ({"timestamp": 1.5}, "is not of type 'integer'"),
    ({"duration": 1431.0}, "not an integer literal"),
    ({"kind": "INTERNAL"}, "is not one of"),
    ({"name": None}, "is not of type 'string'"),
    ({"tags": {"n": 1}}, "is not of type 'string'"),
    ({"localEndpoint": {"serviceName": "x", "ipv4": "999.1.1.1"}}, "is not a 'ipv4'"),
    ({"remoteEndpoint": {"ipv6": "nope"}}, "is not a 'ipv6'"),
    ({"remoteEndpoint": {"port": 0}}, "less than the minimum of 1"),
    ({"remoteEndpoint": {"address": "x"}}, "Additional properties"),
    ({"annotations": [{"timestamp": 1}]}, "'value' is a required property"),
    ({"annotations": [{"timestamp": 1, "value": "a"}, {"timestamp": 1, "value": "a"}]}, "non-unique"),
    ({"debug": "true"}, "is not of type 'boolean'"),
], ids=lambda x: x if isinstance(x, str) else json.dumps(x)[:40])
def test_zipkin_json_violations(zipkin, change, fragment):
    r = post_json(zipkin, [dict(ZIPKIN_EXAMPLE, **change)])
    assert r.status == 400
    assert any(fragment in v for v in zipkin.violations), zipkin.violations
    assert zipkin.accepted_counts() == {}


def test_zipkin_required_fields_and_framing(zipkin):
    no_id = {k: v for k, v in ZIPKIN_EXAMPLE.items() if k != "id"}
    assert post_json(zipkin, [no_id]).status == 400
    assert post_json(zipkin, ZIPKIN_EXAMPLE).status == 400                       # not a list
    assert post_json(zipkin, b'[{"traceId":"5af7183fb1d4cf5f","traceId":"5af7183fb1d4cf5f",'
                             b'"id":"352bff9a74ca9ad2"}]').status == 400          # duplicate key
    assert post_json(zipkin, [ZIPKIN_EXAMPLE], content_type="text/plain").status == 400
    assert post_json(zipkin, [ZIPKIN_EXAMPLE], path="/api/v1/spans").status == 404
    bad_gzip = h.http_request(zipkin.address, "POST", "/api/v2/spans", b"not gzip",
                              {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert bad_gzip.status == 400
    text = "\n".join(zipkin.violations)
    for fragment in ("'id' is a required property", "is not of type 'array'", "duplicate JSON object keys",
                     "unsupported Content-Type", "unexpected path", "not valid gzip"):
        assert fragment in text, text
    assert zipkin.accepted_counts() == {}


def zipkin_proto_span(**kw):
    pb = fakes.generated_modules().zipkin_pb2
    fields = dict(trace_id=bytes(range(1, 17)), id=bytes(range(1, 9)), kind=pb.Span.CLIENT, name="x",
                  timestamp=1556604172355737, duration=3,
                  local_endpoint=pb.Endpoint(service_name="svc"),
                  remote_endpoint=pb.Endpoint(ipv6=bytes(15) + b"\x01", port=443),
                  annotations=[pb.Annotation(timestamp=1556604172355738, value="ev")], tags={"k": "v"})
    fields.update(kw)
    return pb.Span(**fields)


def test_zipkin_proto_accepted_and_converted(zipkin):
    pb = fakes.generated_modules().zipkin_pb2
    body = pb.ListOfSpans(spans=[zipkin_proto_span()]).SerializeToString()
    r = h.http_request(zipkin.address, "POST", "/api/v2/spans", gzip.compress(body),
                       {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    assert r.status == 202 and zipkin.violations == []
    span = zipkin.accepted_spans()[0]
    assert span.encoding == "proto"
    assert span.span == {"traceId": "0102030405060708090a0b0c0d0e0f10", "id": "0102030405060708", "kind": "CLIENT",
                         "name": "x", "timestamp": 1556604172355737, "duration": 3,
                         "localEndpoint": {"serviceName": "svc"}, "remoteEndpoint": {"ipv6": "::1", "port": 443},
                         "annotations": [{"timestamp": 1556604172355738, "value": "ev"}], "tags": {"k": "v"}}


@pytest.mark.parametrize("kw,extra,fragment", [
    ({"id": b"1234567"}, b"", "id: 7 bytes"),
    ({"trace_id": bytes(16)}, b"", "trace_id: all zero"),
    ({"kind": 9}, b"", "is not a value of enum"),
    ({"local_endpoint": None}, b"", None),
    ({}, b"\xa8\x06\x01", "unknown field number 101"),
    ({"annotations": []}, b"", None),
])
def test_zipkin_proto_violations(zipkin, kw, extra, fragment):
    pb = fakes.generated_modules().zipkin_pb2
    if kw.get("local_endpoint", 1) is None:
        kw = {"local_endpoint": pb.Endpoint(service_name="s", ipv4=b"\x01\x02\x03")}
        fragment = "ipv4: 3 bytes"
    if kw.get("annotations", 1) == []:
        kw = {"annotations": [pb.Annotation(timestamp=0, value="a")]}
        fragment = "zero is an invalid timestamp"
    span = zipkin_proto_span(**kw).SerializeToString() + extra
    body = b"\x0a" + bytes([len(span)]) + span   # ListOfSpans.spans = 1
    r = h.http_request(zipkin.address, "POST", "/api/v2/spans", body, {"Content-Type": "application/x-protobuf"})
    assert r.status == 400
    assert any(fragment in v for v in zipkin.violations), zipkin.violations


def test_script_fail_for_then_recover(zipkin):
    zipkin.script.fail_for(0.5, 503, retry_after=1)
    r1 = post_json(zipkin, [ZIPKIN_EXAMPLE])
    r2 = post_json(zipkin, [ZIPKIN_EXAMPLE])
    assert (r1.status, r1.headers.get("retry-after"), r2.status) == (503, "1", 503)
    time.sleep(0.6)
    assert post_json(zipkin, [ZIPKIN_EXAMPLE]).status == 202
    key = ("5af7183fb1d4cf5f5af7183fb1d4cf5f", "352bff9a74ca9ad2")
    assert zipkin.accepted_counts() == {key: 1}
    assert zipkin.attempt_counts(accepted=False) == {key: 2}
    zipkin.script.fail_next(1, 429)
    zipkin.script.fail_always(400)
    assert [post_json(zipkin, [ZIPKIN_EXAMPLE]).status for _ in range(3)] == [429, 400, 400]
    zipkin.script.succeed()
    assert post_json(zipkin, [ZIPKIN_EXAMPLE]).status == 202
    assert zipkin.violations == []


# --- Jaeger -------------------------------------------------------------------

def jaeger_request(**span_kw):
    g = fakes.generated_modules()
    m = g.model_pb2
    span = dict(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), operation_name="op", flags=1,
                start_time=timestamp_pb2.Timestamp(seconds=1700000000, nanos=5),
                duration=duration_pb2.Duration(nanos=1500),
                references=[m.SpanRef(trace_id=bytes(range(1, 17)), span_id=bytes(range(2, 10)), ref_type=0)],
                tags=[m.KeyValue(key="n", v_type=m.INT64, v_int64=3), m.KeyValue(key="s", v_str="x")],
                logs=[m.Log(timestamp=timestamp_pb2.Timestamp(seconds=1700000000),
                            fields=[m.KeyValue(key="event", v_str="e")])])
    span.update(span_kw)
    return g.collector_pb2.PostSpansRequest(batch=m.Batch(
        process=m.Process(service_name="svc", tags=[m.KeyValue(key="b", v_type=m.BOOL, v_bool=True)]),
        spans=[m.Span(**span)]))


def post_spans(fake, body, compression=None, metadata=None):
    with h.grpc_channel(fake.address) as ch:
        call = ch.unary_unary("/jaeger.api_v2.CollectorService/PostSpans", request_serializer=None,
                              response_deserializer=None)
        try:
            call(body if isinstance(body, bytes) else body.SerializeToString(), timeout=10,
                 compression=compression, metadata=metadata)
            return grpc.StatusCode.OK, None
        except grpc.RpcError as e:
            return e.code(), e


def test_jaeger_accepts_valid_batch_and_sniffs_headers():
    with fakes.JaegerFake() as fake:
        code, _ = post_spans(fake, jaeger_request(), compression=grpc.Compression.Gzip,
                             metadata=[("x-tenant", "acme")])
        assert code == grpc.StatusCode.OK and fake.violations == []
        rec = fake.accepted_requests()[0]
        assert rec.headers["x-tenant"] == "acme"
        assert rec.spans[0].key == (bytes(range(1, 17)).hex(), bytes(range(1, 9)).hex())
        assert rec.spans[0].process.service_name == "svc"
        st = fake.streams()[0]
        assert st.headers[":path"] == "/jaeger.api_v2.CollectorService/PostSpans"
        assert st.headers["grpc-encoding"] == "gzip" and len(st.message_flags) == 1
        assert fake.sniffer.errors == []


@pytest.mark.parametrize("mutate,fragment", [
    (lambda r: r.batch.spans[0].tags[0].__setattr__("v_str", "also"), "v_str is set as well"),
    (lambda r: r.batch.spans[0].__setattr__("trace_id", bytes(16)), "not 16 non-zero bytes"),
    (lambda r: r.batch.spans[0].__setattr__("span_id", b"\x01" * 4), "not 8 non-zero bytes"),
    (lambda r: r.batch.ClearField("process"), "batch.process is missing"),
    (lambda r: r.batch.process.__setattr__("service_name", ""), "service_name is empty"),
    (lambda r: r.batch.spans[0].ClearField("start_time"), "start_time missing"),
    (lambda r: r.batch.spans[0].duration.__setattr__("nanos", -1), "non-negative normalised Duration"),
    (lambda r: r.batch.spans[0].tags[0].__setattr__("v_type", 7), "is not a value of enum"),
    (lambda r: r.batch.spans[0].references[0].__setattr__("span_id", b""), "references[0]: bad ids"),
], ids=["two-values", "zero-trace", "short-span", "no-process", "no-service", "no-start", "neg-duration",
        "bad-vtype", "bad-ref"])
def test_jaeger_violations(mutate, fragment):
    with fakes.JaegerFake() as fake:
        req = jaeger_request()
        mutate(req)
        code, _ = post_spans(fake, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert any(fragment in v for v in fake.violations), fake.violations


def test_jaeger_unknown_field_and_scripted_unavailable():
    with fakes.JaegerFake() as fake:
        code, _ = post_spans(fake, jaeger_request().SerializeToString() + b"\xf8\x07\x01")
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown field number 127" in fake.violations[0]
        fake.violations.clear()
        fake.script.fail_next(1, grpc.StatusCode.UNAVAILABLE)
        fake.script.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=1.5)
        assert post_spans(fake, jaeger_request())[0] == grpc.StatusCode.UNAVAILABLE
        code, err = post_spans(fake, jaeger_request())
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        from google.rpc import error_details_pb2, status_pb2
        details = dict(err.trailing_metadata())["grpc-status-details-bin"]
        info = error_details_pb2.RetryInfo()
        status_pb2.Status.FromString(details).details[0].Unpack(info)
        assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500000000)
        assert post_spans(fake, jaeger_request())[0] == grpc.StatusCode.OK
        assert [r.answer for r in fake.snapshot()[1:]] == ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "OK"]
        assert fake.violations == []


# --- OTLP -----------------------------------------------------------------------

OTLP_JSON = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]},
                                "scopeSpans": [{"spans": [{"traceId": "0102030405060708090a0b0c0d0e0f10",
                                                           "spanId": "0102030405060708", "name": "n", "kind": 2,
                                                           "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}


def test_otlp_http_protobuf_and_json():
    with fakes.OTLPHttpFake() as fake:
        pb = h.request_to_protobuf(OTLP_JSON).SerializeToString()
        r = h.http_request(fake.address, "POST", "/v1/traces", gzip.compress(pb),
                           {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert r.status == 200 and r.content_type == "application/x-protobuf"
        trace_service_pb2.ExportTraceServiceResponse.FromString(r.body)
        r = post_json(fake, OTLP_JSON, path="/v1/traces")
        assert r.status == 200 and r.content_type == "application/json" and r.json() == {}
        assert fake.violations == []
        assert fake.accepted_counts() == {("0102030405060708090a0b0c0d0e0f10", "0102030405060708"): 2}


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d["resourceSpans"][0].__setitem__("bogus", 1), "no field named \"bogus\""),
    (lambda d: d["resourceSpans"][0]["scopeSpans"][0]["spans"][0].__setitem__("traceId", "AQIDBAUGBwgJCgsMDQ4PEA=="),
     "not a 32-character hex id"),
    (lambda d: d["resourceSpans"][0]["scopeSpans"][0]["spans"][0].__setitem__("spanId", "0000000000000000"),
     "not 8 non-zero bytes"),
    (lambda d: d["resourceSpans"][0]["scopeSpans"][0]["spans"][0].__setitem__("kind", 9), "is not a value of enum"),
], ids=["unknown-key", "base64-id", "zero-id", "bad-enum"])
def test_otlp_http_json_violations(mutate, fragment):
    with fakes.OTLPHttpFake() as fake:
        d = json.loads(json.dumps(OTLP_JSON))
        mutate(d)
        r = post_json(fake, d, path="/v1/traces")
        assert r.status == 400 and r.json()["code"] == 3
        assert any(fragment in v for v in fake.violations), fake.violations


def test_otlp_http_scripted_503_has_status_body_and_retry_after():
    with fakes.OTLPHttpFake(path="/custom") as fake:
        fake.script.fail_next(1, 503, retry_after=2)
        r = post_json(fake, OTLP_JSON, path="/custom")
        assert (r.status, r.headers.get("retry-after"), r.json()["code"]) == (503, "2", 14)
        assert post_json(fake, OTLP_JSON, path="/v1/traces").status == 404
        assert any("unexpected path" in v for v in fake.violations)


def test_otlp_grpc_fake():
    with fakes.OTLPGrpcFake() as fake:
        msg = h.request_to_protobuf(OTLP_JSON)
        with h.grpc_channel(fake.address) as ch:
            res = h.grpc_export(ch, msg, compression=grpc.Compression.Gzip)
            assert res.code == grpc.StatusCode.OK
            fake.script.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT)
            assert h.grpc_export(ch, msg).code == grpc.StatusCode.INVALID_ARGUMENT
            assert h.grpc_export(ch, msg.SerializeToString() + b"\xf8\x07\x01").code == grpc.StatusCode.INVALID_ARGUMENT
        assert [r.answer for r in fake.snapshot()] == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]
        assert len(fake.violations) == 1 and "unknown field number 127" in fake.violations[0]
        assert fake.streams()[0].headers.get("grpc-encoding") == "gzip"


def test_reserved_port_refuses_until_released():
    p = fakes.ReservedPort()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=2)
    with fakes.ZipkinFake(port=p.release()) as fake:
        assert post_json(fake, [ZIPKIN_EXAMPLE]).status == 202


# --- the oracle ------------------------------------------------------------------

@pytest.mark.parametrize("x,text", [(2.0, "2"), (0.25, "0.25"), (1e-7, "1e-7"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
                                    (1e-6, "0.000001"), (-0.5, "-0.5"), (123456.789, "123456.789"), (0.0, "0"),
                                    (1.5e-7, "1.5e-7"), (float("inf"), "Infinity")])
def test_es6_number(x, text):
    assert mo.es6_number(x) == text


def test_stringify_and_remote_endpoint():
    S = common_pb2.AnyValue
    assert mo.stringify(S(bool_value=False)) == "false"
    assert mo.stringify(S(bytes_value=b"\x01\x02\x03")) == "AQID"
    assert mo.stringify(S()) == ""
    j = mo.stringify(S(array_value=common_pb2.ArrayValue(values=[S(int_value=1), S(bool_value=True)])))
    assert j.check("[1,true]") is None and j.check("[1,1]") is not None and j.check("[1, true]") is None

    def attrs(**kw):
        return {k.replace("_", "."): (S(int_value=v) if isinstance(v, int) else S(string_value=v)) for k, v in kw.items()}
    assert mo.expected_remote_endpoint(attrs(server_address="a", peer_service="p")) == {"serviceName": "p"}
    assert mo.expected_remote_endpoint(attrs(peer_service="", db_name="d")) == {"serviceName": "d"}
    assert mo.expected_remote_endpoint({"network.peer.address": S(string_value="::ffff:10.0.0.1"),
                                        "network.peer.port": S(string_value="80")}) == {"ipv4": "10.0.0.1", "port": 80}
    assert mo.expected_remote_endpoint({"network.peer.address": S(string_value="host"),
                                        "net.peer.ip": S(string_value="2001:db8::1"),
                                        "net.peer.port": S(int_value=70000)}) == {"ipv6": "2001:db8::1"}
    assert mo.expected_remote_endpoint({}) is None
