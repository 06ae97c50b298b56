#!/usr/bin/env python3
"""Writes benchmark payloads: COUNT binary OTLP ExportTraceServiceRequests of SPANS realistic agent spans
each, every request with its own trace ids, plus a gRPC-framed copy of each (5-byte length prefix) for
h2load. Deterministic for a given seed. Two shapes:

- `agent` (default): about 420 bytes a span on the wire, 8-span traces, the context every agent SDK attaches;
- `small`: about 155 bytes a span, 16-span agent traces (an LLM call, a tool call or a delegation with
  a handful of attributes) — the shape where per-span overhead, not decoding bytes, decides the rate.

    bench/make-payloads.py OUT_DIR [--count 128] [--spans 512] [--shape agent|small]
"""
import argparse
import os
import random
import struct

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SERVICES = ["coordinator-main", "planner-agent", "research-agent", "coder-agent"]
MODELS = [("openai", "gpt-4o-2024-08-06"), ("anthropic", "claude-sonnet-4-20250514")]
TOOLS = ["web_search", "read_file", "run_tests", "query_database"]


def kv(key, value):
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_request(rng, index, spans_per_request, base_ns):
    request = ExportTraceServiceRequest()
    per_service = spans_per_request // len(SERVICES)
    for service_index, service in enumerate(SERVICES):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend([
            kv("service.name", service), kv("service.version", "1.8.2"), kv("deployment.environment", "production"),
            kv("telemetry.sdk.language", "python"), kv("telemetry.sdk.name", "opentelemetry"), kv("telemetry.sdk.version", "1.45.2"),
        ])
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "agenttrace.bench"
        scope_spans.scope.version = "0.1.0"
        count = per_service if service_index < len(SERVICES) - 1 else spans_per_request - per_service * (len(SERVICES) - 1)
        for n in range(count):
            trace_number = n // 8  # eight spans a trace
            span = scope_spans.spans.add()
            span.trace_id = struct.pack(">QQ", 0xA6E7_0000_0000_0000 | index, (service_index << 32) | trace_number + 1)
            span.span_id = struct.pack(">Q", rng.getrandbits(63) | 1)
            if n % 8:
                span.parent_span_id = struct.pack(">Q", rng.getrandbits(63) | 1)
            start = base_ns + index * 1_000_000_000 + n * 1_000_000
            span.start_time_unix_nano = start
            span.end_time_unix_nano = start + rng.randint(2_000_000, 900_000_000)
            kind = n % 4
            if kind == 0:
                system, model = MODELS[n % 2]
                span.name = f"chat {model}"
                span.kind = Span.SPAN_KIND_CLIENT
                span.attributes.extend([
                    kv("gen_ai.operation.name", "chat"), kv("gen_ai.system", system), kv("gen_ai.request.model", model),
                    kv("gen_ai.response.model", model), kv("gen_ai.usage.input_tokens", rng.randint(200, 9000)),
                    kv("gen_ai.usage.output_tokens", rng.randint(20, 1500)), kv("gen_ai.agent.name", service),
                    kv("server.address", "api.example.com"),
                ])
            elif kind == 1:
                tool = TOOLS[n % len(TOOLS)]
                span.name = f"execute_tool {tool}"
                span.kind = Span.SPAN_KIND_INTERNAL
                span.attributes.extend([
                    kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", tool),
                    kv("gen_ai.tool.call.id", f"call_{rng.getrandbits(48):012x}"), kv("agent.step", n),
                ])
            elif kind == 2:
                span.name = "POST /v1/delegate"
                span.kind = Span.SPAN_KIND_CLIENT
                span.attributes.extend([
                    kv("http.request.method", "POST"), kv("url.full", "http://planner-agent:8080/v1/delegate"),
                    kv("http.response.status_code", 200), kv("peer.service", SERVICES[(service_index + 1) % len(SERVICES)]),
                    kv("agent.task.id", f"task-{rng.getrandbits(32):08x}"),
                ])
            else:
                span.name = "SELECT agent_memory"
                span.kind = Span.SPAN_KIND_CLIENT
                span.attributes.extend([
                    kv("db.system", "postgresql"), kv("db.name", "agents"),
                    kv("db.statement", "SELECT content FROM memory WHERE agent_id = $1 ORDER BY created_at DESC LIMIT 20"),
                    kv("server.address", "postgres"), kv("server.port", 5432),
                ])
            # Context every agent SDK attaches to every span.
            span.attributes.extend([
                kv("agent.name", service), kv("session.id", f"{rng.getrandbits(64):016x}-{rng.getrandbits(64):016x}"),
                kv("thread.id", 1 + n % 4),
            ])
            if kind == 0:
                span.attributes.extend([
                    kv("gen_ai.request.temperature", 0.2), kv("gen_ai.request.max_tokens", 4096),
                    kv("gen_ai.response.id", f"chatcmpl-{rng.getrandbits(96):024x}"),
                    KeyValue(key="gen_ai.response.finish_reasons", value=AnyValue(array_value={"values": [AnyValue(string_value="stop")]})),
                ])
                event = span.events.add()
                event.name = "gen_ai.choice"
                event.time_unix_nano = span.end_time_unix_nano
            if rng.random() < 0.03:
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = "upstream timed out"
    return request


def make_small_request(rng, index, spans_per_request, base_ns):
    """Small spans in 16-span traces: one resource per service, each trace's spans inside one service."""
    request = ExportTraceServiceRequest()
    per_service = spans_per_request // len(SERVICES)
    for service_index, service in enumerate(SERVICES):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend([kv("service.name", service), kv("telemetry.sdk.language", "python")])
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = "agents"
        count = per_service if service_index < len(SERVICES) - 1 else spans_per_request - per_service * (len(SERVICES) - 1)
        root = 0
        for n in range(count):
            trace_number = n // 16
            span = scope_spans.spans.add()
            # The same A6 E7 00 00 start as the agent shape: bench/rotate.lua stamps each request's trace ids there.
            span.trace_id = struct.pack(">QQ", 0xA6E7_0000_0000_0000 | index, (service_index << 32) | trace_number + 1)
            span.span_id = struct.pack(">Q", rng.getrandbits(63) | 1)
            if n % 16 == 0:
                root = span.span_id
            else:
                span.parent_span_id = root
            start = base_ns + index * 1_000_000_000 + n * 1_000_000
            span.start_time_unix_nano = start
            span.end_time_unix_nano = start + rng.randint(1_000_000, 400_000_000)
            kind = n % 3
            if n % 16 == 0:
                span.name = "invoke_agent"
                span.kind = Span.SPAN_KIND_SERVER
            elif kind == 0:
                span.name = "chat"
                span.kind = Span.SPAN_KIND_CLIENT
                span.attributes.extend([kv("gen_ai.request.model", MODELS[n % 2][1][:6]),
                                        kv("gen_ai.usage.input_tokens", rng.randint(200, 9000)),
                                        kv("gen_ai.usage.output_tokens", rng.randint(20, 1500))])
            elif kind == 1:
                span.name = "execute_tool"
                span.attributes.extend([kv("gen_ai.tool.name", TOOLS[n % len(TOOLS)])])
            else:
                span.name = "delegate"
                span.kind = Span.SPAN_KIND_CLIENT
                span.attributes.extend([kv("peer.service", SERVICES[(service_index + 1) % len(SERVICES)])])
            span.attributes.extend([kv("agent.name", service)])
            if rng.random() < 0.03:
                span.status.code = Status.STATUS_CODE_ERROR
    return request


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--shape", choices=["agent", "small"], default="agent")
    args = parser.parse_args()
    make = make_small_request if args.shape == "small" else make_request
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(20261129)
    base_ns = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
    protobuf_list, grpc_list, sizes = [], [], []
    for index in range(args.count):
        body = make(rng, index, args.spans, base_ns).SerializeToString()
        sizes.append(len(body))
        path = os.path.join(args.out, f"request-{index:04d}.pb")
        with open(path, "wb") as f:
            f.write(body)
        framed = os.path.join(args.out, f"request-{index:04d}.grpc")
        with open(framed, "wb") as f:
            f.write(b"\x00" + struct.pack(">I", len(body)) + body)
        protobuf_list.append(os.path.abspath(path))
        grpc_list.append(os.path.abspath(framed))
    with open(os.path.join(args.out, "protobuf.list"), "w") as f:
        f.write("\n".join(protobuf_list) + "\n")
    with open(os.path.join(args.out, "grpc.list"), "w") as f:
        f.write("\n".join(grpc_list) + "\n")
    mean = sum(sizes) / len(sizes)
    with open(os.path.join(args.out, "bytes-per-span"), "w") as f:
        f.write(f"{mean / args.spans:.0f}\n")
    print(f"payloads ({args.shape}): {args.count} requests x {args.spans} spans, {mean / 1024:.0f} KiB each, {mean / args.spans:.0f} B/span")


if __name__ == "__main__":
    main()
