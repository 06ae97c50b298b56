#!/usr/bin/env python3
"""AgentTrace side by side with rotel, in one run, on this machine.

Each collector runs pinned to one core (taskset), the load generator to another. For every row it
measures, after a warm-up, for a fixed duration: spans/s (successful requests x spans per request),
latency p50/p99 as the load generator saw it, CPU seconds per million spans (from /proc), and peak
RSS. Prints one table and writes it as markdown under bench/results/.

Called by bench/run; see bench/README.md.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

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
    command = ["taskset", "-c", str(load_core), "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
               "-s", os.path.join(BENCH, "rotate.lua"), f"http://127.0.0.1:{port}/v1/traces", "--", list_file]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
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
    return {"ok": max(requests - failed, 0), "failed": failed, "p50": p50, "p99": p99, "raw": output}


def run_h2load(port, body_file, seconds, warmup, connections, streams, load_core):
    command = ["taskset", "-c", str(load_core), "h2load", f"-c{connections}", f"-m{streams}", "-t1", f"-D{seconds}",
               f"--warm-up-time={warmup}", "-d", body_file, "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", output)
    succeeded, failed, errored = int(match.group(4)), int(match.group(5)), int(match.group(6))
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", output).group(1)
    return {"ok": succeeded, "failed": failed + errored, "mean": parse_duration_ms(mean), "raw": output}


class Collector:
    def __init__(self, name, command, port, core, env=None):
        self.name, self.command, self.port, self.core, self.env = name, command, port, core, env

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(["taskset", "-c", str(self.core)] + self.command, stdout=self.log,
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


def measure(collector, list_file, spans_per_request, warmup, seconds, connections, load_core, grpc_body=None):
    with collector:
        if grpc_body:
            # h2load warms up itself, then measures; CPU is read around the whole run and scaled.
            cpu_before = cpu_seconds(collector.process.pid)
            started = time.time()
            result = run_h2load(collector.port, grpc_body, seconds, warmup, connections, 16, load_core)
            elapsed = time.time() - started
            cpu = (cpu_seconds(collector.process.pid) - cpu_before) * seconds / max(elapsed, seconds)
            result["p50"] = result["p99"] = float("nan")
        else:
            run_wrk(collector.port, list_file, warmup, connections, load_core)
            cpu_before = cpu_seconds(collector.process.pid)
            started = time.time()
            result = run_wrk(collector.port, list_file, seconds, connections, load_core)
            elapsed = time.time() - started
            cpu = cpu_seconds(collector.process.pid) - cpu_before
        rss = peak_rss_mib(collector.process.pid)
        if collector.process.poll() is not None:
            raise RuntimeError(f"{collector.name} exited during the run")
    spans = result["ok"] * spans_per_request
    return {
        "spans_per_s": spans / seconds,
        "p50": result["p50"], "p99": result["p99"], "mean": result.get("mean"),
        "cpu_per_million": cpu / (spans / 1e6) if spans else float("nan"),
        "rss": rss, "failed": result["failed"], "elapsed": elapsed,
    }


AGENTTRACE_CONFIGS = {
    "ingest -> nop": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}, grpc: {endpoint: "127.0.0.1:GRPCPORT"}}}}
exporters: {nop: {}}
service:
  admin: {endpoint: "127.0.0.1:0"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], exporters: [nop]}}
""",
    "batch -> nop": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {nop: {}}
service:
  admin: {endpoint: "127.0.0.1:0"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [nop]}}
""",
    "batch -> otlp/http (local sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: http/protobuf, endpoint: "http://127.0.0.1:SINKPORT"}}
service:
  admin: {endpoint: "127.0.0.1:0"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}}
""",
    "batch -> otlp gRPC (AgentTrace nop sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: grpc, endpoint: "127.0.0.1:GRPCSINKPORT"}}
service:
  admin: {endpoint: "127.0.0.1:0"}
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
  admin: {endpoint: "127.0.0.1:0"}
  telemetry: {logs: {level: warn}}
  pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}
""",
    "batch -> otlp/http with storage (local sink)": """
receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:PORT"}}}}
processors: {batch: {send_batch_size: 8192, timeout: 200ms}}
exporters: {otlp: {protocol: http/protobuf, endpoint: "http://127.0.0.1:SINKPORT", sending_queue: {storage: "STORAGE"}}}
service:
  admin: {endpoint: "127.0.0.1:0"}
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
    config["service"]["admin"] = {"endpoint": "127.0.0.1:0"}
    config["service"]["telemetry"] = {"logs": {"level": "warn"}}
    config["service"]["pipelines"]["traces"]["exporters"] = list(exporter)
    # No alert sink: alerts are still evaluated and listed at /api/alerts.
    config["processors"]["threshold_triggers"]["notify"] = []
    return yaml.safe_dump(config, sort_keys=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agenttrace", required=True)
    parser.add_argument("--baseline", help="another agenttrace binary (an earlier build): each AgentTrace row is measured "
                                           "with it and with --agenttrace, the two taking turns going first row by row, so before/after "
                                           "sit side by side in one run")
    parser.add_argument("--rotel", required=True)
    parser.add_argument("--payloads", required=True)
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--collector-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds per row, results not written: proves the suite runs (CI)")
    parser.add_argument("--only", action="append", default=[],
                        help="measure only the rows whose name contains this text (repeatable); rotel rows need 'rotel'")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup = 2, 1

    list_file = os.path.join(args.payloads, "protobuf.list")
    with open(os.path.join(args.payloads, "grpc.list")) as f:
        grpc_body = f.readline().strip()
    port, grpc_port = 14318, 14317
    rows = []

    def add(name, collector, grpc=False):
        if args.only and not any(text in name for text in args.only):
            return
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows.append((name, measure(collector, list_file, args.spans, args.warmup, args.seconds, args.connections, args.load_core,
                                   grpc_body if grpc else None)))

    rotel_command = [args.rotel, "start", "--exporter", "blackhole", "--otlp-http-endpoint", f"127.0.0.1:{port}",
                     "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}"]
    add("rotel (blackhole), OTLP/HTTP", Collector("rotel", rotel_command, port, args.collector_core))
    add("rotel (blackhole), OTLP/gRPC", Collector("rotel", rotel_command, grpc_port, args.collector_core), grpc=True)
    sink_port = 19411
    grpc_sink_port = 19317
    helpers = []  # the sinks: stopped however the run ends, so a failed run leaves no process holding a port
    try:
        sink = subprocess.Popen(["taskset", "-c", str(args.load_core), sys.executable, os.path.join(BENCH, "sink.py"), str(sink_port)],
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
            grpc_sink = subprocess.Popen(["taskset", "-c", str(args.load_core), args.agenttrace, "serve", "--config", sink_config],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            helpers.append(grpc_sink)
            wait_for_port(grpc_sink_port)
            chain = "enrichment, triggers, service_graph, tail_sampling 10s, batch"
            builds = ([("AgentTrace (baseline)", args.baseline)] if args.baseline else []) + [("AgentTrace", args.agenttrace)]
            names = list(AGENTTRACE_CONFIGS) + [f"default chain ({chain}) -> nop", "default chain -> zipkin (JSON, local sink)"]
            # With a baseline, the two builds take turns going first, row by row: whichever runs second
            # would otherwise always meet the warmer (or the noisier) machine.
            second_first = False
            for name in names:
                measured_before = len(rows)
                for label, binary in (builds[::-1] if second_first else builds):
                    # Each build runs its own embedded default for the default-chain rows.
                    configs = dict(AGENTTRACE_CONFIGS)
                    if name.startswith("default chain ("):
                        configs[name] = default_chain_config(binary, {"nop": {}})
                    elif name.startswith("default chain ->"):
                        configs[name] = default_chain_config(binary, {"zipkin": {"endpoint": "http://127.0.0.1:SINKPORT/api/v2/spans"}})
                    config = configs[name]
                    path = os.path.join(directory, "config.yaml")
                    storage = os.path.join(directory, "queue")
                    with open(path, "w") as f:
                        f.write(config.replace("GRPCSINKPORT", str(grpc_sink_port)).replace("GRPCPORT", str(grpc_port))
                                .replace("SINKPORT", str(sink_port))
                                .replace("PORT", str(port)).replace("STORAGE", storage))
                    command = [binary, "serve", "--config", path]
                    add(f"{label} {name}, OTLP/HTTP", Collector("agenttrace", command, port, args.collector_core))
                    if "GRPCPORT" in config:
                        add(f"{label} {name}, OTLP/gRPC", Collector("agenttrace", command, grpc_port, args.collector_core), grpc=True)
                if len(rows) > measured_before:
                    second_first = not second_first
    finally:
        for helper in helpers:
            helper.terminate()
            helper.wait()
    rates = {name: r["spans_per_s"] for name, r in rows}
    header = "| collector and pipeline | spans/s | vs rotel | p50 ms | p99 ms | CPU s / M spans | peak RSS MiB | failed requests |"
    lines = [header, "|" + "---|" * 8]
    for name, r in rows:
        transport = name.rsplit(", ", 1)[1]
        rotel_rate = rates.get(f"rotel (blackhole), {transport}")
        versus = f"{r['spans_per_s'] / rotel_rate:.2f}x" if rotel_rate else "n/a"
        latency = (f"mean {r['mean']:.1f} | (h2load: no percentiles)" if r.get("mean") is not None
                   else f"{r['p50']:.1f} | {r['p99']:.1f}")
        lines.append(f"| {name} | {r['spans_per_s']:,.0f} | {versus} | {latency} | "
                     f"{r['cpu_per_million']:.2f} | {r['rss']:.0f} | {r['failed']} |")
    table = "\n".join(lines)
    print(table)

    now = datetime.datetime.now(datetime.timezone.utc)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    rotel_version = subprocess.run([args.rotel, "--version"], capture_output=True, text=True).stdout.strip()
    agenttrace_version = subprocess.run([args.agenttrace, "version"], capture_output=True, text=True).stdout.strip()
    if args.smoke:
        failed = [name for name, r in rows if not r["spans_per_s"] > 0]
        if failed:
            sys.exit(f"smoke run: no span accepted in {failed}")
        print("smoke run: every row accepted spans (figures from a few seconds are not results; nothing written)")
        return
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    result_path = os.path.join(BENCH, "results", now.strftime("%Y-%m-%dT%H%M%SZ") + ".md")
    with open(result_path, "w") as f:
        f.write(f"# Benchmark {now.strftime('%Y-%m-%d %H:%M UTC')}\n\n")
        f.write(f"- machine: {cpu_model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n")
        f.write(f"- {agenttrace_version}; {rotel_version}\n")
        f.write(f"- collector pinned to core {args.collector_core}, wrk (2 threads, {args.connections} connections) to core {args.load_core}; "
                f"{args.warmup}s warm-up then {args.seconds}s measured; {args.spans}-span OTLP protobuf bodies rotated from {args.payloads} (wrk); "
                f"gRPC rows: h2load, {args.connections} connections x 16 streams, one body\n\n")
        f.write(table + "\n")
    print(f"written to {os.path.relpath(result_path, ROOT)}")


if __name__ == "__main__":
    main()
