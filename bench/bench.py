#!/usr/bin/env python3
"""AgentTrace side by side with rotel, in one run, on this machine.

Each collector runs pinned to one core (taskset), the load generator to another. For every row it
measures, after a warm-up, for a fixed duration: spans/s (successful requests x spans per request),
latency p50/p99 as the load generator saw it, CPU seconds per million spans (from /proc), peak RSS,
and the load generator's own CPU share (a row where it is near 100% measured the load generator).
A request counts only when it succeeded: for AgentTrace rows the collector's own accepted-span
counter is read around the measured window, so a gRPC call answered with HTTP 200 but a non-zero
grpc-status (h2load counts those as succeeded) is a failure. Every row is measured `--repeat` times,
rotel and AgentTrace taking turns, and shown as median (min-max). Prints one table and writes it as
markdown under bench/results/.

Called by bench/run; see bench/README.md.
"""
import argparse
import datetime
import os
import platform
import resource
import statistics
import urllib.request
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_costs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wait_for_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def require_free_port(port):
    """Fails when something already listens on `port` (a sink left behind by a run killed with SIGKILL): waiting
    for the port would otherwise find that process and measure against it."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            pass
    except OSError:
        return
    raise RuntimeError(f"127.0.0.1:{port} is already taken by another process; stop it and run again")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def parse_duration_ms(text):
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def run_wrk(port, list_file, seconds, connections, load_core):
    command = pinned(load_core, ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-s", os.path.join(BENCH, "rotate.lua"), f"http://127.0.0.1:{port}/v1/traces", "--", list_file])
    output, load_cpu = run_load_generator(command)
    if "Latency Distribution" not in output:
        raise RuntimeError(f"wrk completed no request:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(x) for x in socket_errors.groups())
    p50 = parse_duration_ms(re.search(r"50%\s+(\S+)", output).group(1))
    p99 = parse_duration_ms(re.search(r"99%\s+(\S+)", output).group(1))
    return {"ok": max(requests - failed, 0), "failed": failed, "p50": p50, "p99": p99, "raw": output, "load_cpu": load_cpu}


def run_load_generator(command):
    """Runs a load generator to its end; returns its output and the CPU seconds it used (its own rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return output, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pinned(core, command):
    """`command` pinned to `core` with taskset; unpinned when core is None."""
    return command if core is None else ["taskset", "-c", str(core)] + command


def run_h2load(port, body_file, seconds, connections, streams, load_core):
    command = pinned(load_core, ["h2load", f"-c{connections}", f"-m{streams}", "-t1", f"-D{seconds}",
                                 "-d", body_file, "-H", "content-type: application/grpc", "-H", "te: trailers",
                                 f"http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"])
    output, load_cpu = run_load_generator(command)
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", output)
    succeeded, failed, errored = int(match.group(4)), int(match.group(5)), int(match.group(6))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", output).group(1)
    return {"ok": succeeded, "failed": failed + errored, "mean": parse_duration_ms(mean), "raw": output, "load_cpu": load_cpu}


class Collector:
    """A collector process; `admin_port`: where AgentTrace serves /metrics (None for rotel)."""
    def __init__(self, name, command, port, core, env=None, admin_port=None):
        self.name, self.command, self.port, self.core, self.env, self.admin_port = name, command, port, core, env, admin_port

    def spans_counted(self):
        """AgentTrace's own counters: (spans accepted, requests refused as backpressure: HTTP 503/429, gRPC
        UNAVAILABLE/RESOURCE_EXHAUSTED); None for a collector without them."""
        if self.admin_port is None:
            return None
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10).read().decode()
        accepted = refused = 0.0
        for line in text.splitlines():
            if line.startswith("agenttrace_receiver_accepted_spans_total"):
                accepted += float(line.rsplit(" ", 1)[1])
            elif line.startswith("agenttrace_receiver_requests_total") and any(
                    f'code="{code}"' in line for code in ("503", "429", "UNAVAILABLE", "RESOURCE_EXHAUSTED")):
                refused += float(line.rsplit(" ", 1)[1])
        return accepted, refused

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(pinned(self.core, self.command), stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})})
        wait_for_port(self.port)
        return self

    def log_tail(self, lines=40):
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def __exit__(self, *exc):
        if exc[0] is not None:
            print(f"--- {self.name} log (last lines) ---\n{self.log_tail()}", file=sys.stderr)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_load(collector, list_file, seconds, connections, load_core, grpc_body=None):
    """The row's load for `seconds`: h2load sending `grpc_body` over gRPC (no latency percentiles), else wrk
    posting the bodies of `list_file` over HTTP."""
    if grpc_body:
        result = run_h2load(collector.port, grpc_body, seconds, connections, 16, load_core)
        result["p50"] = result["p99"] = float("nan")
        return result
    return run_wrk(collector.port, list_file, seconds, connections, load_core)


def measure(collector, list_file, spans_per_request, warmup, seconds, connections, load_core, grpc_body=None):
    with collector:
        run_load(collector, list_file, warmup, connections, load_core, grpc_body)
        counted_before = collector.spans_counted()
        cpu_before = cpu_seconds(collector.process.pid)
        started = time.time()
        result = run_load(collector, list_file, seconds, connections, load_core, grpc_body)
        elapsed = time.time() - started
        cpu = cpu_seconds(collector.process.pid) - cpu_before
        counted_after = collector.spans_counted()
        rss = peak_rss_mib(collector.process.pid)
        if collector.process.poll() is not None:
            raise RuntimeError(f"{collector.name} exited during the run")
    ok, failed, refused = result["ok"], result["failed"], 0
    if counted_before is not None:
        # What the collector itself took: a request the load generator saw succeed but whose spans were
        # not accepted (a gRPC call with grpc-status != 0) is a failure. Requests still in flight when
        # the window closed may be counted on either side: the difference is at most the streams open.
        accepted = (counted_after[0] - counted_before[0]) / spans_per_request
        if accepted < ok - connections * 16:
            failed += ok - int(accepted)
            ok = int(accepted)
        # Refusals because the pipeline is full (503 / UNAVAILABLE with retry) are backpressure working,
        # shown in their own column; every other unsuccessful request is a failure.
        refused = int(counted_after[1] - counted_before[1])
        failed = max(failed - refused, 0)
    spans = ok * spans_per_request
    return {
        "spans_per_s": spans / seconds,
        "p50": result["p50"], "p99": result["p99"], "mean": result.get("mean"),
        "cpu_per_million": cpu / (spans / 1e6) if spans else float("nan"),
        "rss": rss, "failed": failed, "refused": refused, "elapsed": elapsed, "load_share": result["load_cpu"] / elapsed,
    }


def profile_run(collector, list_file, warmup, seconds, connections, load_core, grpc_body=None):
    """One more run of a row, under `perf record -g` (999 Hz) for its measured window: where its CPU goes
    (`profile_costs.shares`). Kept apart from the measured rounds, whose figures perf would lower."""
    with collector, tempfile.TemporaryDirectory() as directory:
        run_load(collector, list_file, warmup, connections, load_core, grpc_body)
        data = os.path.join(directory, "perf.data")
        try:
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(collector.process.pid), "-o", data,
                                     "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            print("no profile: perf is not installed (scripts/install-deps --bench)", file=sys.stderr)
            return None
        run_load(collector, list_file, seconds + 1, connections, load_core, grpc_body)
        _, errors = perf.communicate()
        if perf.returncode != 0 or not os.path.exists(data):
            # perf_event_paranoid, a container without perf events: the row keeps its figures, without a profile.
            print(f"no profile: perf record failed: {errors.strip()[-300:]}", file=sys.stderr)
            return None
        return profile_costs.read_profile(data)


# Tail sampling alone: traces with an error kept, and a 10% probabilistic baseline; WAIT is its decision_wait.
TAIL_SAMPLING_CONFIG = """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors:
  tail_sampling: {decision_wait: WAIT, num_traces: 1000000, policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}]}
  batch: {send_batch_size: 8192, timeout: 200ms}
exporters: {nop: {}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [tail_sampling, batch], exporters: [nop]}}
"""

AGENTTRACE_CONFIGS = {
    "ingest -> nop": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}, grpc: {endpoint: "127.0.0.1:GRPCPORT"}}}}
exporters: {nop: {}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], exporters: [nop]}}
""",
    "batch -> nop": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {nop: {}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [nop]}}
""",
    "tail_sampling, batch -> nop": TAIL_SAMPLING_CONFIG.replace("WAIT", "10s"),
    # The same with a 2 s decision_wait: the measured window (after 5 s of warm-up) is all steady state, traces
    # decided and their memory written again, where the 10 s row's first half is the store filling up.
    "tail_sampling 2s, batch -> nop": TAIL_SAMPLING_CONFIG.replace("WAIT", "2s"),
    "batch -> otlp/http (local sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: http/protobuf, endpoint: "http://127.0.0.1:SINKPORT"}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}}
""",
    "batch -> otlp gRPC (AgentTrace nop sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: grpc, endpoint: "127.0.0.1:GRPCSINKPORT"}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}}
""",
    # The routing tier (docs/scaling.md): a router whose loadbalancing exporter sends every span on to one
    # replica (the AgentTrace nop sink); compare with "ingest -> nop", the replica taking the spans directly.
    "router: loadbalancing -> 1 replica (AgentTrace nop sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
exporters:
  loadbalancing:
    protocol: {otlp: {timeout: 10s}}
    resolver: {static: {hostnames: ["127.0.0.1:GRPCSINKPORT"]}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}
""",
    "batch -> otlp/http with storage (local sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: http/protobuf, endpoint: "http://127.0.0.1:SINKPORT", sending_queue: {storage: "STORAGE"}}}
service:
  admin: {endpoint: "127.0.0.1:ADMINPORT"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}}
""",
}


def default_chain_config(agenttrace, exporter):
    """The embedded default configuration (`agenttrace validate --print-default`): its whole processor
    chain, on the benchmark's ports, exporting to `exporter` ({name: settings}) instead of the file."""
    import yaml
    text = subprocess.run([agenttrace, "validate", "--print-default"], capture_output=True, text=True, check=True).stdout
    config = yaml.safe_load(text)
    config["receivers"]["otlp"]["protocols"] = {"http": {"endpoint": "127.0.0.1:PORT"}}
    config["exporters"] = exporter
    config["service"]["admin"] = {"endpoint": "127.0.0.1:ADMINPORT"}
    config["service"]["telemetry"] = {"logs": {"level": "warn"}}
    config["service"]["pipelines"]["traces"]["exporters"] = list(exporter)
    # No alert sink: alerts are still evaluated and listed at /api/alerts.
    config["processors"]["threshold_triggers"]["notify"] = []
    return yaml.safe_dump(config, sort_keys=False)


def default_chain_without(agenttrace, processor):
    """The embedded default chain -> nop without one processor (its cost is the difference)."""
    import yaml
    config = yaml.safe_load(default_chain_config(agenttrace, {"nop": {}}))
    if processor not in config["service"]["pipelines"]["traces"]["processors"]:
        return None
    config["service"]["pipelines"]["traces"]["processors"].remove(processor)
    del config["processors"][processor]
    return yaml.safe_dump(config, sort_keys=False)


def summarize(results):
    """Median (and min, max) spans/s of repeated measurements of one row; other columns by median."""
    rates = [r["spans_per_s"] for r in results]
    def median(key):
        values = [r[key] for r in results if r.get(key) is not None]
        return statistics.median(values) if values else None
    return {
        "spans_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
        "p50": median("p50"), "p99": median("p99"), "mean": median("mean"),
        "cpu_per_million": median("cpu_per_million"), "rss": max(r["rss"] for r in results),
        "failed": sum(r["failed"] for r in results), "refused": sum(r["refused"] for r in results), "load_share": max(r["load_share"] for r in results),
    }


# Issue 17's table: each figure is a ratio of two rows of the same run, with its goal (at least, or for
# service_graph's cost at most a drop of). Figures whose rows were not measured are left out.
CHAIN_PROCESSORS = "enrichment, anomaly_detection, triggers, service_graph, tail_sampling 10s, batch"
CHAIN = f"default chain ({CHAIN_PROCESSORS}) -> nop"
PINNED_GOALS = [
    ("ingest -> nop vs rotel, OTLP/HTTP", "AgentTrace ingest -> nop, OTLP/HTTP{s}", "rotel (blackhole), OTLP/HTTP{s}", 1.3),
    ("ingest -> nop vs rotel, OTLP/gRPC", "AgentTrace ingest -> nop, OTLP/gRPC{s}", "rotel (blackhole), OTLP/gRPC{s}", 1.3),
    ("default chain -> nop vs rotel raw", f"AgentTrace {CHAIN}, OTLP/HTTP{{s}}", "rotel (blackhole), OTLP/HTTP{s}", (0.8, 0.5)),
    ("tail_sampling alone vs batch alone", "AgentTrace tail_sampling, batch -> nop, OTLP/HTTP{s}",
     "AgentTrace batch -> nop, OTLP/HTTP{s}", 0.8),
    ("service_graph on vs off (default chain)", f"AgentTrace {CHAIN}, OTLP/HTTP{{s}}",
     "AgentTrace default chain without service_graph -> nop, OTLP/HTTP{s}", 0.85),
    ("default chain -> zipkin vs -> nop", "AgentTrace default chain -> zipkin (JSON, local sink), OTLP/HTTP{s}",
     f"AgentTrace {CHAIN}, OTLP/HTTP{{s}}", 0.85),
    ("default chain -> otlp vs -> nop", "AgentTrace default chain -> otlp gRPC (AgentTrace nop sink), OTLP/HTTP{s}",
     f"AgentTrace {CHAIN}, OTLP/HTTP{{s}}", 0.85),
]
UNPINNED_GOALS = [
    ("both cores: batch -> nop vs rotel", "AgentTrace batch -> nop, OTLP/HTTP{s}", "rotel (blackhole), OTLP/HTTP{s}", 2.0),
    ("both cores: default chain vs rotel raw", f"AgentTrace {CHAIN}, OTLP/HTTP{{s}}", "rotel (blackhole), OTLP/HTTP{s}", 1.0),
]


def goals_table(rates, unpinned, profiles=None, cpu=None):
    """Issue 17's figures from this run's rows: `| figure | payload | measured | goal | met |`, and with
    `profiles` (row -> `profile_costs.shares`) and `cpu` (row -> CPU s per M spans) a last column for a goal
    not met: what the row spends a span beyond the row it is compared with, part by part (against rotel,
    beyond AgentTrace's own ingest -> nop on the same transport and payload)."""
    profiles = profiles or {}
    lines = ["| figure | payload | measured | goal | met |" + (" where the gap goes (perf, µs a span) |" if profiles else ""),
             "|---|---|---|---|---|" + ("---|" if profiles else "")]
    for figure, numerator, denominator, goal in (UNPINNED_GOALS if unpinned else PINNED_GOALS):
        for index, (suffix, payload) in enumerate(((("", "agent"), (" [small spans]", "small")))):
            top, bottom = rates.get(numerator.format(s=suffix)), rates.get(denominator.format(s=suffix))
            if not top or not bottom:
                continue
            wanted = goal[index] if isinstance(goal, tuple) else goal
            ratio = top / bottom
            # A ratio just under its goal gets another digit, so it never reads as the goal itself.
            close = ratio < wanted and round(ratio, 2) >= wanted
            if figure.startswith("service_graph"):
                measured, target = f"{(ratio - 1) * 100:+.{2 if close else 0}f}%", f">= {(wanted - 1) * 100:+.0f}%"
            else:
                measured, target = f"{ratio:.{3 if close else 2}f}x", f">= {wanted:g}x"
            line = f"| {figure} | {payload} | {measured} | {target} | {'yes' if ratio >= wanted else 'no'} |"
            if profiles:
                row, base = numerator.format(s=suffix), denominator.format(s=suffix)
                prefix = ""
                if base.startswith("rotel"):
                    base = "AgentTrace ingest -> nop, " + base.rsplit(", ", 1)[1]
                    prefix = "beyond ingest -> nop: "
                gap = ""
                if ratio < wanted and row in profiles and base in profiles:
                    gap = prefix + profile_costs.gap_line(profiles[row], cpu[row], profiles[base], cpu[base])
                line += f" {gap} |"
            lines.append(line)
    return "\n".join(lines) if len(lines) > 2 else ""


def main():
    # SIGTERM (a `kill`, a CI timeout) ends the run through its `finally`s, so no sink is left holding a port.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser()
    parser.add_argument("--agenttrace", required=True)
    parser.add_argument("--baseline", help="another agenttrace binary (an earlier build): each AgentTrace row is measured "
                                           "with it and with --agenttrace, the two taking turns going first row by row, so before/after "
                                           "sit side by side in one run")
    parser.add_argument("--rotel", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--small-payloads", help="a second payload set (make-payloads.py --shape small): rotel, ingest, "
                                                 "batch, tail sampling and default-chain rows are measured on it too")
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="measurements per row, rotel and AgentTrace taking turns")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--collector-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--unpinned", action="store_true",
                        help="no taskset: collectors and the load generator share every core (the 'both cores' rows)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds per row, once, results not written: proves the suite runs and no row fails (CI)")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured rounds, one more run of each AgentTrace row under perf record: where its CPU goes, "
                             "and for each goal not met, where the gap goes")
    parser.add_argument("--only", action="append", default=[],
                        help="measure only the rows whose name contains this text (repeatable); rotel rows need 'rotel'")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.repeat = 2, 1, 1
    collector_core = None if args.unpinned else args.collector_core
    load_core = None if args.unpinned else args.load_core

    payload_sets = [("", args.payloads)] + ([(" [small spans]", args.small_payloads)] if args.small_payloads else [])
    port, grpc_port, admin_port = 14318, 14317, 14999
    measured = {}  # row name -> list of measurements
    order = []

    profiles = {}  # row name -> profile_costs.shares, from the profiling round
    profiling = [False]

    def add(name, collector, payloads, grpc=False):
        if args.only and not any(text in name for text in args.only):
            return
        with open(os.path.join(payloads, "grpc.list")) as f:
            grpc_body = f.readline().strip()
        if profiling[0]:
            if name.startswith("AgentTrace ("):
                return  # rotel and the baseline: measured, not profiled
            print(f"profiling {name} ...", file=sys.stderr, flush=True)
            profile = profile_run(collector, os.path.join(payloads, "protobuf.list"), args.warmup, args.seconds,
                                  args.connections, load_core, grpc_body if grpc else None)
            if profile is not None:
                profiles[name] = profile
            return
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        result = measure(collector, os.path.join(payloads, "protobuf.list"), args.spans, args.warmup, args.seconds,
                         args.connections, load_core, grpc_body if grpc else None)
        if name not in measured:
            order.append(name)
        measured.setdefault(name, []).append(result)

    rotel_command = [args.rotel, "start", "--exporter", "blackhole", "--otlp-http-endpoint", f"127.0.0.1:{port}",
                     "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}"]
    sink_port = 19411
    grpc_sink_port = 19317
    chain = CHAIN_PROCESSORS
    builds = ([("AgentTrace (baseline)", args.baseline)] if args.baseline else []) + [("AgentTrace", args.agenttrace)]
    # Rows measured on the small-span payload too (the others only on the agent payload).
    small_rows = {"ingest -> nop", "batch -> nop", "tail_sampling, batch -> nop", "tail_sampling 2s, batch -> nop", f"default chain ({chain}) -> nop",
                  "default chain without service_graph -> nop"}
    names = (list(AGENTTRACE_CONFIGS) + [f"default chain ({chain}) -> nop", "default chain without service_graph -> nop",
                                         "default chain without anomaly_detection -> nop",
                                         "default chain -> zipkin (JSON, local sink)", "default chain -> otlp gRPC (AgentTrace nop sink)"])
    helpers = []  # the sinks: stopped however the run ends, so a failed run leaves no process holding a port
    try:
        require_free_port(sink_port)
        require_free_port(grpc_sink_port)
        sink = subprocess.Popen(pinned(load_core, [sys.executable, os.path.join(BENCH, "sink.py"), str(sink_port)]),
                                stdout=subprocess.DEVNULL)
        helpers.append(sink)
        wait_for_port(sink_port)
        if sink.poll() is not None:
            raise RuntimeError(f"the sink could not listen on port {sink_port}")
        with tempfile.TemporaryDirectory() as directory:
            sink_config = os.path.join(directory, "sink.yaml")
            with open(sink_config, "w") as f:
                f.write(f"""
receivers: {{otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:{grpc_sink_port}"}}}}}}}}
exporters: {{nop: {{}}}}
service:
  admin: {{endpoint: "127.0.0.1:0"}}
  telemetry: {{logs: {{level: warn}}}}
  pipelines: {{traces: {{receivers: [otlp], exporters: [nop]}}}}
""")
            grpc_sink = subprocess.Popen(pinned(load_core, [args.agenttrace, "serve", "--config", sink_config]),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            helpers.append(grpc_sink)
            wait_for_port(grpc_sink_port)
            second_first = False
            for round_index in range(args.repeat + (1 if args.profile else 0)):
                profiling[0] = round_index == args.repeat
                for suffix, payloads in payload_sets:
                    # rotel first in each round, then every AgentTrace row: the two take turns round by round.
                    if not profiling[0]:
                        add(f"rotel (blackhole), OTLP/HTTP{suffix}", Collector("rotel", rotel_command, port, collector_core), payloads)
                        add(f"rotel (blackhole), OTLP/gRPC{suffix}", Collector("rotel", rotel_command, grpc_port, collector_core),
                            payloads, grpc=True)
                    for name in names:
                        if suffix and name not in small_rows:
                            continue
                        # With a baseline, the two builds take turns going first, row by row: whichever runs
                        # second would otherwise always meet the warmer (or the noisier) machine.
                        for label, binary in (builds[::-1] if second_first else builds):
                            if args.only and not any(text in f"{label} {name}, OTLP/gRPC{suffix}" or text in f"{label} {name}, OTLP/HTTP{suffix}"
                                                     for text in args.only):
                                continue
                            config = AGENTTRACE_CONFIGS.get(name)
                            if name.startswith("default chain ("):
                                config = default_chain_config(binary, {"nop": {}})
                            elif name.startswith("default chain without "):
                                config = default_chain_without(binary, name.split()[3])
                                if config is None:
                                    continue  # an older build without that processor
                            elif name.startswith("default chain -> zipkin"):
                                config = default_chain_config(binary, {"zipkin": {"endpoint": "http://127.0.0.1:SINKPORT/api/v2/spans"}})
                            elif name.startswith("default chain -> otlp gRPC"):
                                config = default_chain_config(binary, {"otlp": {"protocol": "grpc", "endpoint": "127.0.0.1:GRPCSINKPORT"}})
                            path = os.path.join(directory, "config.yaml")
                            storage = os.path.join(directory, "queue")
                            shutil.rmtree(storage, ignore_errors=True)
                            with open(path, "w") as f:
                                f.write(config.replace("GRPCSINKPORT", str(grpc_sink_port)).replace("GRPCPORT", str(grpc_port))
                                        .replace("SINKPORT", str(sink_port)).replace("ADMINPORT", str(admin_port))
                                        .replace("PORT", str(port)).replace("STORAGE", storage))
                            command = [binary, "serve", "--config", path]
                            add(f"{label} {name}, OTLP/HTTP{suffix}",
                                Collector("agenttrace", command, port, collector_core, admin_port=admin_port), payloads)
                            if "GRPCPORT" in config:
                                add(f"{label} {name}, OTLP/gRPC{suffix}",
                                    Collector("agenttrace", command, grpc_port, collector_core, admin_port=admin_port),
                                    payloads, grpc=True)
                        second_first = not second_first
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait()
    rows = [(name, summarize(measured[name])) for name in order]
    rates = {name: r["spans_per_s"] for name, r in rows}
    header = ("| collector and pipeline | spans/s, median (min-max) | vs rotel | p50 ms | p99 ms | CPU s / M spans | "
              "peak RSS MiB | refused (pipeline full) | failed requests | load generator CPU |")
    lines = [header, "|" + "---|" * 10]
    for name, r in rows:
        transport = name.rsplit(", ", 1)[1]
        rotel_rate = rates.get(f"rotel (blackhole), {transport}")
        versus = f"{r['spans_per_s'] / rotel_rate:.2f}x" if rotel_rate else "n/a"
        latency = (f"mean {r['mean']:.1f} | (h2load: no percentiles)" if r.get("mean") is not None
                   else f"{r['p50']:.1f} | {r['p99']:.1f}")
        # A row with failures, or whose load generator was saturated, is marked: its figure is not the collector's.
        marks = (" **(failures)**" if r["failed"] else "") + (" **(load generator saturated)**" if r["load_share"] > 0.9 else "")
        lines.append(f"| {name}{marks} | {r['spans_per_s']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f}) | {versus} | {latency} | "
                     f"{r['cpu_per_million']:.2f} | {r['rss']:.0f} | {r['refused']} | {r['failed']} | {r['load_share'] * 100:.0f}% |")
    table = "\n".join(lines)
    cpu = {name: r["cpu_per_million"] for name, r in rows}
    goals = goals_table(rates, args.unpinned, profiles, cpu)
    if goals:
        table += "\n\nIssue 17's figures (ratios of the rows above, medians):\n\n" + goals
    if profiles:
        table += ("\n\nWhere each row's CPU goes (one more run of the row under `perf record -g`, 999 Hz; each sample given "
                  "to the stage whose work it is, see bench/profile_costs.py; µs a span = the row's median CPU s per M "
                  "spans times the share):\n\n")
        table += "\n".join(f"- {name}: {profile_costs.costs_line(profiles[name], cpu[name])}" for name in order if name in profiles)
    print(table)

    now = datetime.datetime.now(datetime.timezone.utc)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    rotel_version = subprocess.run([args.rotel, "--version"], capture_output=True, text=True).stdout.strip()
    agenttrace_version = subprocess.run([args.agenttrace, "version"], capture_output=True, text=True).stdout.strip()
    if args.smoke:
        empty = [name for name, r in rows if not r["spans_per_s"] > 0]
        if empty:
            sys.exit(f"smoke run: no span accepted in {empty}")
        failing = [name for name, r in rows if r["failed"]]
        if failing:
            sys.exit(f"smoke run: failed requests in {failing}")
        print("smoke run: every row accepted spans and none failed (figures from a few seconds are not results; nothing written)")
        return
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    result_path = os.path.join(BENCH, "results", now.strftime("%Y-%m-%dT%H%M%SZ") + ".md")
    placement = ("collectors and load generator unpinned, sharing every core" if args.unpinned else
                 f"collector pinned to core {args.collector_core}, load generator to core {args.load_core}")
    payload_text = ", ".join(f"{open(os.path.join(p, 'bytes-per-span')).read().strip() if os.path.exists(os.path.join(p, 'bytes-per-span')) else '?'} B/span"
                             f" ({os.path.relpath(p, ROOT)})" for _, p in payload_sets)
    with open(result_path, "w") as f:
        f.write(f"# Benchmark {now.strftime('%Y-%m-%d %H:%M UTC')}\n\n")
        f.write(f"- machine: {cpu_model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n")
        f.write(f"- {agenttrace_version}; {rotel_version}\n")
        f.write(f"- {placement}; wrk 2 threads, {args.connections} connections; gRPC rows: h2load, {args.connections} connections x 16 "
                f"streams, one body; {args.warmup}s warm-up then {args.seconds}s measured, {args.repeat} times per row, rotel and "
                f"AgentTrace taking turns; {args.spans}-span OTLP protobuf bodies: {payload_text}\n")
        f.write("- a request counts only if it succeeded; AgentTrace rows are checked against its own accepted-span counter "
                "(a gRPC call with grpc-status != 0 is a failure); rotel rows rest on the load generator's count\n\n")
        f.write(table + "\n")
    print(f"written to {os.path.relpath(result_path, ROOT)}")


if __name__ == "__main__":
    main()
