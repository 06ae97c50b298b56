#!/usr/bin/env python3
"""Tail sampling: memory per buffered span, and ingest with tail sampling on vs off.

Memory: holds ~1M spans (decision_wait 1h, so none is decided), each request with its own trace ids,
and reports the growth of the collector's resident memory per span held next to the spans' size on
the wire. Throughput: wrk against `tail_sampling (decision_wait 10s) -> batch -> nop` and against
`batch -> nop`, collector pinned to one core and load to the other, as bench/run measures.

    bench/tail-sampling.py --agenttrace .build/release/agenttrace --payloads bench/.cache/payloads
        [--spans 1000000] [--seconds 20] [--warmup 12]
"""
import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from bench import Collector, measure, wait_for_port  # noqa: E402

PORT, ADMIN = 14318, 18888
POLICIES = """
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 5000}}
      - {name: alerts, type: string_attribute, string_attribute: {key: alert.rule, values: [".+"], enabled_regex_matching: true}}
      - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}"""


def config(directory, name, tail_sampling=None):
    processors = ""
    chain = []
    if tail_sampling:
        processors += f"  tail_sampling:\n{tail_sampling}\n    policies:{POLICIES}\n"
        chain.append("tail_sampling")
    processors += "  batch: {send_batch_size: 8192, timeout: 200ms}\n"
    chain.append("batch")
    path = os.path.join(directory, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""receivers: {{otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:{PORT}", max_request_body_size: 16777216}}}}}}}}
processors:
{processors}exporters: {{nop: {{}}}}
service:
  admin: {{endpoint: "127.0.0.1:{ADMIN}"}}
  telemetry: {{logs: {{level: warn}}}}
  pipelines: {{traces: {{receivers: [otlp], processors: [{", ".join(chain)}], exporters: [nop]}}}}
""")
    return path


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def metric(name):
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def memory(args, directory):
    bodies = []
    with open(os.path.join(args.payloads, "protobuf.list")) as f:
        for path in f.read().split():
            with open(path, "rb") as body:
                bodies.append(body.read())
    spans_per_request = 512
    requests = args.spans // spans_per_request
    wire = sum(len(b) for b in bodies) / len(bodies) / spans_per_request
    # The Collector's sizing hint: about this many new traces a second, for the hour held.
    path = config(directory, "memory", f"    decision_wait: 1h\n    num_traces: 10000000\n"
                                       f"    expected_new_traces_per_sec: {args.spans // 8 // 3600 + 1}")
    process = subprocess.Popen(["taskset", "-c", "0", args.agenttrace, "serve", "--config", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT)
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        warmup = 20
        before = held_before = 0
        for n in range(requests):
            if n == warmup:
                # Buffers, arenas and caches that every request uses have grown by now: measure from here.
                time.sleep(0.5)
                before = rss_bytes(process.pid)
                held_before = metric("agenttrace_tail_sampling_sampling_spans_on_memory")
            # Every request its own trace ids: the ids start A6 E7 00 00 (make-payloads.py).
            stamp = b"\x0a\x10\xa6\xe7" + (n + 1).to_bytes(2, "big")
            body = bodies[n % len(bodies)].replace(b"\x0a\x10\xa6\xe7\x00\x00", stamp)
            for _ in range(100):
                connection.request("POST", "/v1/traces", body, {"content-type": "application/x-protobuf"})
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    break
                time.sleep(0.05)  # the pipeline asked to slow down
            else:
                raise RuntimeError(f"request {n} kept failing: {response.status}")
        want = requests * spans_per_request
        deadline = time.time() + 120
        while metric("agenttrace_tail_sampling_sampling_spans_on_memory") < want and time.time() < deadline:
            time.sleep(0.2)
        held = metric("agenttrace_tail_sampling_sampling_spans_on_memory")
        traces = metric("agenttrace_tail_sampling_sampling_traces_on_memory")
        held_bytes = metric("agenttrace_tail_sampling_sampling_bytes_on_memory")
        after = rss_bytes(process.pid)
    finally:
        process.terminate()
        process.wait()
    growth = (after - before) / (held - held_before)
    growth = (after - before) / held
    print(f"memory: {held:,.0f} spans held in {traces:,.0f} traces; resident memory after the first {held_before:,.0f} "
          f"spans {before / 2**20:,.0f} -> "
          f"{after / 2**20:,.0f} MiB: {growth:,.0f} bytes per span held; on the wire {wire:,.0f} bytes per span "
          f"({growth / wire:.2f}x); the held spans' own bytes: {held_bytes / held:,.0f} per span")


def throughput(args, directory):
    list_file = os.path.join(args.payloads, "protobuf.list")
    rows = []
    for name, settings in (("tail_sampling off: batch -> nop", None),
                           ("tail_sampling on (decision_wait 10s): tail_sampling -> batch -> nop",
                            "    decision_wait: 10s\n    num_traces: 400000")):
        path = config(directory, "on" if settings else "off", settings)
        collector = Collector(name, [args.agenttrace, "serve", "--config", path], PORT, 0)
        result = measure(collector, list_file, 512, args.warmup, args.seconds, 8, 1)
        rows.append((name, result))
        print(f"{name}: {result['spans_per_s']:,.0f} spans/s accepted, {result['failed']} requests refused (503), "
              f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, {result['cpu_per_million']:.2f} CPU s per M spans, "
              f"peak RSS {result['rss']:.0f} MiB")
    off, on = rows[0][1]["spans_per_s"], rows[1][1]["spans_per_s"]
    print(f"on / off: {on / off:.2f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agenttrace", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=12)
    parser.add_argument("--only", choices=["memory", "throughput"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        if args.only != "throughput":
            memory(args, directory)
        if args.only != "memory":
            throughput(args, directory)


if __name__ == "__main__":
    main()
