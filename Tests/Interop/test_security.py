"""Authentication and TLS, with the real OpenTelemetry Python SDK exporters and grpcio as clients.

  * bearer tokens on OTLP/HTTP, OTLP/gRPC and the admin API: 401 + WWW-Authenticate / UNAUTHENTICATED
    without a valid token, accepted with one (inline `${env:…}` tokens and a tokens file, reloaded);
  * TLS on both receivers and the admin API, certificates made here with openssl; mTLS refusing a
    client without a certificate;
  * TLS on exporters: one collector forwards to another over https and over gRPC with TLS + a client
    certificate, with a bearer token, and the spans arrive."""

import os
import shutil
import ssl
import subprocess
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import interop_helpers as h

TOKEN = "s3cr3t-token-for-interop"
FILE_TOKEN = "token-from-a-file"
REQUESTS = "agenttrace_receiver_requests_total"


def finished_spans(n=3, name="secure"):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "interop-security"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("interop.security")
    for i in range(n):
        with tracer.start_as_current_span("%s-%d" % (name, i)):
            pass
    spans = memory.get_finished_spans()
    return spans, {("%032x" % s.context.trace_id, "%016x" % s.context.span_id) for s in spans}


def wait_for_keys(col, keys, timeout=10.0):
    col.wait_for_spans(lambda spans: keys <= {s.key for s in spans}, timeout)


# --- certificates ----------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("missing prerequisite: openssl (apt-get install openssl)", pytrace=False)
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run([openssl] + list(args), cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=AgentTrace Test CA")
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / ("%s.ext" % name)).write_text(ext + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "%s.key" % name, "-out", "%s.csr" % name,
            "-subj", "/CN=%s" % ("localhost" if name == "server" else "interop-client"))
        run("x509", "-req", "-in", "%s.csr" % name, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "%s.pem" % name, "-days", "2", "-extfile", "%s.ext" % name)
    return {k: str(d / v) for k, v in {"ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key",
                                       "client_cert": "client.pem", "client_key": "client.key"}.items()}


def client_ssl(certs, with_client_cert=False):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if with_client_cert:
        ctx.load_cert_chain(certs["client_cert"], certs["client_key"])
    return ctx


# --- bearer tokens -----------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_col(agenttrace_bin, tmp_path_factory):
    """HTTP with an inline ${env:…} token, gRPC with a tokens file, admin with the inline token."""
    d = tmp_path_factory.mktemp("auth")
    tokens_file = d / "tokens.txt"
    tokens_file.write_text("# one token a line\n%s\n" % FILE_TOKEN)
    c = h.Collector(agenttrace_bin, d / "collector", grpc={}, overrides={
        "receivers": {"otlp": {"protocols": {
            "http": {"auth": {"bearer_tokens": ["${env:AGENTTRACE_TEST_TOKEN}"]}},
            "grpc": {"auth": {"bearer_tokens_file": str(tokens_file)}},
        }}},
        "service": {"admin": {"auth": {"bearer_tokens": ["${env:AGENTTRACE_TEST_TOKEN}"]}}},
    })
    os.environ["AGENTTRACE_TEST_TOKEN"] = TOKEN
    try:
        c.start()
    finally:
        del os.environ["AGENTTRACE_TEST_TOKEN"]
    c.admin_headers = {"Authorization": "Bearer " + TOKEN}
    c.tokens_file = tokens_file
    yield c
    rc = c.stop()
    assert rc == 0, c.describe()


def test_http_sdk_exporter_needs_the_token(auth_col):
    spans, keys = finished_spans(name="http-auth")
    url = "http://%s/v1/traces" % auth_col.http_address
    assert HTTPSpanExporter(endpoint=url, timeout=5).export(spans) == SpanExportResult.FAILURE
    assert HTTPSpanExporter(endpoint=url, timeout=5, headers={"authorization": "Bearer wrong"}).export(spans) \
        == SpanExportResult.FAILURE
    assert HTTPSpanExporter(endpoint=url, timeout=5, headers={"authorization": "Bearer " + TOKEN}).export(spans) \
        == SpanExportResult.SUCCESS
    wait_for_keys(auth_col, keys)


def test_http_401_carries_www_authenticate_and_is_counted(auth_col):
    before = auth_col.scrape()
    r = auth_col.post_traces(b"{}", "application/json")
    assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"), r
    r = auth_col.post_traces(b"{}", "application/json", headers={"Authorization": "Bearer " + TOKEN + "x"})
    assert r.status == 401 and 'error="invalid_token"' in r.headers.get("www-authenticate", ""), r
    after = auth_col.scrape()
    lab = {"receiver": "otlp", "transport": "http", "code": "401"}
    assert after.value(REQUESTS, lab) - before.value(REQUESTS, lab) == 2
    assert TOKEN not in open(auth_col.stderr_path, encoding="utf-8", errors="replace").read()


def test_grpc_sdk_exporter_needs_the_token_from_the_file(auth_col):
    spans, keys = finished_spans(name="grpc-auth")
    exporter = GRPCSpanExporter(endpoint=auth_col.grpc_address, insecure=True, timeout=5)
    assert exporter.export(spans) == SpanExportResult.FAILURE
    exporter = GRPCSpanExporter(endpoint=auth_col.grpc_address, insecure=True, timeout=5,
                                headers=(("authorization", "Bearer " + FILE_TOKEN),))
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    wait_for_keys(auth_col, keys)


def test_grpc_unauthenticated_status_and_file_reload(auth_col):
    body = h.request_to_protobuf({"resourceSpans": []})
    lab = {"receiver": "otlp", "transport": "grpc", "code": "UNAUTHENTICATED"}
    before = auth_col.scrape()
    refused = 0
    with h.grpc_channel(auth_col.grpc_address) as ch:
        call = ch.unary_unary(h.GRPC_EXPORT_PATH)
        with pytest.raises(grpc.RpcError) as e:
            call(body.SerializeToString(), timeout=5, metadata=(("authorization", "Bearer " + TOKEN),))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        refused += 1
        # A new token in the file is taken without a restart.
        new = "rotated-token"
        auth_col.tokens_file.write_text("%s\n%s\n" % (FILE_TOKEN, new))
        os.utime(auth_col.tokens_file, (time.time() + 5, time.time() + 5))
        deadline = time.monotonic() + 10
        while True:
            try:
                call(body.SerializeToString(), timeout=5, metadata=(("authorization", "Bearer " + new),))
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED
                refused += 1
                assert time.monotonic() < deadline, "the rotated token was not picked up"
                time.sleep(0.3)
    assert auth_col.scrape().value(REQUESTS, lab) - before.value(REQUESTS, lab) == refused


def test_admin_needs_the_token_except_probes(auth_col):
    assert h.http_request(auth_col.admin, "GET", "/healthz").status == 200
    assert h.http_request(auth_col.admin, "GET", "/readyz").status == 200
    r = h.http_request(auth_col.admin, "GET", "/metrics")
    assert r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"), r
    before = auth_col.scrape()
    r = h.http_request(auth_col.admin, "GET", "/metrics")
    assert r.status == 401
    r = h.http_request(auth_col.admin, "GET", "/metrics", headers={"Authorization": "bearer " + TOKEN})
    assert r.status == 200  # the scheme is case-insensitive (RFC 9110 §11.1)
    assert auth_col.scrape().value("agenttrace_admin_unauthorized_requests_total") - \
        before.value("agenttrace_admin_unauthorized_requests_total") == 1


def test_auth_config_validation_names_the_key(agenttrace_bin, tmp_path):
    config = h.build_config(str(tmp_path / "out.jsonl"), overrides={
        "receivers": {"otlp": {"protocols": {"http": {"auth": {"bearer_tokens": ["${env:AGENTTRACE_UNSET_TOKEN}"]}}}}}})
    path = h.write_config(str(tmp_path / "c.yaml"), config)
    p = h.run_cli(agenttrace_bin, ["validate", "--config", path])
    assert p.returncode != 0
    assert "receivers.otlp.protocols.http.auth.bearer_tokens[0]" in p.stderr + p.stdout, p.stderr + p.stdout


# --- TLS ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_col(agenttrace_bin, tmp_path_factory, certs):
    """TLS on HTTP and the admin API; TLS with required client certificates (mTLS) on gRPC."""
    server = {"cert_file": certs["server_cert"], "key_file": certs["server_key"]}
    c = h.Collector(agenttrace_bin, tmp_path_factory.mktemp("tls"), grpc={}, overrides={
        "receivers": {"otlp": {"protocols": {
            "http": {"tls": server},
            "grpc": {"tls": dict(server, client_ca_file=certs["ca"])},
        }}},
        "service": {"admin": {"tls": server}},
    })
    c.admin_ssl = client_ssl(certs)
    c.start()
    yield c
    rc = c.stop()
    assert rc == 0, c.describe()


def test_https_sdk_exporter(tls_col, certs, monkeypatch):
    # requests lets these variables override a session's CA file (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    spans, keys = finished_spans(name="https")
    exporter = HTTPSpanExporter(endpoint="https://%s/v1/traces" % tls_col.http_address, certificate_file=certs["ca"], timeout=5)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    wait_for_keys(tls_col, keys)


def test_plain_http_to_tls_port_is_refused_and_counted(tls_col):
    before = tls_col.scrape()
    reply = h.raw_exchange(tls_col.http_address, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert_tls_refusal(reply)
    deadline = time.monotonic() + 5
    lab = {"receiver": "otlp", "transport": "http", "reason": "tls_handshake"}
    while tls_col.scrape().value("agenttrace_receiver_connections_closed_total", lab) <= before.value(
            "agenttrace_receiver_connections_closed_total", lab):
        assert time.monotonic() < deadline, "a failed handshake was not counted"
        time.sleep(0.1)


def test_grpc_mtls_sdk_exporter(tls_col, certs):
    spans, keys = finished_spans(name="mtls")
    with open(certs["ca"], "rb") as f:
        ca = f.read()
    with open(certs["client_cert"], "rb") as f:
        cert = f.read()
    with open(certs["client_key"], "rb") as f:
        key = f.read()
    ok = GRPCSpanExporter(endpoint=tls_col.grpc_address, insecure=False, timeout=5,
                          credentials=grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert))
    assert ok.export(spans) == SpanExportResult.SUCCESS
    wait_for_keys(tls_col, keys)
    # Without a client certificate the handshake fails.
    channel = grpc.secure_channel(tls_col.grpc_address, grpc.ssl_channel_credentials(root_certificates=ca),
                                  options=list(h.GRPC_CHANNEL_OPTIONS))
    with channel:
        r = h.grpc_export(channel, h.request_to_protobuf({"resourceSpans": []}), timeout=5)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r


def test_admin_over_tls(tls_col, certs):
    lab = {"receiver": "otlp", "transport": "http"}
    before = tls_col.scrape()  # over TLS (tls_col.admin_ssl)
    assert before.types.get("agenttrace_receiver_accepted_spans_total") == "counter"
    spans, keys = finished_spans(n=2, name="admin-tls")
    r = h.http_request(tls_col.http_address, "POST", "/v1/traces", encode_spans(spans).SerializeToString(),
                       {"Content-Type": "application/x-protobuf"}, ssl_context=client_ssl(certs))
    assert r.status == 200, r
    after = tls_col.scrape()
    assert after.value("agenttrace_receiver_accepted_spans_total", lab) - \
        before.value("agenttrace_receiver_accepted_spans_total", lab) == 2
    # Plain HTTP to the admin's TLS port: no HTTP answer, only a TLS alert (or nothing) and the close.
    reply = h.raw_exchange(tls_col.admin, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    assert_tls_refusal(reply)
    closed = {"receiver": "admin", "transport": "http", "reason": "tls_handshake"}
    deadline = time.monotonic() + 5
    while tls_col.scrape().value("agenttrace_receiver_connections_closed_total", closed) <= \
            after.value("agenttrace_receiver_connections_closed_total", closed):
        assert time.monotonic() < deadline, "the failed admin handshake was not counted"
        time.sleep(0.1)


def assert_tls_refusal(reply):
    """What a TLS server sends a plaintext client: nothing, or TLS alert records (RFC 8446 §5.1: content type
    21 = alert), never an HTTP response."""
    assert not reply.startswith(b"HTTP/"), "a TLS port answered plain HTTP: %r" % reply[:100]
    pos = 0
    while pos < len(reply):
        assert reply[pos] == 21 and reply[pos + 1] == 3, "not a TLS alert record: %r" % reply[pos:pos + 20]
        pos += 5 + int.from_bytes(reply[pos + 3:pos + 5], "big")


# --- TLS on exporters: one collector forwarding to another -----------------------------------

@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_exporter_tls_and_token_to_a_tls_receiver(start_collector, certs, protocol):
    server = {"cert_file": certs["server_cert"], "key_file": certs["server_key"]}
    backend = start_collector("backend", grpc={}, overrides={
        "receivers": {"otlp": {"protocols": {
            "http": {"tls": server, "auth": {"bearer_tokens": [TOKEN]}},
            "grpc": {"tls": dict(server, client_ca_file=certs["ca"]), "auth": {"bearer_tokens": [TOKEN]}},
        }}}})
    if protocol == "grpc":
        exporter = {"protocol": "grpc", "endpoint": backend.grpc_address,
                    "tls": {"ca_file": certs["ca"], "cert_file": certs["client_cert"], "key_file": certs["client_key"],
                            "server_name_override": "localhost"}}
    else:
        exporter = {"protocol": "http/protobuf", "endpoint": "https://%s" % backend.http_address,
                    "tls": {"ca_file": certs["ca"]}}
    exporter.update({"headers": {"authorization": "Bearer " + TOKEN}, "retry_on_failure": {"enabled": False}})
    forwarder = start_collector("forwarder", overrides={
        "exporters": {"otlp": exporter},
        "service": {"pipelines": {"traces": {"exporters": ["otlp"]}}},
    })
    spans, keys = finished_spans(name="forwarded-" + protocol.replace("/", "-"))
    assert HTTPSpanExporter(endpoint=forwarder.endpoint + "/v1/traces", timeout=5).export(spans) == SpanExportResult.SUCCESS
    wait_for_keys(backend, keys, timeout=15)
