"""`agenttrace version` and `agenttrace validate`."""

import copy
import json
import os
import re
import subprocess

import pytest

import interop_helpers as h


def installed_version(pkg_config_name):
    """The version of a C library as its pkg-config file states it (Debian's -dev package), e.g. 1.52.0."""
    r = subprocess.run(["pkg-config", "--modversion", pkg_config_name], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip(), "pkg-config --modversion %s failed: %s" % (pkg_config_name, r.stderr)
    return r.stdout.strip()


def test_version(agenttrace_bin):
    r = h.run_cli(agenttrace_bin, ["version"], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = r.stdout.strip()
    # README: "agenttrace version — version and the C libraries in use". The oracle is the system's own
    # record of the libraries, not the binary.
    for library, pc in (("libprotobuf-c", "libprotobuf-c"), ("libnghttp2", "libnghttp2")):
        want = installed_version(pc)
        m = re.search(r"%s (\S+?)[,)\s]" % re.escape(library), out + " ")
        assert m, "version output %r does not name %s" % (out, library)
        assert m.group(1) == want, "%s: version prints %s, the system has %s" % (library, m.group(1), want)
    assert re.match(r"^agenttrace \d+\.\d+\.\d+ ", out), out


def test_validate_accepts_good_config(agenttrace_bin, tmp_path):
    cfg = h.write_config(str(tmp_path / "good.yaml"), h.build_config(str(tmp_path / "out.jsonl")))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "configuration is valid" in r.stdout, r.stdout


def _tree(root):
    """Every path under root with its kind and size (files) — what a command may not change."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            found[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            found[os.path.relpath(path, root)] = ("file", os.path.getsize(path))
    return found


def test_validate_leaves_the_file_system_unchanged(agenttrace_bin, tmp_path):
    """Building a configuration has no side effects: `validate` of one with a file exporter in a folder that
    does not exist, a persistent sending queue (which makes the pipeline durable: a write-ahead log) and
    threshold-trigger sinks creates no folder and no file, and binds nothing."""
    cfg = h.build_config(str(tmp_path / "out" / "nested" / "traces.jsonl"))
    cfg["exporters"]["otlp"] = {"endpoint": "http://127.0.0.1:9/", "protocol": "http/protobuf",
                                "sending_queue": {"storage": str(tmp_path / "queue" / "otlp")}}
    cfg["processors"]["threshold_triggers"] = {"rules": [{"name": "errors", "status": "error"}],
                                               "notify": [{"webhook": "http://127.0.0.1:9/hook"}]}
    cfg["service"]["pipelines"]["traces"]["exporters"].append("otlp")
    cfg["service"]["pipelines"]["traces"]["processors"].insert(0, "threshold_triggers")
    path = h.write_config(str(tmp_path / "agenttrace.yaml"), cfg)
    before = _tree(str(tmp_path))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", path], timeout=30, cwd=str(tmp_path))
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    after = _tree(str(tmp_path))
    assert after == before, "validate changed the file system: added %s, removed %s" % (
        sorted(set(after) - set(before)), sorted(set(before) - set(after)))


def _with_extra_key(config, dotted):
    """A copy of config with one extra (unknown) key at the dotted path; everything else stays valid."""
    cfg = copy.deepcopy(config)
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = "unexpected"
    return cfg


@pytest.mark.parametrize("dotted", [
    "exporters.file.pathh",
    "receivers.otlp.protocols.http.max_request_body_sise",
    "processors.batch.send_batch_sizee",
    "service.admin.endpoit",
    "servce",
])
def test_validate_rejects_unknown_key_and_names_it(agenttrace_bin, tmp_path, dotted):
    good = h.build_config(str(tmp_path / "out.jsonl"))
    cfg = h.write_config(str(tmp_path / "bad.yaml"), _with_extra_key(good, dotted))
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode != 0, "validate accepted an unknown key %s:\n%s" % (dotted, r.stdout)
    assert dotted in r.stderr, "stderr does not name %s:\n%s" % (dotted, r.stderr)
    assert "configuration is valid" not in r.stdout


def test_serve_refuses_invalid_config(agenttrace_bin, tmp_path):
    good = h.build_config(str(tmp_path / "out.jsonl"))
    cfg = h.write_config(str(tmp_path / "bad.yaml"), _with_extra_key(good, "exporters.file.pathh"))
    r = h.run_cli(agenttrace_bin, ["serve", "--config", cfg], timeout=15)
    assert r.returncode != 0
    assert "exporters.file.pathh" in r.stderr, r.stderr
    assert "agenttrace: ready" not in r.stdout


def test_print_default_is_valid(agenttrace_bin, tmp_path):
    r = h.run_cli(agenttrace_bin, ["validate", "--print-default"], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.strip(), "--print-default printed nothing"
    p = tmp_path / "default.yaml"
    p.write_text(r.stdout)
    v = h.run_cli(agenttrace_bin, ["validate", "--config", str(p)], timeout=30)
    assert v.returncode == 0, "the printed default config does not validate:\n%s\n%s" % (v.stdout, v.stderr)
    assert "configuration is valid" in v.stdout


# ---------------------------------------------------------------------------
# Several pipelines (issue 14): the OpenTelemetry Collector's architecture page says "The same receiver can
# be included in multiple pipelines and multiple pipelines can include the same exporter."
# ---------------------------------------------------------------------------

import json
import os
import re
import socket
import subprocess
import time


# sysexits.h: EX_USAGE 64, EX_NOINPUT 66, EX_UNAVAILABLE 69, EX_SOFTWARE 70, EX_CONFIG 78
EX_USAGE, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE, EX_CONFIG = 64, 66, 69, 70, 78


class MultiCollector(h.Collector):
    """An `agenttrace serve` on a config written here (one receiver must be `otlp`, for start())."""

    def __init__(self, binary, workdir, config):
        super().__init__(binary, workdir)
        self.config = config
        h.write_config(self.config_path, config)

    def post(self, receiver, request):
        address = self.receivers[(receiver, "http")]
        r = h.http_request(address, "POST", "/v1/traces", json.dumps(request).encode(),
                           {"Content-Type": "application/json"})
        assert r.status == 200, "POST to %s answered %d: %r" % (receiver, r.status, r.body[:300])


def _http_receiver():
    return {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}


def _one_span_request(service, name):
    t = h.Trace()
    t.span(service, name, 2)
    return h.otlp_request(t.spans)


def _stop_ok(c):
    code = c.stop()
    assert code == 0, "serve exited %s\n%s" % (code, c.describe())


def test_pipelines_route_independently(agenttrace_bin, tmp_path):
    """traces/a and traces/b, each with its own receiver and file exporter: spans sent to a receiver reach
    only its pipeline's file (README: "more pipelines: traces/NAME")."""
    out_a, out_b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    config = {
        "receivers": {"otlp": _http_receiver(), "otlp/b": _http_receiver()},
        "exporters": {"file/a": {"path": out_a}, "file/b": {"path": out_b}},
        "service": {"admin": {"endpoint": "127.0.0.1:0"}, "pipelines": {
            "traces/a": {"receivers": ["otlp"], "exporters": ["file/a"]},
            "traces/b": {"receivers": ["otlp/b"], "exporters": ["file/b"]},
        }},
    }
    c = MultiCollector(agenttrace_bin, tmp_path / "run", config).start()
    try:
        c.post("otlp", _one_span_request("svc-a", "to-a"))
        c.post("otlp/b", _one_span_request("svc-b", "to-b"))
        c.post("otlp/b", _one_span_request("svc-b", "to-b-again"))
    finally:
        _stop_ok(c)
    assert sorted(s.name for s in h.read_output_spans(out_a)) == ["to-a"]
    assert sorted(s.name for s in h.read_output_spans(out_b)) == ["to-b", "to-b-again"]


def test_one_receiver_feeds_every_pipeline_that_lists_it(agenttrace_bin, tmp_path):
    """One receiver in two pipelines: each pipeline gets every span (the receiver fans out)."""
    out_a, out_b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    config = {
        "receivers": {"otlp": _http_receiver()},
        "exporters": {"file/a": {"path": out_a}, "file/b": {"path": out_b}},
        "service": {"admin": {"endpoint": "127.0.0.1:0"}, "pipelines": {
            "traces/a": {"receivers": ["otlp"], "exporters": ["file/a"]},
            "traces/b": {"receivers": ["otlp"], "exporters": ["file/b"]},
        }},
    }
    c = MultiCollector(agenttrace_bin, tmp_path / "run", config).start()
    try:
        c.post("otlp", _one_span_request("svc", "shared"))
    finally:
        _stop_ok(c)
    assert [s.name for s in h.read_output_spans(out_a)] == ["shared"]
    assert [s.name for s in h.read_output_spans(out_b)] == ["shared"]


def test_one_exporter_serves_several_pipelines(agenttrace_bin, tmp_path):
    """The Collector's commonest layout: two pipelines with different processors, one `exporters: [file]`.
    One instance: spans from both pipelines land in its one file, /metrics shows one exporter, and it shuts
    down once, after every pipeline feeding it drained: traces/a (shut down last) holds its span in a batch
    processor until shutdown, so that span reaches the file only if traces/b's drain left the exporter open."""
    out = str(tmp_path / "shared.jsonl")
    config = {
        "receivers": {"otlp": _http_receiver(), "otlp/b": _http_receiver()},
        "processors": {
            "batch": {"send_batch_size": 1000, "timeout": "1h"},
            "agent_enrichment": {"set": {"pipeline.name": "b"}},
        },
        "exporters": {"file": {"path": out}},
        "service": {"admin": {"endpoint": "127.0.0.1:0"}, "pipelines": {
            "traces/a": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]},
            "traces/b": {"receivers": ["otlp/b"], "processors": ["agent_enrichment"], "exporters": ["file"]},
        }},
    }
    c = MultiCollector(agenttrace_bin, tmp_path / "run", config).start()
    try:
        c.post("otlp", _one_span_request("svc-a", "via-a"))
        c.post("otlp/b", _one_span_request("svc-b", "via-b"))
        assert [s.name for s in h.wait_for_output_spans(out, 1)] == ["via-b"]
        sent = c.scrape().series("agenttrace_exporter_sent_spans_total")
    finally:
        _stop_ok(c)
    assert sent == [({"exporter": "file"}, 1.0)], "one exporter instance expected in /metrics: %r" % (sent,)
    spans = {s.name: s for s in h.read_output_spans(out)}
    assert sorted(spans) == ["via-a", "via-b"], sorted(spans)
    assert "pipeline.name" not in spans["via-a"].resource
    assert spans["via-b"].resource.get("pipeline.name") == "b"


def test_replay_runs_a_shared_exporter_once(agenttrace_bin, tmp_path):
    """In-process replay feeds every pipeline; the exporter both list is one instance with one summary line,
    and it receives each pipeline's copy of every span."""
    src = os.path.join(h.REPO_ROOT, "testdata", "multi-agent.jsonl")
    out = str(tmp_path / "shared.jsonl")
    config = {
        "receivers": {"otlp": _http_receiver()},
        "processors": {"batch": {}, "batch/b": {}},
        "exporters": {"file": {"path": out}},
        "service": {"pipelines": {
            "traces/a": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file"]},
            "traces/b": {"receivers": ["otlp"], "processors": ["batch/b"], "exporters": ["file"]},
        }},
    }
    cfg = h.write_config(str(tmp_path / "shared.yaml"), config)
    r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, src], timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    want = len(h.load_spans(src))
    exporter_lines = [ln for ln in r.stdout.splitlines() if ln.startswith("exporter ")]
    assert exporter_lines == ["exporter file: sent=%d failed=0" % (2 * want)], r.stdout
    assert len(h.read_output_spans(out)) == 2 * want


def test_replay_of_a_missing_file_exits_noinput(agenttrace_bin, tmp_path):
    r = h.run_cli(agenttrace_bin, ["replay", str(tmp_path / "absent.jsonl")], timeout=60, cwd=str(tmp_path))
    assert r.returncode == EX_NOINPUT, (r.returncode, r.stdout, r.stderr)
    assert "absent.jsonl" in r.stderr and "Usage:" not in r.stderr, r.stderr


def test_validate_accepts_a_shared_exporter(agenttrace_bin, tmp_path):
    config = {
        "receivers": {"otlp": _http_receiver()},
        "processors": {"batch": {}, "batch/b": {}},
        "exporters": {"otlp": {"endpoint": "127.0.0.1:4317"}},
        "service": {"pipelines": {
            "traces/a": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["otlp"]},
            "traces/b": {"receivers": ["otlp"], "processors": ["batch/b"], "exporters": ["otlp"]},
        }},
    }
    cfg = h.write_config(str(tmp_path / "shared.yaml"), config)
    r = h.run_cli(agenttrace_bin, ["validate", "--config", cfg], timeout=30)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# Every configuration mistake at once, and exit codes (sysexits.h: EX_USAGE 64, EX_NOINPUT 66,
# EX_UNAVAILABLE 69, EX_SOFTWARE 70, EX_CONFIG 78)
# ---------------------------------------------------------------------------

def _mistakes(tmp_path):
    cfg = h.build_config(str(tmp_path / "out.jsonl"))
    cfg["exporters"]["file"]["pathh"] = "typo.jsonl"
    cfg["processors"]["batch"]["timeout"] = "soon"
    cfg["processors"]["batch"]["send_batch_sizee"] = 5
    cfg["service"]["pipelines"]["traces"]["receivers"] = ["otlp", "zipkin"]
    return h.write_config(str(tmp_path / "bad.yaml"), cfg)


@pytest.mark.parametrize("command", ["validate", "serve"])
def test_every_configuration_mistake_is_reported_at_once(agenttrace_bin, tmp_path, command):
    r = h.run_cli(agenttrace_bin, [command, "--config", _mistakes(tmp_path)], timeout=30)
    assert r.returncode == EX_CONFIG, (r.returncode, r.stdout, r.stderr)
    for key in ["exporters.file.pathh: unknown key", "processors.batch.timeout:", "processors.batch.send_batch_sizee: unknown key",
                "service.pipelines.traces.receivers: zipkin is not declared"]:
        assert key in r.stderr, "stderr does not report %r:\n%s" % (key, r.stderr)
    assert "Usage:" not in r.stderr and "USAGE:" not in r.stderr, r.stderr
    assert "agenttrace: ready" not in r.stdout


def test_exit_codes(agenttrace_bin, tmp_path):
    good = h.write_config(str(tmp_path / "good.yaml"), h.build_config(str(tmp_path / "out.jsonl")))
    ok = h.run_cli(agenttrace_bin, ["validate", "--config", good], timeout=30)
    assert ok.returncode == 0, ok.stderr
    usage = h.run_cli(agenttrace_bin, ["validate", "--no-such-flag"], timeout=30)
    assert usage.returncode == EX_USAGE, (usage.returncode, usage.stderr)
    assert "Usage:" in usage.stderr or "USAGE:" in usage.stderr, usage.stderr   # usage is for command-line mistakes
    missing = h.run_cli(agenttrace_bin, ["validate", "--config", str(tmp_path / "absent.yaml")], timeout=30)
    assert missing.returncode == EX_NOINPUT, (missing.returncode, missing.stderr)
    assert "absent.yaml" in missing.stderr and "Usage:" not in missing.stderr, missing.stderr


def test_exporter_that_cannot_start_exits_with_the_runtime_code(agenttrace_bin, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the exporter needs a directory")
    cfg = h.write_config(str(tmp_path / "c.yaml"), h.build_config(str(blocker / "traces.jsonl")))
    r = h.run_cli(agenttrace_bin, ["serve", "--config", cfg], timeout=30)
    assert r.returncode == EX_SOFTWARE, (r.returncode, r.stdout, r.stderr)
    assert "exporter file" in r.stderr and "Usage:" not in r.stderr, r.stderr


def _listening(port):
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("busy", ["http", "grpc", "admin"])
def test_listener_that_cannot_bind_names_itself_and_starts_nothing(agenttrace_bin, tmp_path, busy):
    """A busy port: the message names the listener's key, its address and the cause; the process exits
    EX_UNAVAILABLE without having announced or left any listener (the others are bound first, or never)."""
    occupier = socket.socket()
    occupier.bind(("127.0.0.1", 0))
    occupier.listen(1)
    busy_port = occupier.getsockname()[1]
    ports = {name: (busy_port if name == busy else h.free_port()) for name in ["http", "grpc", "admin"]}
    cfg = h.build_config(str(tmp_path / "out.jsonl"), receiver_endpoint="127.0.0.1:%d" % ports["http"],
                         admin_endpoint="127.0.0.1:%d" % ports["admin"],
                         grpc={"endpoint": "127.0.0.1:%d" % ports["grpc"]})
    path = h.write_config(str(tmp_path / "c.yaml"), cfg)
    try:
        r = h.run_cli(agenttrace_bin, ["serve", "--config", path], timeout=30)
    finally:
        occupier.close()
    key = {"http": "receivers.otlp.protocols.http", "grpc": "receivers.otlp.protocols.grpc",
           "admin": "service.admin"}[busy]
    want = "%s: cannot listen on 127.0.0.1:%d: address already in use" % (key, busy_port)
    assert r.returncode == EX_UNAVAILABLE, (r.returncode, r.stdout, r.stderr)
    assert want in r.stderr, "stderr lacks %r:\n%s" % (want, r.stderr)
    assert "Usage:" not in r.stderr and "errno" not in r.stderr, r.stderr
    assert "listening" not in r.stdout and "ready" not in r.stdout, "a listener started:\n%s" % r.stdout
    assert not os.path.exists(str(tmp_path / "out.jsonl")), "the file exporter started"
    for name, port in ports.items():
        if name != busy:
            assert not _listening(port), "%s port %d left listening" % (name, port)


# ---------------------------------------------------------------------------
# What a new user sees at start-up
# ---------------------------------------------------------------------------

def _default_on_free_ports(agenttrace_bin, tmp_path):
    text = h.run_cli(agenttrace_bin, ["validate", "--print-default"], timeout=30).stdout
    for port in ["4317", "4318", "8888"]:
        assert "localhost:%s" % port in text, "the default no longer binds localhost:%s" % port
        text = text.replace("localhost:%s" % port, "127.0.0.1:0")
    cfg = tmp_path / "default.yaml"
    cfg.write_text(text)
    return cfg


def test_default_configuration_logs_one_line_for_its_switched_off_alert_sinks(agenttrace_bin, tmp_path):
    cfg = _default_on_free_ports(agenttrace_bin, tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("AGENTTRACE_ALERT_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "PD_ROUTING_KEY")}
    proc = subprocess.Popen([agenttrace_bin, "serve", "--config", str(cfg)], cwd=str(tmp_path), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == h.READY_LINE:
                break
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    sink_lines = [ln for ln in err.splitlines() if "alert sink" in ln]
    assert len(sink_lines) == 1, "expected one line about the switched-off sinks:\n%s" % err
    for entry in ["notify[0]", "notify[1]", "notify[2]", "environment variable"]:
        assert entry in sink_lines[0], sink_lines[0]


@pytest.mark.parametrize("verbosity,span_lines", [("basic", 0), ("detailed", 3)])
def test_debug_exporter_verbosity(agenttrace_bin, tmp_path, verbosity, span_lines):
    """The Collector's debug exporter: "With verbosity: basic, the exporter outputs a single-line summary of
    received data with a total count of telemetry records for every batch"; detailed adds one line per span
    (README). No batch processor, so the one request of three spans is one batch."""
    config = {
        "receivers": {"otlp": _http_receiver()},
        "exporters": {"debug": {"verbosity": verbosity}},
        "service": {"admin": {"endpoint": "127.0.0.1:0"},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
    }
    t = h.Trace()
    root = t.span("svc", "root", 2)
    ids = [root, t.span("svc", "child-1", 3, parent=root), t.span("svc", "child-2", 3, parent=root)]
    c = MultiCollector(agenttrace_bin, tmp_path / "run", config).start()
    try:
        c.post("otlp", h.otlp_request(t.spans))
        deadline = time.monotonic() + 10
        while "spans=3" not in open(c.stderr_path).read() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _stop_ok(c)
    err = open(c.stderr_path).read().splitlines()
    exporter_lines = [ln for ln in err if "exporter=debug" in ln]
    summaries = [ln for ln in exporter_lines if "spans=3" in ln]
    per_span = [ln for ln in exporter_lines if "span_id=" in ln]
    assert len(summaries) == 1, "one summary line per batch expected:\n%s" % "\n".join(exporter_lines)
    assert len(per_span) == span_lines, "\n".join(exporter_lines)
    assert sorted(re.search(r"span_id=([0-9a-f]+)", ln).group(1) for ln in per_span) == \
        (sorted(ids) if span_lines else [])


def _thread_names(pid):
    """The names of a process's threads (/proc/PID/task/*/comm)."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass  # the thread ended meanwhile
    return names


@pytest.mark.parametrize("pinned", [True, False])
def test_threads_follow_the_cpu_affinity(agenttrace_bin, tmp_path, pinned):
    """The event loops and the blocking pool are sized by the cores the process may use (its affinity, as
    `taskset -c` sets it; docs/architecture.md), not by every online core: threads beyond the cores only hand
    work to each other. The oracle is the affinity Python gives the child before exec."""
    allowed = sorted(os.sched_getaffinity(0))
    c = h.Collector(agenttrace_bin, str(tmp_path / "collector"))
    if pinned:
        c.cpus = {allowed[0]}
    c.start()
    try:
        # A request, so that every pool the ingest path uses has started.
        trace = h.Trace()
        trace.span("svc", "op", 2)
        reply = c.post_traces(json.dumps(h.otlp_request(trace.spans)).encode(), content_type="application/json")
        assert reply.status == 200, reply
        names = _thread_names(c.proc.pid)
        loops = [n for n in names if n.startswith("NIO-SGLTN-")]
        pool = [n for n in names if n.startswith("SGLTN-TP-")]
        want = 1 if pinned else len(allowed)
        assert 1 <= len(loops) <= want, (want, names)
        assert len(pool) <= want, (want, names)
        if pinned:
            assert len(loops) == 1, names
    finally:
        c.stop(timeout=15.0)
