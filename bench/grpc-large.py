#!/usr/bin/env python3
"""CPU AgentTrace spends per 4 MiB OTLP/gRPC export, on each side of a gRPC call.

  server  a grpcio client sends N ExportTraceServiceRequests of ~4 MiB to the collector's OTLP/gRPC
          receiver (pipeline exporter: nop). Each call must end with grpc-status 0; only those count.
          Reported: collector CPU (utime+stime from /proc/PID/stat) per successful call.
  client  the collector receives the same requests over OTLP/HTTP and forwards each with its `otlp`
          exporter (gRPC) to a grpcio sink. Reported: CPU per forwarded request, minus the CPU the
          same HTTP requests cost with a `nop` exporter (measured in the same run), so what is left is
          the exporter's: encoding the request, gRPC framing, HTTP/2 and the socket.

Every binary given is measured in the same run, one after the other, so before and after sit side by
side:

    bench/grpc-large.py --agenttrace .build/release/agenttrace \
        --baseline ../before/.build/release/agenttrace [--requests 20] [--warmup 3] [--size-mib 4]

`--agenttrace` may be repeated; `--baseline B` is `--agenttrace B` measured first and labelled so.
Needs grpcio and opentelemetry-proto (Tests/Interop/requirements.txt, in .venv). See bench/README.md.
"""
import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import cpu_seconds, wait_for_port  # noqa: E402

EXPORT_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_PATH = f"/{EXPORT_SERVICE}/Export"
GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_request(size_mib):
    """One ExportTraceServiceRequest of just under `size_mib` MiB: agent-like spans with attributes,
    every span with its own ids, serialised once."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value=common_pb2.AnyValue(string_value="planner-agent"))
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "bench.grpc-large"
    target = (size_mib << 20) - 4096
    n = 0
    start = 1_700_000_000_000_000_000
    while True:
        span = scope.spans.add()
        n += 1
        span.trace_id = (0xA6E7 << 112 | n // 8).to_bytes(16, "big")
        span.span_id = (n + 1).to_bytes(8, "big")
        span.name = "chat gpt-4o" if n % 2 else "execute_tool search"
        span.kind = trace_pb2.Span.SPAN_KIND_CLIENT
        span.start_time_unix_nano = start + n * 1000
        span.end_time_unix_nano = start + n * 1000 + 250_000_000
        for key, value in (("gen_ai.system", "openai"), ("gen_ai.request.model", "gpt-4o"),
                           ("gen_ai.operation.name", "chat"), ("agent.name", "planner"),
                           ("gen_ai.prompt", "summarise the findings of step %d for the user" % n)):
            span.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
        span.attributes.add(key="gen_ai.usage.input_tokens", value=common_pb2.AnyValue(int_value=1200 + n % 300))
        if n % 256 == 0 and request.ByteSize() > target:
            break
    while request.ByteSize() > target:
        del scope.spans[-1]
    return request.SerializeToString(), len(scope.spans)


class Sink:
    """A grpcio OTLP/gRPC server that takes each request's bytes unparsed and counts them."""

    def __init__(self):
        import grpc
        from concurrent import futures

        self.count = 0
        self.lock = threading.Lock()

        def export(request, context):
            with self.lock:
                self.count += 1
            return b""  # an empty ExportTraceServiceResponse

        handler = grpc.method_handlers_generic_handler(EXPORT_SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(export, request_deserializer=None, response_serializer=None)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def wait_for(self, count, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.count >= count:
                    return True
            time.sleep(0.01)
        return False

    def stop(self):
        self.server.stop(None)


class Collector:
    def __init__(self, binary, config_text, port):
        self.binary, self.config_text, self.port = binary, config_text, port

    def __enter__(self):
        self.directory = tempfile.TemporaryDirectory()
        path = os.path.join(self.directory.name, "config.yaml")
        with open(path, "w") as f:
            f.write(self.config_text)
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([self.binary, "serve", "--config", path], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port)
        except Exception:
            self.__exit__(*sys.exc_info())
            raise
        return self

    @property
    def cpu(self):
        return cpu_seconds(self.process.pid)

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace").splitlines()[-30:]
            print("--- collector log (last lines) ---\n" + "\n".join(tail), file=sys.stderr)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.directory.cleanup()


def config(receiver, port, admin, exporter):
    if receiver == "grpc":
        protocols = f'grpc: {{endpoint: "127.0.0.1:{port}", max_recv_msg_size_mib: 64}}'
    else:
        protocols = f'http: {{endpoint: "127.0.0.1:{port}", max_request_body_size: 67108864}}'
    return f"""receivers: {{otlp: {{protocols: {{{protocols}}}}}}}
exporters: {{{exporter}}}
service:
  admin: {{endpoint: "127.0.0.1:{admin}"}}
  telemetry: {{logs: {{level: warn}}}}
  pipelines: {{traces: {{receivers: [otlp], exporters: [{exporter.split(":")[0]}]}}}}
"""


def server_side(binary, body, requests, warmup):
    """CPU seconds per successful 4 MiB Export call received over gRPC (exporter nop)."""
    import grpc

    port, admin = free_port(), free_port()
    with Collector(binary, config("grpc", port, admin, "nop: {}"), port) as collector:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
            export = channel.unary_unary(EXPORT_PATH, request_serializer=None, response_deserializer=None)

            def call():
                try:
                    _, outcome = export.with_call(body, timeout=120)
                    return outcome.code() == grpc.StatusCode.OK
                except grpc.RpcError as error:
                    print(f"  call failed: {error.code()} {error.details()}", file=sys.stderr)
                    return False

            for _ in range(warmup):
                call()
            before = collector.cpu
            succeeded = sum(call() for _ in range(requests))
            used = collector.cpu - before
    if succeeded == 0:
        raise RuntimeError(f"{binary}: no gRPC call succeeded")
    return used / succeeded, succeeded


def post_all(port, body, count):
    """POSTs `body` to /v1/traces `count` times, retrying while the collector asks to slow down."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for n in range(count):
        for _ in range(600):
            connection.request("POST", "/v1/traces", body, {"content-type": "application/x-protobuf"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                break
            if response.status not in (429, 503):
                raise RuntimeError(f"POST {n} answered {response.status}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"POST {n} kept being refused")
    connection.close()


def client_side(binary, body, requests, warmup):
    """CPU seconds per 4 MiB request forwarded by the otlp gRPC exporter, minus the HTTP receive's."""
    sink = Sink()
    try:
        port, admin = free_port(), free_port()
        exporter = f'otlp: {{endpoint: "127.0.0.1:{sink.port}", timeout: 120s}}'
        with Collector(binary, config("http", port, admin, exporter), port) as collector:
            post_all(port, body, warmup)
            if not sink.wait_for(warmup, 300):
                raise RuntimeError(f"{binary}: the sink did not get the warm-up requests")
            before = collector.cpu
            post_all(port, body, requests)
            if not sink.wait_for(warmup + requests, 600):
                raise RuntimeError(f"{binary}: the sink got {sink.count - warmup} of {requests} requests")
            forwarded = collector.cpu - before
    finally:
        sink.stop()
    port, admin = free_port(), free_port()
    with Collector(binary, config("http", port, admin, "nop: {}"), port) as collector:
        post_all(port, body, warmup)
        time.sleep(0.5)
        before = collector.cpu
        post_all(port, body, requests)
        time.sleep(0.5)  # as long as the forwarding run had to finish after its last POST, at most
        received = collector.cpu - before
    return (forwarded - received) / requests, forwarded / requests, received / requests


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agenttrace", action="append", default=[], help="a binary to measure (repeatable)")
    parser.add_argument("--baseline", help="an earlier build, measured first and labelled baseline")
    parser.add_argument("--requests", type=int, default=20, help="measured requests per side (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="requests sent before measuring (default 3)")
    parser.add_argument("--size-mib", type=int, default=4, help="request size in MiB (default 4)")
    parser.add_argument("--only", choices=["server", "client"], help="measure one side only")
    args = parser.parse_args()
    binaries = ([("baseline", args.baseline)] if args.baseline else []) + [(os.path.basename(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(b))))) or b, b) for b in args.agenttrace]
    if not binaries:
        parser.error("give --agenttrace BINARY (and --baseline BINARY to compare)")
    body, spans = make_request(args.size_mib)
    print(f"request: {len(body)} bytes ({len(body) / (1 << 20):.2f} MiB), {spans} spans; "
          f"{args.requests} measured after {args.warmup} warm-up, per binary and side")
    rows = []
    for label, binary in binaries:
        row = {"label": label, "binary": binary}
        if args.only in (None, "server"):
            row["server"], row["calls"] = server_side(binary, body, args.requests, args.warmup)
        if args.only in (None, "client"):
            row["client"], row["forward"], row["receive"] = client_side(binary, body, args.requests, args.warmup)
        rows.append(row)
    print()
    print("| build | server: CPU ms per 4 MiB call received (ok calls) | client: CPU ms per 4 MiB export "
          "(forward - receive only) | binary |")
    print("| --- | ---: | ---: | --- |")
    for row in rows:
        server = f"{row['server'] * 1000:.1f} ({row['calls']})" if "server" in row else "-"
        client = (f"{row['client'] * 1000:.1f} ({row['forward'] * 1000:.1f} - {row['receive'] * 1000:.1f})"
                  if "client" in row else "-")
        print(f"| {row['label']} | {server} | {client} | `{row['binary']}` |")


if __name__ == "__main__":
    main()
