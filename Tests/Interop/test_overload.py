"""Overload and crash safety, counted span by span against a fake OTLP backend (fakes.OTLPHttpFake).

  * memory_limiter: clients send at several times the rate a slow backend can take; resident memory
    stays bounded near limit_mib, the collector answers 503 + Retry-After instead of growing, never
    crashes, and every span it answered 200 for reaches the backend;
  * kill -9 mid-load with a persistent queue (sending_queue.storage, which also turns on the pipeline's
    write-ahead log): after a restart every acknowledged span reaches the backend;
  * SIGTERM with a backend that is down: the collector exits within service.shutdown_timeout, and what
    it could not deliver is delivered by the next run from disk.

Each test prints its figures (sent, acknowledged, delivered, peak RSS) and records them in
h.HOSTILE_REPORT for the terminal summary."""

import secrets
import signal
import threading
import time

import pytest

import interop_helpers as h
from fakes import OTLPHttpFake

SPANS_PER_REQUEST = 200


class SlowOTLPBackend(OTLPHttpFake):
    """Takes `delay` seconds to accept each export: the sustainable rate is what this allows."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay

    def success(self, rec):
        time.sleep(self.delay)
        return super().success(rec)


def make_bodies(n, name):
    """n protobuf requests of SPANS_PER_REQUEST spans with unique ids; [(body, [keys])]."""
    out = []
    for r in range(n):
        tid = secrets.token_hex(16)
        spans, keys = [], []
        for i in range(SPANS_PER_REQUEST):
            sid = secrets.token_hex(8)
            spans.append({"traceId": tid, "spanId": sid, "name": "%s-%d" % (name, i), "kind": 2,
                          "startTimeUnixNano": str(1767225600000000000 + i),
                          "endTimeUnixNano": str(1767225600001000000 + i),
                          "attributes": [{"key": "payload", "value": {"stringValue": "x" * 200}}]})
            keys.append((tid, sid))
        req = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "load"}}]},
                                  "scopeSpans": [{"scope": {"name": "load"}, "spans": spans}]}]}
        out.append((h.request_to_protobuf(req).SerializeToString(), keys))
    return out


class Load:
    """Client threads posting prepared bodies; records which were acknowledged (200)."""

    def __init__(self, address_fn, bodies, threads):
        self.address_fn = address_fn
        self.bodies = bodies
        self.threads = threads
        self.acked, self.refused, self.failed = [], 0, 0
        self.statuses = {}
        self.lock = threading.Lock()
        self.next = 0
        self.stop = threading.Event()

    def _take(self):
        with self.lock:
            if self.next >= len(self.bodies) or self.stop.is_set():
                return None
            self.next += 1
            return self.bodies[self.next - 1]

    def _run(self):
        while True:
            item = self._take()
            if item is None:
                return
            body, keys = item
            try:
                r = h.http_request(self.address_fn(), "POST", "/v1/traces", body,
                                   {"Content-Type": "application/x-protobuf"}, timeout=10)
                status = r.status
            except Exception:
                status = "error"
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.acked.extend(keys)
                elif status == 503:
                    self.refused += 1
                else:
                    self.failed += 1

    def start(self):
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in self.workers:
            w.start()
        return self

    def join(self, timeout=120):
        for w in self.workers:
            w.join(timeout)

    @property
    def sent(self):
        return sum(self.statuses.values())


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return 0.0
    return 0.0


class RSSSampler:
    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            v = rss_mib(self.pid)
            self.samples.append(v)
            self.peak = max(self.peak, v)
            time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def exporter_to(backend, **extra):
    return dict({"protocol": "http/protobuf", "endpoint": backend.base_url,
                 "retry_on_failure": {"initial_interval": "50ms", "max_interval": "500ms", "max_elapsed_time": "0s"}},
                **extra)


def pipeline_overrides(backend, exporter_extra=None, service=None):
    return {"exporters": {"otlp": exporter_to(backend, **(exporter_extra or {}))},
            "service": dict({"pipelines": {"traces": {"exporters": ["otlp"]}}}, **(service or {}))}


# --- memory limiter -----------------------------------------------------------------

@pytest.fixture
def slow_backend():
    b = SlowOTLPBackend(delay=0.05)
    b.start()
    yield b
    b.close()


def test_memory_limiter_under_overload(start_collector, slow_backend):
    slow_backend.delay = 0.1  # the backend sustains 20 000 spans/s with 2000-span exports
    probe = start_collector("probe")
    baseline = rss_mib(probe.proc.pid)
    probe.stop()
    limit = int(baseline + 96)
    batch = 2000
    col = start_collector("limited", send_batch_size=batch, overrides=pipeline_overrides(
        slow_backend, {"sending_queue": {"queue_size": 100000, "num_consumers": 1}},
        {"memory_limiter": {"limit_mib": limit, "spike_limit_mib": 24, "check_interval": "50ms"},
         "queue": {"max_batches": 100000, "max_spans": 10000000}}))
    bodies = make_bodies(900, "overload")
    with RSSSampler(col.proc.pid) as rss:
        load = Load(lambda: col.http_address, bodies, threads=6).start()
        start = time.monotonic()
        load.join()
        took = time.monotonic() - start
    assert col.proc.poll() is None, "the collector died under load\n" + col.describe()
    acked = set(load.acked)
    missing = slow_backend.wait_for_keys(acked, timeout=120)
    delivered = len(acked) - len(missing)
    sent_spans = load.sent * SPANS_PER_REQUEST
    m = col.scrape()
    refused_for_memory = m.value("agenttrace_memory_limiter_refused_requests_total")
    sustainable = batch / slow_backend.delay
    offered = sent_spans / took
    summary = ("memory_limiter: offered %.0f spans/s for %.1fs (backend sustains %.0f: %.1fx), sent %d spans, "
               "acknowledged %d, refused %d requests (memory_limiter: %d), delivered %d, peak RSS %.0f MiB "
               "(baseline %.0f, limit_mib %d)" % (offered, took, sustainable, offered / sustainable, sent_spans,
                                                   len(acked), load.refused, refused_for_memory, delivered,
                                                   rss.peak, baseline, limit))
    print(summary)
    h.HOSTILE_REPORT.append(("overload: memory_limiter", "http", summary))
    assert not missing, "%d acknowledged spans never reached the backend\n%s" % (len(missing), summary)
    assert offered > 3 * sustainable, summary
    assert refused_for_memory > 0 and load.refused > 0, summary
    assert load.failed == 0, (load.statuses, summary)
    assert rss.peak < limit * 1.15, summary


# --- kill -9 with a persistent queue ------------------------------------------------------

def test_kill9_mid_load_loses_no_acknowledged_span(agenttrace_bin, tmp_path, slow_backend):
    storage = str(tmp_path / "queue")
    overrides = pipeline_overrides(slow_backend, {"sending_queue": {"storage": storage, "num_consumers": 1}})
    workdir = tmp_path / "collector"
    first = h.Collector(agenttrace_bin, workdir, send_batch_size=SPANS_PER_REQUEST, overrides=overrides)
    first.start()
    address = {"http": first.http_address}
    bodies = make_bodies(150, "crash")
    load = Load(lambda: address["http"], bodies, threads=4).start()
    time.sleep(1.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    first.stop_requested = True
    load.stop.set()
    load.join()
    acked = set(load.acked)
    before_restart = len(set(slow_backend.accepted_counts()) & acked)
    second = h.Collector(agenttrace_bin, workdir, send_batch_size=SPANS_PER_REQUEST, overrides=overrides)
    second.start()
    try:
        missing = slow_backend.wait_for_keys(acked, timeout=120)
    finally:
        rc = second.stop()
    summary = ("kill -9: sent %d spans, acknowledged %d, delivered before the kill %d, delivered in all %d, "
               "missing %d" % (load.sent * SPANS_PER_REQUEST, len(acked), before_restart, len(acked) - len(missing),
                               len(missing)))
    print(summary)
    h.HOSTILE_REPORT.append(("crash: kill -9 mid-load, restart", "http", summary))
    assert len(acked) > 0 and before_restart < len(acked), "the kill came too late to test anything: " + summary
    assert not missing, summary + "\n" + second.describe()
    assert rc == 0, second.describe()


# --- SIGTERM with the backend down ----------------------------------------------------------

def test_sigterm_drains_within_shutdown_timeout_and_keeps_the_rest(agenttrace_bin, tmp_path, slow_backend):
    storage = str(tmp_path / "queue")
    overrides = pipeline_overrides(slow_backend, {"sending_queue": {"storage": storage}},
                                   {"shutdown_timeout": "2s"})
    workdir = tmp_path / "collector"
    slow_backend.script.fail_always(503)
    first = h.Collector(agenttrace_bin, workdir, overrides=overrides)
    first.start()
    load = Load(lambda: first.http_address, make_bodies(20, "sigterm"), threads=2).start()
    load.join()
    acked = set(load.acked)
    assert len(acked) == 20 * SPANS_PER_REQUEST, load.statuses
    start = time.monotonic()
    rc = first.stop(timeout=15)
    took = time.monotonic() - start
    assert rc is not None, "no exit within 15 s of SIGTERM\n" + first.describe()
    assert took < 2 + 6, "SIGTERM took %.1fs with shutdown_timeout 2s" % took
    slow_backend.script.succeed()
    second = h.Collector(agenttrace_bin, workdir, overrides=overrides)
    second.start()
    try:
        missing = slow_backend.wait_for_keys(acked, timeout=60)
    finally:
        second.stop()
    summary = ("SIGTERM, backend down: exited in %.1fs (shutdown_timeout 2s, exit code %s); acknowledged %d, "
               "delivered after restart %d" % (took, rc, len(acked), len(acked) - len(missing)))
    print(summary)
    h.HOSTILE_REPORT.append(("shutdown: SIGTERM with the backend down", "http", summary))
    assert not missing, summary
