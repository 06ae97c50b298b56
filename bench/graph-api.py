#!/usr/bin/env python3
"""How fast /api/service-graph answers for a large graph while the collector ingests.

Builds a graph of NODES services and EDGES client->server edges (pairs of CLIENT/SERVER spans posted as
OTLP/JSON), then, while wrk posts the benchmark payloads, times GET /api/service-graph for a while and
prints p50/p99. The collector runs pinned to one core, wrk and this script to the other.

    bench/graph-api.py --agenttrace PATH --payloads DIR [--nodes 1000] [--edges 10000] [--seconds 10]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from bench import wait_for_port  # noqa: E402


def post(port, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=body,
                                     headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status


def span(trace, span_id, parent, kind, start):
    value = {"traceId": trace, "spanId": span_id, "name": "call", "kind": kind,
             "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 20_000_000)}
    if parent:
        value["parentSpanId"] = parent
    return value


def graph_requests(nodes, edges, seed=7):
    rng = random.Random(seed)
    pairs = set()
    while len(pairs) < edges:
        a, b = rng.randrange(nodes), rng.randrange(nodes)
        if a != b:
            pairs.add((a, b))
    now = time.time_ns()
    by_service = {}
    for n, (a, b) in enumerate(sorted(pairs)):
        trace = "%032x" % (n + 1)
        client, server = "%016x" % (2 * n + 1), "%016x" % (2 * n + 2)
        by_service.setdefault(a, []).append(span(trace, client, None, 3, now))
        by_service.setdefault(b, []).append(span(trace, server, client, 2, now + 1_000_000))
    services = sorted(by_service)
    for start in range(0, len(services), 50):
        resource_spans = [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc-%04d" % s}}]},
                           "scopeSpans": [{"spans": by_service[s]}]} for s in services[start:start + 50]]
        yield json.dumps({"resourceSpans": resource_spans}).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agenttrace", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=10000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    port, admin = 14318, 18888
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{port}"}}}}}}}}
processors: {{service_graph: {{max_edges: {args.edges * 2}, store: {{max_items: 100000}}}}, batch: {{}}}}
exporters: {{nop: {{}}}}
service:
  admin: {{endpoint: "127.0.0.1:{admin}"}}
  telemetry: {{logs: {{level: warn}}}}
  pipelines: {{traces: {{receivers: [otlp], processors: [service_graph, batch], exporters: [nop]}}}}
""")
        collector = subprocess.Popen(["taskset", "-c", "0", args.agenttrace, "serve", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            for body in graph_requests(args.nodes, args.edges):
                post(port, body)
            deadline = time.time() + 30
            while True:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/service-graph", timeout=30) as response:
                    graph = json.load(response)
                if len(graph["edges"]) >= args.edges or time.time() > deadline:
                    break
                time.sleep(0.5)
            print(f"graph: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges")
            load = subprocess.Popen(["taskset", "-c", "1", "wrk", "-t1", "-c4", f"-d{args.seconds + 2}s", "-s",
                                     os.path.join(BENCH, "rotate.lua"), f"http://127.0.0.1:{port}/v1/traces", "--",
                                     os.path.join(args.payloads, "protobuf.list")], stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            latencies = []
            end = time.time() + args.seconds
            while time.time() < end:
                started = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/service-graph", timeout=30) as response:
                    response.read()
                latencies.append((time.perf_counter() - started) * 1000)
            output = load.communicate()[0]
            latencies.sort()
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            rps = next((l.split()[1] for l in output.splitlines() if l.startswith("Requests/sec")), "?")
            print(f"/api/service-graph under ingest: {len(latencies)} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                  f"ingest meanwhile {rps} requests/s of 512 spans")
        finally:
            collector.terminate()
            collector.wait()


if __name__ == "__main__":
    main()
