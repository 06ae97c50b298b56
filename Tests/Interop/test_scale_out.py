"""Scale-out with real processes: an AgentTrace router (`loadbalancing` exporter, persistent queue) in front
of three replicas (service graph, tail sampling, file exporter), a real Prometheus scraping the replicas,
and the OpenTelemetry Python SDK sending a swarm of agent traces through the router. The same swarm also
goes to one collector alone, which is the oracle: the replicas together must keep what it keeps, and the
cluster graph (from Prometheus) must equal its graph.

  1. no trace is split: every kept trace is whole in exactly one replica's output;
  2. the kept set equals the single collector's;
  3. /api/service-graph with `cluster: {prometheus: ...}` equals the single collector's graph;
  4. a replica killed with -9 mid-run and restarted: every span the router acknowledged arrives."""

import os
import random
import threading
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

import interop_helpers as h

POLICIES = [
    {"name": "everything", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}},
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
]
TAIL_SAMPLING = {"decision_wait": "1s", "num_traces": 10000, "policies": POLICIES}
SERVICES = {"coordinator": "planner", "research-agent": "researcher", "writer-agent": "writer"}


class Acknowledged(SpanExporter):
    """The real OTLP exporter; remembers the spans whose export was answered with success."""

    def __init__(self, inner):
        self.inner = inner
        self.spans = []
        self.failures = 0
        self.lock = threading.Lock()

    def export(self, spans):
        result = self.inner.export(spans)
        with self.lock:
            if result == SpanExportResult.SUCCESS:
                self.spans.extend(spans)
            else:
                self.failures += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class Swarm:
    """Three agent services, each an SDK TracerProvider with `agent.type` on its resource, exporting in
    batches to every endpoint given (the router, and the single collector)."""

    def __init__(self, endpoints, seed):
        self.random = random.Random(seed)
        self.acknowledged = {endpoint: [] for endpoint in endpoints}
        self.providers = {}
        for service, agent_type in SERVICES.items():
            provider = TracerProvider(resource=Resource.create({"service.name": service, "agent.type": agent_type}))
            for endpoint in endpoints:
                exporter = Acknowledged(OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=30))
                self.acknowledged[endpoint].append(exporter)
                provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=64, schedule_delay_millis=50))
            self.providers[service] = provider

    def tracer(self, service):
        return self.providers[service].get_tracer("swarm")

    def trace(self):
        """One agent interaction: user -> coordinator, which calls one or two agents, each calling a model;
        some calls fail, some are slow."""
        now = time.time_ns()
        root = self.tracer("coordinator").start_span("invoke_agent coordinator", kind=SpanKind.SERVER, start_time=now)
        for callee in self.random.sample(["research-agent", "writer-agent"], self.random.choice([1, 2])):
            failed = self.random.random() < 0.15
            slow = self.random.random() < 0.1
            duration = 700_000_000 if slow else self.random.randint(5, 60) * 1_000_000
            call = self.tracer("coordinator").start_span("call " + callee, context=set_span_in_context(root),
                                                         kind=SpanKind.CLIENT, start_time=now + 1_000)
            served = self.tracer(callee).start_span("invoke_agent " + callee, context=set_span_in_context(call),
                                                    kind=SpanKind.SERVER, start_time=now + 2_000)
            model = self.tracer(callee).start_span("chat gpt-4o", context=set_span_in_context(served), kind=SpanKind.CLIENT,
                                                   start_time=now + 3_000,
                                                   attributes={"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                                                               "gen_ai.request.model": "gpt-4o",
                                                               "gen_ai.usage.input_tokens": self.random.randint(10, 900),
                                                               "gen_ai.usage.output_tokens": self.random.randint(5, 300)})
            if failed:
                model.set_status(Status(StatusCode.ERROR, "rate limited"))
                served.set_status(Status(StatusCode.ERROR, "model failed"))
            model.end(end_time=now + duration - 2_000)
            served.end(end_time=now + duration - 1_000)
            call.end(end_time=now + duration)
        root.end(end_time=now + 800_000_000)
        return "%032x" % root.get_span_context().trace_id

    def shutdown(self):
        for provider in self.providers.values():
            provider.shutdown()

    def acknowledged_spans(self, endpoint):
        """{trace id: {span id}} of what `endpoint` acknowledged; and how many spans it refused."""
        traces, failures = {}, 0
        for exporter in self.acknowledged[endpoint]:
            failures += exporter.failures
            for span in exporter.spans:
                traces.setdefault("%032x" % span.context.trace_id, set()).add("%016x" % span.context.span_id)
        return traces, failures


def traces_in(collector):
    """{trace id: {span id}} of a collector's file output (a span written twice counts once)."""
    traces = {}
    for span in collector.output_spans():
        traces.setdefault(span.trace_id, set()).add(span.span_id)
    return traces


def replica_config(start_collector_kw, sink, storage, grpc_endpoint="127.0.0.1:0", admin_endpoint="127.0.0.1:0", cluster=None,
                   output=None):
    """A sampling replica: OTLP/gRPC in, service graph, tail sampling, batch, file out; and, so that what it
    acknowledged survives kill -9, a second exporter with a disk queue (to a sink), which makes its
    pipeline write ahead."""
    service_graph = {"store": {"ttl": "2s"}, "store_expiration_loop": "500ms", "shards": 1}
    if cluster:
        service_graph["cluster"] = {"prometheus": cluster}
    kw = dict(http=False, grpc=dict(h.GRPC_SETTINGS, endpoint=grpc_endpoint), admin_endpoint=admin_endpoint,
              service_graph=service_graph, processors_before_batch={"tail_sampling": TAIL_SAMPLING}, timeout="100ms")
    if sink is not None:
        kw["overrides"] = {
            "exporters": {"otlp/sink": {"endpoint": sink, "sending_queue": {"storage": storage}}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"],
                                                 "processors": ["service_graph", "tail_sampling", "batch"],
                                                 "exporters": ["file", "otlp/sink"]}}},
        }
    if output is not None:
        kw.setdefault("overrides", {}).setdefault("exporters", {})["file"] = {"path": output}
    kw.update(start_collector_kw)
    return kw


def comparable(document):
    """A node-graph answer as what must match: edges (id, requests, failed), nodes (id, requests, failed,
    tokens, agent type)."""
    edges = sorted((e["id"], e["detail__requests"], e["detail__failed"]) for e in document["edges"])
    nodes = sorted((n["id"], n["detail__requests"], n["detail__errors"], n["detail__input_tokens"],
                    n["detail__output_tokens"], n.get("detail__agent_type")) for n in document["nodes"])
    return edges, nodes


def wait_until(predicate, timeout, message):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(0.3)
    raise AssertionError("%s within %.0fs; last: %r" % (message, timeout, last))


def test_router_three_replicas_prometheus_no_split_same_kept_set_same_graph_and_kill9(
        start_collector, prometheus_bin, tmp_path):
    # A sink for the replicas' disk-queue exporter (any OTLP/gRPC receiver that accepts).
    sink = start_collector("sink", http=False, grpc=h.GRPC_SETTINGS, exporter="nop")
    replicas = [start_collector("replica", **replica_config({}, sink.grpc_address, str(tmp_path / ("replica-queue-%d" % i))))
                for i in range(3)]
    single = start_collector("single", **replica_config({"http": True}, None, None))
    prometheus = h.Prometheus(prometheus_bin, tmp_path / "prometheus", config_text=(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: replicas\n    scrape_interval: 1s\n"
        "    static_configs:\n      - targets: [%s]\n" % ", ".join("'%s'" % r.admin for r in replicas)))
    try:
        prometheus.wait_ready()
        # The graph for the whole cluster, asked of a replica of its own (any replica could carry it).
        viewer = start_collector("viewer", **replica_config({}, None, None, cluster="http://" + prometheus.address))
        router = start_collector("router", grpc=h.GRPC_SETTINGS, overrides={
            "processors": {},
            "exporters": {"loadbalancing": {
                "routing_key": "traceID",
                "protocol": {"otlp": {"timeout": "5s", "sending_queue": {"storage": str(tmp_path / "router-queue")},
                                      "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms",
                                                           "max_elapsed_time": "120s"}}},
                "resolver": {"static": {"hostnames": [r.grpc_address for r in replicas]}}}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": [], "exporters": ["loadbalancing"]}}},
        })

        # 1-3: one swarm, to the router and to the single collector.
        swarm = Swarm([router.endpoint, single.endpoint], seed=18)
        sent = [swarm.trace() for _ in range(120)]
        swarm.shutdown()
        through_router, refused = swarm.acknowledged_spans(router.endpoint)
        alone, _ = swarm.acknowledged_spans(single.endpoint)
        assert refused == 0 and set(through_router) == set(sent) == set(alone)
        want_spans = sum(len(s) for s in alone.values())

        def kept():
            outputs = [traces_in(r) for r in replicas]
            single_kept = traces_in(single)
            total = sum(len(s) for out in outputs for s in out.values())
            return total >= want_spans and sum(len(s) for s in single_kept.values()) >= want_spans, (outputs, single_kept)
        outputs, single_kept = wait_until(kept, 30, "the replicas and the single collector did not write every kept span")
        # No trace is split: each is whole in exactly one replica, the one its id hashes to being irrelevant here.
        for trace_id in single_kept:
            holders = [i for i, out in enumerate(outputs) if trace_id in out]
            assert len(holders) == 1, "trace %s is in replicas %r" % (trace_id, holders)
            assert outputs[holders[0]][trace_id] == single_kept[trace_id], trace_id
        # The kept set is the single collector's.
        assert set().union(*[set(out) for out in outputs]) == set(single_kept)
        assert all(outputs), "a replica got no trace at all: %r" % [len(out) for out in outputs]

        # The cluster graph equals the single collector's, once every root span's store entry expired into its
        # user -> coordinator edge (in both) and Prometheus has scraped the last counts.
        def single_graph():
            r = single.admin_get("/api/service-graph")
            assert r.status == 200
            graph = comparable(r.json())
            return any(edge[0].startswith("user->coordinator") and edge[1] == len(sent) for edge in graph[0]), graph
        expected = wait_until(single_graph, 20, "the single collector never expired the roots into user edges")
        assert any(failed for _, _, failed in expected[0]), "the swarm should have failed calls"

        def cluster_graph():
            answer = viewer.admin_get("/api/service-graph")
            if answer.status != 200:
                return False, (answer.status, answer.body[:300])
            got = comparable(answer.json())
            return got == expected, got
        wait_until(cluster_graph, 30, "the cluster graph never equalled the single collector's %r" % (expected,))
        windowed = viewer.admin_get("/api/service-graph?window=15m")
        assert windowed.status == 200 and {e["id"] for e in windowed.json()["edges"]} == {e[0] for e in expected[0]}
        deps = viewer.admin_get("/api/dependencies")
        assert deps.status == 200
        assert sorted((d["parent"], d["child"], d["callCount"]) for d in deps.json()["data"]) == \
            sorted((e[0].split("->")[0], e[0].split("->")[1].split(":")[0], e[1]) for e in expected[0])

        # 4: kill -9 one replica mid-run and restart it where it was; nothing the router acknowledged is lost.
        victim = replicas[1]
        address, admin = victim.grpc_address, victim.admin
        stop_sending = threading.Event()
        wave = Swarm([router.endpoint], seed=19)
        wave_sent = []

        def keep_sending():
            while not stop_sending.is_set():
                wave_sent.append(wave.trace())
                time.sleep(0.01)
        sender = threading.Thread(target=keep_sending)
        sender.start()
        time.sleep(2)
        victim.proc.kill()
        victim.proc.wait(timeout=10)
        victim.stop_requested = True  # killed on purpose: no clean exit to check
        time.sleep(2)
        restarted = start_collector("replica-restarted", **replica_config(
            {}, sink.grpc_address, str(tmp_path / "replica-queue-1"), grpc_endpoint=address, admin_endpoint=admin,
            output=victim.output))
        # Its output file continues the victim's.
        restarted.output = victim.output
        replicas[1] = restarted
        time.sleep(2)
        stop_sending.set()
        sender.join(timeout=30)
        wave.shutdown()
        acknowledged, refused = wave.acknowledged_spans(router.endpoint)
        assert refused == 0, "the router refused %d spans" % refused
        assert len(acknowledged) > 50

        def all_arrived():
            outputs = [traces_in(r) for r in replicas]
            missing = {t: s - set().union(*[out.get(t, set()) for out in outputs]) for t, s in acknowledged.items()}
            missing = {t: s for t, s in missing.items() if s}
            return not missing, (len(missing), sorted(missing)[:5])
        wait_until(all_arrived, 45, "spans the router acknowledged never reached a replica")
        # The router held the dead replica's share and retried it (it did not reach it by luck).
        metrics = router.scrape()
        retried = sum(v for (name, labels), v in metrics.samples.items() if name == "agenttrace_exporter_retried_spans_total"
                      and dict(labels).get("exporter", "").startswith("loadbalancing/" ))
        assert retried > 0, "the router never retried a send to the killed replica"
        outputs = [traces_in(r) for r in replicas]
        for trace_id in acknowledged:
            holders = [i for i, out in enumerate(outputs) if trace_id in out]
            assert len(holders) == 1, "trace %s is in replicas %r" % (trace_id, holders)
    finally:
        prometheus.stop()


def free_port_on(*hosts):
    """A port free on every one of `hosts` a moment ago."""
    import socket
    for _ in range(50):
        with socket.socket() as first:
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            try:
                for host in hosts[1:]:
                    with socket.socket() as other:
                        other.bind((host, port))
                return port
            except OSError:
                continue
    raise AssertionError("no port free on all of %r" % (hosts,))


class HostsEntries:
    """Lines added to /etc/hosts for one name, removed again (only ours) however the test ends."""

    def __init__(self, name):
        self.name = name

    def set(self, addresses):
        with open("/etc/hosts") as f:
            kept = [line for line in f.read().splitlines(True) if not line.rstrip().endswith(" " + self.name)]
        with open("/etc/hosts", "w") as f:
            f.write("".join(kept) + "".join("%s %s\n" % (address, self.name) for address in addresses))

    def remove(self):
        self.set([])


@pytest.mark.skipif(os.geteuid() != 0, reason="edits /etc/hosts: needs root (CI runs as root)")
def test_dns_resolver_follows_the_name_and_a_dropped_replicas_queue_goes_to_the_other(start_collector, tmp_path):
    name = "agenttrace-replicas-%d" % os.getpid()
    hosts = HostsEntries(name)
    port = free_port_on("127.0.0.2", "127.0.0.3")
    first, second = [start_collector("dns-replica", http=False, grpc=dict(h.GRPC_SETTINGS, endpoint="%s:%d" % (address, port)))
                     for address in ("127.0.0.2", "127.0.0.3")]
    try:
        hosts.set(["127.0.0.2", "127.0.0.3"])
        router = start_collector("dns-router", overrides={
            "processors": {},
            "exporters": {"loadbalancing": {
                "protocol": {"otlp": {"timeout": "2s", "tls": {"insecure": True},
                                      "sending_queue": {"storage": str(tmp_path / "router-queue")},
                                      "retry_on_failure": {"initial_interval": "100ms", "max_interval": "300ms"}}},
                "resolver": {"dns": {"hostname": name, "port": port, "interval": "200ms"}}}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": [], "exporters": ["loadbalancing"]}}},
        })
        wait_until(lambda: (router.scrape().value("agenttrace_loadbalancer_backends", {"exporter": "loadbalancing"}) == 2, None),
                   10, "the router did not resolve both addresses of %s" % name)
        swarm = Swarm([router.endpoint], seed=1)
        [swarm.trace() for _ in range(40)]
        swarm.shutdown()
        sent, refused = swarm.acknowledged_spans(router.endpoint)
        assert refused == 0

        def both_have_all():
            outputs = [traces_in(first), traces_in(second)]
            arrived = sum(len(s) for out in outputs for s in out.values())
            return arrived >= sum(len(s) for s in sent.values()), outputs
        outputs = wait_until(both_have_all, 20, "not every span reached a replica")
        assert outputs[0] and outputs[1], "two A records must be two backends: %r" % [len(o) for o in outputs]
        assert not set(outputs[0]) & set(outputs[1]), "a trace was split across the replicas"

        # The second replica dies; traffic goes on, its share queues in the router; then DNS drops it.
        second.proc.kill()
        second.proc.wait(timeout=10)
        second.stop_requested = True
        wave = Swarm([router.endpoint], seed=2)
        [wave.trace() for _ in range(40)]
        wave.shutdown()
        hosts.set(["127.0.0.2"])
        acknowledged, refused = wave.acknowledged_spans(router.endpoint)
        assert refused == 0

        def all_in_first():
            got = traces_in(first)
            missing = [t for t, spans in acknowledged.items() if not spans <= got.get(t, set())]
            return not missing, len(missing)
        wait_until(all_in_first, 30, "the dropped replica's share did not reach the other")
        metrics = router.scrape()
        assert metrics.value("agenttrace_loadbalancer_backends", {"exporter": "loadbalancing"}) == 1
        assert metrics.value("agenttrace_loadbalancer_rerouted_spans_total", {"exporter": "loadbalancing"}) > 0, \
            "nothing was queued for the dead replica when it was dropped"
    finally:
        hosts.remove()
