#!/usr/bin/env python3
"""How fast the live view's endpoints answer with 10,000 traces stored and 1,000 graph nodes.

Starts the collector (service_graph, threshold_triggers, anomaly_detection and a memory exporter of 10,000
traces), posts EDGES client->server pairs among NODES services (one trace each), then single-span traces
until TRACES are stored, then times each endpoint the view
calls (the page and its assets, the graph, alerts, incidents, Jaeger's query API as the Traces tab and a
node's details call it, /metrics) over one kept-alive connection, idle, and prints p50/p99 per endpoint,
side by side with plain /api/service-graph. The goal (issue 19) is p99 < 100 ms.

    bench/live-view.py --agenttrace PATH [--nodes 1000] [--edges 2000] [--traces 10000] [--requests 200]
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from bench import wait_for_port  # noqa: E402

sys.path.insert(0, BENCH)
graph_api = __import__("graph-api")


def lone_traces(nodes, count, first):
    """`count` traces of one root SERVER span each (a `user -> svc` edge, so every service is a node), spread
    over the services, 500 to a request."""
    now = time.time_ns()
    for start in range(0, max(0, count), 500):
        spans = {}
        for n in range(start, min(count, start + 500)):
            trace = "%032x" % (first + n)
            spans.setdefault(n % nodes, []).append({
                "traceId": trace, "spanId": "%016x" % (first + n), "name": "handle", "kind": 2,
                "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 5_000_000)})
        yield json.dumps({"resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc-%04d" % s}}]},
             "scopeSpans": [{"spans": list_}]} for s, list_ in spans.items()]}).encode()


def timed(connection, path, count):
    latencies = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], size


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agenttrace", required=True)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--edges", type=int, default=2000)
    parser.add_argument("--traces", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    port, admin = 14328, 18898
    with tempfile.TemporaryDirectory() as directory:
        config = os.path.join(directory, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""
receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{port}"}}}}}}}}
processors:
  service_graph: {{max_edges: {args.edges * 2}, store: {{max_items: 100000}}}}
  threshold_triggers: {{rules: [{{name: slow, severity: warning, duration_above: 1h}}]}}
  anomaly_detection: {{}}
  batch: {{}}
exporters: {{memory: {{max_traces: {args.traces}}}}}
service:
  admin: {{endpoint: "127.0.0.1:{admin}"}}
  telemetry: {{logs: {{level: warn}}}}
  pipelines: {{traces: {{receivers: [otlp], processors: [anomaly_detection, threshold_triggers, service_graph, batch], exporters: [memory]}}}}
""")
        collector = subprocess.Popen(["taskset", "-c", "0", args.agenttrace, "serve", "--config", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            for body in graph_api.graph_requests(args.nodes, args.edges):
                graph_api.post(port, body)
            for body in lone_traces(args.nodes, args.traces - args.edges, first=args.edges + 1):
                graph_api.post(port, body)
            connection = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
            deadline = time.time() + 60
            while True:
                connection.request("GET", "/metrics")
                metrics = connection.getresponse().read().decode()
                stored = sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("agenttrace_memory_traces"))
                connection.request("GET", "/api/service-graph")
                graph = json.loads(connection.getresponse().read())
                # root SERVER spans wait out the pairing store's ttl before their user -> svc edge counts
                if (stored >= args.traces and len(graph["nodes"]) >= args.nodes) or time.time() > deadline:
                    break
                time.sleep(0.5)
            print(f"graph: {len(graph['nodes'])} nodes, {len(graph['edges'])} edges; {int(stored)} traces stored")
            connection.request("GET", "/api/traces?service=svc-0001&limit=1")
            some_trace = json.loads(connection.getresponse().read())["data"][0]["traceID"]
            now = int(time.time() * 1e6)
            paths = [
                ("page", "/"),
                ("script", "/ui/app.js"),
                ("Agents: graph (plain /api/service-graph)", "/api/service-graph"),
                ("Incidents: alerts", "/api/alerts?limit=200"),
                ("Incidents: incidents", "/api/incidents?limit=100"),
                ("Traces: services", "/api/services"),
                ("Traces: operations", "/api/services/svc-0001/operations"),
                ("Traces: search, one agent, last hour", "/api/traces?" + urllib.parse.urlencode(
                    {"service": "svc-0001", "limit": 50, "start": now - 3_600_000_000, "end": now + 60_000_000})),
                ("Traces: search that matches nothing (scans all)", "/api/traces?" + urllib.parse.urlencode(
                    [("service", "svc-0001"), ("tag", "error:true"), ("limit", 50)])),
                ("Agents: node details (recent traces)", "/api/traces?service=svc-0001&limit=10"),
                ("Traces: one trace", "/api/traces/" + some_trace),
                ("Collector: /api/self-metrics", "/api/self-metrics"),
                ("(for comparison: all of /metrics)", "/metrics"),
            ]
            print(f"{'endpoint':52} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>10}")
            for label, path in paths:
                p50, p99, size = timed(connection, path, args.requests)
                print(f"{label:52} {p50:8.1f} {p99:8.1f} {size:10d}")
        finally:
            collector.terminate()
            collector.wait()


if __name__ == "__main__":
    main()
