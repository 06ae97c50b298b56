"""The `service_graph` processor: edges from CLIENT/SERVER and PRODUCER/CONSUMER pairs, database,
virtual-node and agent edges, seen through the admin API (/api/service-graph, the Jaeger-style
/api/dependencies, the Node Graph API plugin's /api/graph/*), the Prometheus metrics (scraped by a
real Prometheus), and `agenttrace replay --graph-out`.

The reference behaviour (Tempo's metrics-generator, the Collector's servicegraph connector, the
consumers' JSON shapes) is summarised in docs/service-graph.md. Spans are hand-built OTLP/JSON posted
to /v1/traces, except one test that uses the OpenTelemetry Python SDK.
"""

import collections
import json
import math
import os
import subprocess
import time

import pytest

import interop_helpers as h

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5
STATUS_OK, STATUS_ERROR = 1, 2

TTL_S = 2.0
BUCKETS = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]
PEER_ATTRIBUTES = ["peer.service", "db.name", "db.system", "server.address"]


def sg_settings(ttl="2s", max_items=10000, dimensions=(), **extra):
    """The `processors: service_graph:` block of the contract (plus any `extra` keys)."""
    return dict({
        "store": {"ttl": ttl, "max_items": max_items},
        "virtual_node_peer_attributes": list(PEER_ATTRIBUTES),
        "latency_histogram_buckets": list(BUCKETS),
        "dimensions": list(dimensions),
    }, **extra)


def start_sg(start_collector, name, **sg_kw):
    """A collector running otlp -> [service_graph, batch] -> nop."""
    return start_collector(name, exporter="nop", service_graph=sg_settings(**sg_kw))


# ---------------------------------------------------------------------------
# Hand-built OTLP/JSON
# ---------------------------------------------------------------------------

# Trace (spans of one trace tagged with their service) and otlp_request live in interop_helpers.
Trace = h.Trace
otlp_request = h.otlp_request


def post(col, tagged_spans):
    body = json.dumps(otlp_request(tagged_spans)).encode()
    r = col.post_traces(body, "application/json")
    assert r.status == 200, "POST /v1/traces answered %d: %r" % (r.status, r.body[:300])


def all_spans(*traces):
    return [t for tr in traces for t in tr.spans]


# ---------------------------------------------------------------------------
# The graph JSON
# ---------------------------------------------------------------------------

NODE_FIELDS = ("id", "title", "subtitle", "mainstat", "secondarystat", "arc__success", "arc__failed",
               "detail__requests", "detail__errors", "detail__input_tokens", "detail__output_tokens")
EDGE_FIELDS = ("id", "source", "target", "mainstat", "secondarystat", "detail__requests", "detail__failed",
               "detail__connection_type")
CONNECTION_TYPES = {"", "messaging_system", "database", "virtual_node", "agent", "model", "tool"}


def edge_id(source, target, connection_type=""):
    return "%s->%s%s" % (source, target, ":" + connection_type if connection_type else "")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _percent_ok(got, want):
    """An error rate in percent; rounding to two decimals is fine."""
    return abs(got - want) <= 0.005 + 1e-9


def graph_problems(g, where):
    """Shape problems of a graph document (the /api/service-graph contract), as sentences."""
    p = []
    if not isinstance(g, dict) or not isinstance(g.get("nodes"), list) or not isinstance(g.get("edges"), list):
        return ["%s: not an object with 'nodes' and 'edges' lists: %.300r" % (where, g)]
    ids = [n.get("id") for n in g["nodes"] if isinstance(n, dict)]
    if len(ids) != len(set(ids)):
        p.append("%s: duplicate node ids %s" % (where, sorted(i for i, c in collections.Counter(ids).items() if c > 1)))
    for n in g["nodes"]:
        missing = [f for f in NODE_FIELDS if f not in n]
        if missing:
            p.append("%s: node %r lacks %s" % (where, n.get("id"), missing))
            continue
        if not isinstance(n["id"], str) or not n["id"]:
            p.append("%s: node id %r is not a non-empty string" % (where, n["id"]))
        if n["title"] != n["id"]:
            p.append("%s: node %r has title %r (want the node name)" % (where, n["id"], n["title"]))
        if not isinstance(n["subtitle"], str):
            p.append("%s: node %r subtitle %r is not a string" % (where, n["id"], n["subtitle"]))
        nums = ("mainstat", "secondarystat", "arc__success", "arc__failed", "detail__requests", "detail__errors",
                "detail__input_tokens", "detail__output_tokens")
        bad = [f for f in nums if not _is_number(n[f])]
        if bad:
            p.append("%s: node %r: %s not numbers" % (where, n["id"], {f: n[f] for f in bad}))
            continue
        if n["mainstat"] != n["detail__requests"]:
            p.append("%s: node %r mainstat %r != detail__requests %r" % (where, n["id"], n["mainstat"],
                                                                        n["detail__requests"]))
        req, err = n["detail__requests"], n["detail__errors"]
        if req > 0:
            if abs(n["arc__success"] + n["arc__failed"] - 1) > 1e-6:
                p.append("%s: node %r arc__success %r + arc__failed %r != 1" % (where, n["id"], n["arc__success"],
                                                                                n["arc__failed"]))
            if abs(n["arc__failed"] - err / req) > 1e-6:
                p.append("%s: node %r arc__failed %r != detail__errors/detail__requests = %r"
                         % (where, n["id"], n["arc__failed"], err / req))
            if not _percent_ok(n["secondarystat"], 100.0 * err / req):
                p.append("%s: node %r secondarystat %r != error rate in percent %r"
                         % (where, n["id"], n["secondarystat"], 100.0 * err / req))
    node_ids = set(ids)
    eids = [e.get("id") for e in g["edges"] if isinstance(e, dict)]
    if len(eids) != len(set(eids)):
        p.append("%s: duplicate edge ids %s" % (where, sorted(i for i, c in collections.Counter(eids).items() if c > 1)))
    for e in g["edges"]:
        missing = [f for f in EDGE_FIELDS if f not in e]
        if missing:
            p.append("%s: edge %r lacks %s" % (where, e.get("id"), missing))
            continue
        ct = e["detail__connection_type"]
        if ct not in CONNECTION_TYPES:
            p.append("%s: edge %r has detail__connection_type %r (want one of %s)"
                     % (where, e["id"], ct, sorted(CONNECTION_TYPES)))
        if e["id"] != edge_id(e["source"], e["target"], ct):
            p.append("%s: edge id %r, want %r" % (where, e["id"], edge_id(e["source"], e["target"], ct)))
        for end in ("source", "target"):
            if e[end] not in node_ids:
                p.append("%s: edge %r %s %r is not a node" % (where, e["id"], end, e[end]))
        bad = [f for f in ("mainstat", "secondarystat", "detail__requests", "detail__failed") if not _is_number(e[f])]
        if bad:
            p.append("%s: edge %r: %s not numbers" % (where, e["id"], {f: e[f] for f in bad}))
            continue
        if e["mainstat"] != e["detail__requests"]:
            p.append("%s: edge %r mainstat %r != detail__requests %r" % (where, e["id"], e["mainstat"],
                                                                        e["detail__requests"]))
        req, failed = e["detail__requests"], e["detail__failed"]
        if req > 0 and not _percent_ok(e["secondarystat"], 100.0 * failed / req):
            p.append("%s: edge %r secondarystat %r != error rate in percent %r"
                     % (where, e["id"], e["secondarystat"], 100.0 * failed / req))
    return p


def fetch_graph(col, path="/api/service-graph"):
    r = col.admin_get(path)
    assert r.status == 200, "GET %s answered %d: %r" % (path, r.status, r.body[:300])
    assert r.content_type.split(";")[0].strip() == "application/json", \
        "GET %s: Content-Type %r, want application/json" % (path, r.content_type)
    try:
        return r.json()
    except ValueError as e:
        raise AssertionError("GET %s: body is not JSON (%s): %r" % (path, e, r.body[:300]))


def edges_of(g):
    return {e["id"]: e for e in g["edges"]}


def nodes_of(g):
    return {n["id"]: n for n in g["nodes"]}


def edge_problems(g, want):
    """want: {edge id: {field: value}} -> sentences for each edge missing or differing."""
    got = edges_of(g)
    p = []
    for eid, fields in want.items():
        if eid not in got:
            p.append("edge %r missing" % eid)
            continue
        diff = {f: (v, got[eid].get(f)) for f, v in fields.items() if got[eid].get(f) != v}
        if diff:
            p.append("edge %r: %s" % (eid, ", ".join("%s want %r got %r" % (f, w, x) for f, (w, x) in diff.items())))
    return p


def show(g):
    return json.dumps(g, indent=1, sort_keys=True)[:6000]


def wait_graph(col, want, timeout=15.0, what="", path="/api/service-graph"):
    """Poll GET path until want(graph) returns no problems; fail with the last problems and graph."""
    deadline = time.monotonic() + timeout
    while True:
        g = fetch_graph(col, path)
        problems = graph_problems(g, "GET " + path)
        if not problems:
            problems = want(g)
        if not problems:
            return g
        if time.monotonic() >= deadline:
            raise AssertionError("GET %s (after %.0fs%s):\n  %s\ngraph:\n%s"
                                 % (path, timeout, ", " + what if what else "", "\n  ".join(problems), show(g)))
        time.sleep(0.2)


def wait_edges(col, want, timeout=15.0, what=""):
    return wait_graph(col, lambda g: edge_problems(g, want), timeout, what)


def edge(requests, failed=None, ct=None):
    d = {"detail__requests": requests}
    if failed is not None:
        d["detail__failed"] = failed
    if ct is not None:
        d["detail__connection_type"] = ct
    return d


def assert_stays(col, seconds, want, what):
    """The graph keeps satisfying `want` (edge dict) for `seconds` (nothing counted twice later)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        g = fetch_graph(col)
        p = edge_problems(g, want)
        assert not p, "%s:\n  %s\ngraph:\n%s" % (what, "\n  ".join(p), show(g))
        time.sleep(0.25)
    return g


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

M_TOTAL = "traces_service_graph_request_total"
M_FAILED = "traces_service_graph_request_failed_total"
M_SERVER = "traces_service_graph_request_server_seconds"
M_CLIENT = "traces_service_graph_request_client_seconds"
M_UNPAIRED = "traces_service_graph_unpaired_spans_total"
M_DROPPED = "traces_service_graph_dropped_spans_total"


def lab(client, server, connection_type=""):
    return {"client": client, "server": server, "connection_type": connection_type}


def _nonempty(labels):
    # Prometheus treats a label with an empty value as absent: connection_type="" may be left out.
    return {k: v for k, v in labels.items() if v != ""}


def _matches(labs, want):
    """Exactly these labels (empty values = absent); the connector's `failed` label is summed over
    unless `want` names it."""
    labs = _nonempty(labs)
    if "failed" not in want:
        labs.pop("failed", None)
    return labs == _nonempty(want)


def mval(ms, name, labels, default=0.0):
    """Value of the series of `name` with these labels, summed over `failed` unless it is given."""
    found = [v for labs, v in ms.series(name) if _matches(labs, labels)]
    return sum(found) if found else default


def buckets(ms, name, labels):
    """{le as float: value} of one histogram series (summed over `failed` unless given)."""
    out = {}
    for labs, v in ms.series(name + "_bucket"):
        le = labs.pop("le", None)
        if _matches(labs, labels) and le is not None:
            out[float(le)] = out.get(float(le), 0.0) + v
    return out


def assert_histogram(ms, name, labels, seconds):
    """One observation of `seconds` in histogram `name` with exactly `labels`."""
    b = buckets(ms, name, labels)
    want_les = set(BUCKETS) | {math.inf}
    assert set(b) == want_les, "%s_bucket%s: le values %s, want %s" % (name, labels, sorted(b), sorted(want_les))
    want = {le: (1.0 if seconds <= le else 0.0) for le in want_les}
    assert b == want, "%s_bucket%s after one observation of %.3fs: got %s, want %s" % (
        name, labels, seconds, sorted(b.items()), sorted(want.items()))
    assert mval(ms, name + "_count", labels, default=None) == 1, \
        "%s_count%s = %r, want 1" % (name, labels, mval(ms, name + "_count", labels, default=None))
    s = mval(ms, name + "_sum", labels, default=None)
    assert s is not None and abs(s - seconds) < 0.002, "%s_sum%s = %r, want %.3f" % (name, labels, s, seconds)


def wait_metric(col, name, labels, want, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        ms = col.scrape()
        got = mval(ms, name, labels, default=None)
        if got == want:
            return ms
        if time.monotonic() >= deadline:
            raise AssertionError("GET /metrics: %s%s = %r, want %r; service graph series:\n%s" % (
                name, labels, got, want, "\n".join("%s %s %s" % (k[0], dict(k[1]), v) for k, v in sorted(ms.samples.items())
                                                   if k[0].startswith("traces_service_graph"))))
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

def test_validate_accepts_the_service_graph_config(agenttrace_bin, tmp_path):
    cfg = h.build_config(str(tmp_path / "out.jsonl"), exporter="nop", service_graph=sg_settings())
    path = h.write_config(str(tmp_path / "sg.yaml"), cfg)
    r = h.run_cli(agenttrace_bin, ["validate", "--config", path])
    assert r.returncode == 0, "agenttrace validate --config (service_graph) exited %d\n%s\nstdout:\n%s\nstderr:\n%s" % (
        r.returncode, open(path).read(), r.stdout, r.stderr)


def test_validate_names_a_bad_service_graph_key(agenttrace_bin, tmp_path):
    sg = sg_settings()
    sg["store"]["ttll"] = "2s"
    cfg = h.build_config(str(tmp_path / "out.jsonl"), exporter="nop", service_graph=sg)
    path = h.write_config(str(tmp_path / "bad.yaml"), cfg)
    r = h.run_cli(agenttrace_bin, ["validate", "--config", path])
    assert r.returncode != 0, "validate accepted an unknown key processors.service_graph.store.ttll"
    assert "processors.service_graph.store.ttll" in r.stdout + r.stderr, \
        "validate did not name processors.service_graph.store.ttll:\nstdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# 1. CLIENT + SERVER
# ---------------------------------------------------------------------------

def test_client_server_pair_is_one_request_with_both_latencies(start_collector):
    col = start_sg(start_collector, "pair")
    t = Trace()
    c = t.span("shop-frontend", "GET /cart", KIND_CLIENT, start_s=0.0, dur_s=0.5,
               attrs={"peer.service": "cart-service", "server.address": "cart"})
    t.span("cart-service", "GET /cart", KIND_SERVER, parent=c, start_s=0.1, dur_s=0.3)
    post(col, t.spans)

    eid = edge_id("shop-frontend", "cart-service")
    g = wait_edges(col, {eid: edge(1, 0, "")}, what="after a CLIENT span and its SERVER child")
    n = nodes_of(g)
    assert {"shop-frontend", "cart-service"} <= set(n), "nodes: %s" % sorted(n)
    assert (n["cart-service"]["detail__requests"], n["cart-service"]["detail__errors"]) == (1, 0), \
        "node cart-service: %s" % n["cart-service"]
    # The pair completed: after the ttl nothing more appears (no virtual node from the client's peer.service).
    g = assert_stays(col, TTL_S + 3.0, {eid: edge(1, 0, "")}, "the paired request was counted again after the ttl")
    assert set(edges_of(g)) == {eid}, "edges after the ttl: %s, want only %s" % (sorted(edges_of(g)), eid)

    ms = col.scrape()
    L = lab("shop-frontend", "cart-service")
    assert mval(ms, M_TOTAL, L, default=None) == 1, "%s%s = %r, want 1" % (M_TOTAL, L, mval(ms, M_TOTAL, L, default=None))
    assert mval(ms, M_FAILED, L) == 0, "%s%s = %r, want 0 (or absent)" % (M_FAILED, L, mval(ms, M_FAILED, L))
    assert_histogram(ms, M_SERVER, L, 0.3)
    assert_histogram(ms, M_CLIENT, L, 0.5)
    assert ms.total(M_TOTAL) == 1, "series of %s: %s" % (M_TOTAL, ms.series(M_TOTAL))


def test_dimensions_become_metric_labels(start_collector):
    """dimensions: [tenant] adds the attribute as the connector's `client_tenant` and `server_tenant`
    labels (connector.go upsertDimensions: `m[kind+"_"+dim] = v`), one series per value."""
    col = start_sg(start_collector, "dimensions", dimensions=["tenant"])
    spans = []
    for tenant in ("acme", "acme", "globex"):
        t = Trace()
        c = t.span("dim-client", "GET /", KIND_CLIENT, dur_s=0.02, attrs={"tenant": tenant})
        t.span("dim-server", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01, attrs={"tenant": tenant})
        spans += t.spans
    post(col, spans)
    base = lab("dim-client", "dim-server")
    forms = []
    for style in ({"client_tenant": "%s", "server_tenant": "%s"},):
        forms.append({tuple(sorted(_nonempty(dict(base, **{k: f % x for k, f in style.items()})).items())): n
                      for x, n in (("acme", 2.0), ("globex", 1.0))})
    deadline = time.monotonic() + 15
    while True:
        got = {tuple(sorted((k, x) for k, x in _nonempty(labs).items() if k != "failed")): v
               for labs, v in col.scrape().series(M_TOTAL) if labs.get("client") == "dim-client"}
        if got in forms or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got in forms, "GET /metrics: %s series for dim-client: %s\nwant %s" % (M_TOTAL, got, forms[0])
    # The graph keeps one edge per (source, target, connection_type): its ids stay unique.
    wait_edges(col, {edge_id("dim-client", "dim-server"): edge(3, 0, "")}, what="3 requests in 2 tenants")


def test_failed_when_either_side_has_status_error(start_collector):
    col = start_sg(start_collector, "failed")
    spans = []
    for client_status, server_status in ((STATUS_ERROR, None), (None, STATUS_ERROR), (STATUS_OK, STATUS_OK)):
        t = Trace()
        c = t.span("billing", "POST /charge", KIND_CLIENT, dur_s=0.05, status=client_status)
        t.span("payments", "POST /charge", KIND_SERVER, parent=c, start_s=0.01, dur_s=0.03, status=server_status)
        spans += t.spans
    post(col, spans)
    eid = edge_id("billing", "payments")
    g = wait_edges(col, {eid: edge(3, 2, "")}, what="3 requests, the client failed in one, the server in another")
    e = edges_of(g)[eid]
    assert _percent_ok(e["secondarystat"], 200.0 / 3), "edge %s secondarystat %r, want 66.67 (%%)" % (eid, e["secondarystat"])
    node = nodes_of(g)["payments"]
    assert (node["detail__requests"], node["detail__errors"]) == (3, 2), "node payments: %s" % node
    ms = wait_metric(col, M_FAILED, lab("billing", "payments"), 2)
    assert mval(ms, M_TOTAL, lab("billing", "payments")) == 3


def test_pair_built_with_the_opentelemetry_sdk(start_collector):
    """Two SDK TracerProviders (two services) export over OTLP/HTTP protobuf; the SERVER span's parent
    is the CLIENT span, as context propagation makes it."""
    from opentelemetry import trace as api
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    col = start_sg(start_collector, "sdk")
    providers = {}
    for svc in ("sdk-frontend", "sdk-backend"):
        p = TracerProvider(resource=Resource.create({"service.name": svc}))
        p.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=col.endpoint + "/v1/traces")))
        providers[svc] = p
    front = providers["sdk-frontend"].get_tracer("interop")
    back = providers["sdk-backend"].get_tracer("interop")
    for fail in (False, True):
        with front.start_as_current_span("GET /items", kind=SpanKind.CLIENT) as cs:
            ctx = api.set_span_in_context(cs)
            with back.start_as_current_span("GET /items", kind=SpanKind.SERVER, context=ctx) as ss:
                time.sleep(0.01)
                if fail:
                    ss.set_status(Status(StatusCode.ERROR, "boom"))
    for p in providers.values():
        p.shutdown()
    wait_edges(col, {edge_id("sdk-frontend", "sdk-backend"): edge(2, 1, "")}, what="two SDK requests, one failed")


# ---------------------------------------------------------------------------
# 2. PRODUCER + CONSUMER
# ---------------------------------------------------------------------------

def test_producer_consumer_is_a_messaging_system_edge(start_collector):
    col = start_sg(start_collector, "messaging")
    spans = []
    for consumer_status in (None, STATUS_ERROR):
        t = Trace()
        p = t.span("order-publisher", "publish orders", KIND_PRODUCER, dur_s=0.02,
                   attrs={"messaging.system": "rabbitmq", "messaging.destination.name": "orders"})
        t.span("order-worker", "process orders", KIND_CONSUMER, parent=p, start_s=0.2, dur_s=0.1,
               status=consumer_status, attrs={"messaging.system": "rabbitmq"})
        spans += t.spans
    post(col, spans)
    eid = edge_id("order-publisher", "order-worker", "messaging_system")
    wait_edges(col, {eid: edge(2, 1, "messaging_system")}, what="two PRODUCER->CONSUMER pairs, one consumer failed")
    L = lab("order-publisher", "order-worker", "messaging_system")
    ms = wait_metric(col, M_TOTAL, L, 2)
    assert mval(ms, M_FAILED, L) == 1, "%s%s = %r, want 1" % (M_FAILED, L, mval(ms, M_FAILED, L))
    assert mval(ms, M_SERVER + "_count", L) == 2 and mval(ms, M_CLIENT + "_count", L) == 2, \
        "histogram counts: server %r client %r, want 2 and 2" % (mval(ms, M_SERVER + "_count", L),
                                                                 mval(ms, M_CLIENT + "_count", L))


# ---------------------------------------------------------------------------
# 3. Database edges
# ---------------------------------------------------------------------------

def test_database_edges_are_recorded_at_once_named_by_precedence(start_collector):
    # A long ttl: edges that show up within the test's timeout were not waiting for an expiry.
    col = start_sg(start_collector, "database", ttl="60s")
    t = Trace()
    t.span("inventory-api", "SELECT orders", KIND_CLIENT, dur_s=0.004,
           attrs={"db.system": "postgresql", "db.name": "orders", "server.address": "pg-primary.internal",
                  "peer.service": "orders-db"})
    t.span("inventory-api", "SELECT stock", KIND_CLIENT, dur_s=0.004,
           attrs={"db.system": "postgresql", "db.name": "stock", "server.address": "pg-replica.internal"})
    t.span("inventory-api", "SELECT items", KIND_CLIENT, dur_s=0.004, attrs={"db.system": "mysql", "db.name": "items"})
    t.span("inventory-api", "GET session", KIND_CLIENT, dur_s=0.002, attrs={"db.system": "redis"},
           status=STATUS_ERROR)
    post(col, t.spans)
    want = {
        edge_id("inventory-api", "orders-db", "database"): edge(1, 0, "database"),             # peer.service
        edge_id("inventory-api", "pg-replica.internal", "database"): edge(1, 0, "database"),   # server.address
        edge_id("inventory-api", "items", "database"): edge(1, 0, "database"),                 # db.name
        edge_id("inventory-api", "redis", "database"): edge(1, 1, "database"),                 # db.system
    }
    g = wait_edges(col, want, timeout=10.0, what="database CLIENT spans with ttl 60s (no pairing)")
    assert set(edges_of(g)) == set(want), "edges: %s, want exactly %s" % (sorted(edges_of(g)), sorted(want))
    ms = col.scrape()
    problems = []
    for eid in want:
        target = eid.split("->")[1].rsplit(":", 1)[0]
        L = lab("inventory-api", target, "database")
        # Tempo and the connector observe both histograms, the server side with the client span's
        # duration (Grafana's queries count calls with ..._server_seconds_count).
        for name in (M_TOTAL, M_CLIENT + "_count", M_SERVER + "_count"):
            if mval(ms, name, L, default=None) != 1:
                problems.append("%s%s = %r, want 1" % (name, L, mval(ms, name, L, default=None)))
    assert not problems, "GET /metrics after 4 database calls:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------------------
# 4. Virtual nodes and the user node
# ---------------------------------------------------------------------------

def test_unpaired_client_with_peer_and_root_server_become_virtual_nodes_after_ttl(start_collector):
    col = start_sg(start_collector, "virtual")
    t = Trace()
    root = t.span("checkout", "POST /checkout", KIND_SERVER, dur_s=1.0)      # no client: user -> checkout
    t.span("checkout", "POST /pay", KIND_CLIENT, parent=root, start_s=0.1, dur_s=0.2,
           attrs={"peer.service": "stripe-api", "server.address": "api.stripe.com"})
    t.span("checkout", "GET /rates", KIND_CLIENT, parent=root, start_s=0.4, dur_s=0.1,
           attrs={"server.address": "rates.example.com"})
    t.span("checkout", "GET /nowhere", KIND_CLIENT, parent=root, start_s=0.6, dur_s=0.1,
           attrs={"http.request.method": "GET"})                            # no peer attribute: no edge
    sent = time.monotonic()
    post(col, t.spans)
    want = {
        edge_id("checkout", "stripe-api", "virtual_node"): edge(1, 0, "virtual_node"),
        edge_id("checkout", "rates.example.com", "virtual_node"): edge(1, 0, "virtual_node"),
        edge_id("user", "checkout", "virtual_node"): edge(1, 0, "virtual_node"),
    }
    g = fetch_graph(col)
    early = set(edges_of(g)) & set(want)
    if time.monotonic() - sent < TTL_S * 0.75:
        assert not early, "virtual-node edges %s appeared before the ttl (%.0fs) passed" % (sorted(early), TTL_S)
    g = wait_edges(col, want, timeout=TTL_S + 10.0, what="ttl 2s after unpaired spans")
    assert set(edges_of(g)) == set(want), "edges: %s, want exactly %s" % (sorted(edges_of(g)), sorted(want))
    assert "user" in nodes_of(g)
    ms = col.scrape()
    for client, server in (("checkout", "stripe-api"), ("checkout", "rates.example.com"), ("user", "checkout")):
        L = lab(client, server, "virtual_node")
        assert mval(ms, M_TOTAL, L, default=None) == 1, "%s%s = %r, want 1" % (M_TOTAL, L, mval(ms, M_TOTAL, L, default=None))


def test_unpaired_and_dropped_spans_are_counted(start_collector):
    """Non-root SERVER spans whose client never comes expire without an edge (unpaired); with
    max_items 3, two of five are dropped at once."""
    col = start_sg(start_collector, "unpaired", max_items=3)
    spans = []
    for i in range(5):
        t = Trace()
        t.span("orphan-service", "GET /x", KIND_SERVER, parent=os.urandom(8).hex(), dur_s=0.01)
        spans += t.spans
    post(col, spans)
    deadline = time.monotonic() + TTL_S + 10.0
    while True:
        ms = col.scrape()
        unpaired, dropped = ms.total(M_UNPAIRED), ms.total(M_DROPPED)
        if (unpaired >= 3 and dropped >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert M_UNPAIRED in ms.names() and M_DROPPED in ms.names(), \
        "GET /metrics lacks %s or %s: names %s" % (M_UNPAIRED, M_DROPPED, sorted(n for n in ms.names() if "service_graph" in n))
    problems = []
    if dropped != 2:
        problems.append("%s = %r, want 2 (5 SERVER spans into a store of max_items 3)" % (M_DROPPED, dropped))
    if unpaired not in (3, 5):
        problems.append("%s = %r, want 3 (the stored halves that expired; 5 if dropped ones count too)"
                        % (M_UNPAIRED, unpaired))
    assert not problems, "GET /metrics %.0fs after 5 client-less non-root SERVER spans (ttl 2s, max_items 3):\n  %s" % (
        TTL_S + 10.0, "\n  ".join(problems))
    g = fetch_graph(col)
    assert not [e for e in g["edges"] if e["target"] == "orphan-service"], \
        "non-root SERVER spans without a client made edges: %s" % show(g)


# ---------------------------------------------------------------------------
# 5. Agent edges
# ---------------------------------------------------------------------------

def agent_trace():
    t = Trace()
    orch = t.span("coordinator", "invoke_agent coordinator", KIND_INTERNAL, dur_s=3.0,
                  attrs={"gen_ai.operation.name": "invoke_agent"})
    sub = t.span("researcher", "invoke_agent researcher", KIND_INTERNAL, parent=orch, start_s=0.1, dur_s=2.5,
                 attrs={"gen_ai.operation.name": "invoke_agent"})
    t.span("coordinator", "handoff", KIND_INTERNAL, parent=orch, start_s=2.7, dur_s=0.1,
           attrs={"agent.source": "planner", "agent.target": "critic"})
    t.span("coordinator", "same-service child", KIND_INTERNAL, parent=orch, start_s=2.8, dur_s=0.1)
    for i, (model, tin, tout) in enumerate((("gpt-4o", 100, 20), ("claude-3-5-sonnet", 50, 5), ("gpt-4o", 30, 7))):
        t.span("researcher", "chat " + model, KIND_CLIENT, parent=sub, start_s=0.2 + 0.5 * i, dur_s=0.4,
               attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.usage.input_tokens": tin, "gen_ai.usage.output_tokens": tout})
    for i in range(2):
        t.span("researcher", "execute_tool web_search", KIND_INTERNAL, parent=sub, start_s=1.8 + 0.2 * i, dur_s=0.1,
               attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "web_search"})
    return t


AGENT_EDGES = {
    edge_id("coordinator", "researcher", "agent"): edge(1, ct="agent"),
    edge_id("planner", "critic", "agent"): edge(1, ct="agent"),
    edge_id("researcher", "gpt-4o", "model"): edge(2, ct="model"),
    edge_id("researcher", "claude-3-5-sonnet", "model"): edge(1, ct="model"),
    edge_id("researcher", "web_search", "tool"): edge(2, ct="tool"),
}


def test_agent_model_and_tool_edges_with_token_sums(start_collector):
    col = start_sg(start_collector, "agents")
    post(col, agent_trace().spans)
    g = wait_edges(col, AGENT_EDGES, what="an agent trace (sub-agent, agent.source/target, 3 chats, 2 tool calls)")
    n = nodes_of(g)
    assert (n["researcher"]["detail__input_tokens"], n["researcher"]["detail__output_tokens"]) == (180, 32), \
        "node researcher: detail__input_tokens %r detail__output_tokens %r, want 180 and 32" % (
            n["researcher"]["detail__input_tokens"], n["researcher"]["detail__output_tokens"])
    assert edge_id("coordinator", "coordinator", "agent") not in edges_of(g), "a same-service child made an agent edge"
    ms = col.scrape()
    for eid, want in AGENT_EDGES.items():
        src, rest = eid.split("->")
        dst, ct = rest.rsplit(":", 1)
        L = lab(src, dst, ct)
        assert mval(ms, M_TOTAL, L, default=None) == want["detail__requests"], "%s%s = %r, want %r" % (
            M_TOTAL, L, mval(ms, M_TOTAL, L, default=None), want["detail__requests"])


# ---------------------------------------------------------------------------
# 6. Order independence
# ---------------------------------------------------------------------------

def mixed_trace():
    """One trace with every kind of edge (user, request, agent, model, tool, database, messaging)."""
    t = Trace()
    root = t.span("gateway", "POST /task", KIND_SERVER, dur_s=4.0)
    c = t.span("gateway", "POST /run", KIND_CLIENT, parent=root, start_s=0.05, dur_s=3.8)
    s = t.span("orchestrator", "POST /run", KIND_SERVER, parent=c, start_s=0.06, dur_s=3.7, status=STATUS_ERROR)
    inv = t.span("orchestrator", "invoke_agent orchestrator", KIND_INTERNAL, parent=s, start_s=0.07, dur_s=3.5)
    w = t.span("worker-agent", "invoke_agent worker-agent", KIND_INTERNAL, parent=inv, start_s=0.1, dur_s=3.0)
    t.span("worker-agent", "chat gpt-4o-mini", KIND_CLIENT, parent=w, start_s=0.2, dur_s=1.0,
           attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                  "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300})
    t.span("worker-agent", "execute_tool read_file", KIND_INTERNAL, parent=w, start_s=1.3, dur_s=0.1,
           attrs={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_file"})
    t.span("worker-agent", "SELECT docs", KIND_CLIENT, parent=w, start_s=1.5, dur_s=0.02,
           attrs={"db.system": "postgresql", "db.name": "knowledge", "server.address": "pg.internal"})
    p = t.span("orchestrator", "publish results", KIND_PRODUCER, parent=inv, start_s=3.2, dur_s=0.01)
    t.span("notifier", "process results", KIND_CONSUMER, parent=p, start_s=3.3, dur_s=0.2)
    return t


MIXED_EDGES = {
    edge_id("user", "gateway", "virtual_node"): edge(1, ct="virtual_node"),
    edge_id("gateway", "orchestrator"): edge(1, 1, ""),
    edge_id("orchestrator", "worker-agent", "agent"): edge(1, ct="agent"),
    edge_id("worker-agent", "gpt-4o-mini", "model"): edge(1, ct="model"),
    edge_id("worker-agent", "read_file", "tool"): edge(1, ct="tool"),
    edge_id("worker-agent", "pg.internal", "database"): edge(1, 0, "database"),
    edge_id("orchestrator", "notifier", "messaging_system"): edge(1, 0, "messaging_system"),
}


def normalised(g):
    return {"nodes": sorted(g["nodes"], key=lambda n: n["id"]), "edges": sorted(g["edges"], key=lambda e: e["id"])}


def sg_series(ms):
    return {(k[0], k[1]): v for k, v in ms.samples.items() if k[0].startswith("traces_service_graph_request")}


def test_split_and_reversed_spans_give_the_same_graph(start_collector):
    t = mixed_trace()
    whole = start_sg(start_collector, "whole")
    split = start_sg(start_collector, "split")
    post(whole, t.spans)
    for tagged in reversed(t.spans):          # children before parents, one request per span
        post(split, [tagged])
    # The user edge's connection_type is test 4's business; here it only has to exist.
    want = {k: v for k, v in MIXED_EDGES.items() if not k.startswith("user->")}

    def complete(g):
        p = edge_problems(g, want)
        if not any(e["source"] == "user" and e["target"] == "gateway" for e in g["edges"]):
            p.append("no user -> gateway edge (the root SERVER span, after the ttl)")
        return p

    wait_graph(whole, complete, timeout=TTL_S + 10.0, what="the trace in one request")
    wait_graph(split, complete, timeout=TTL_S + 10.0, what="the trace one span per request, reversed")
    time.sleep(TTL_S + 1.0)                   # anything still pending expires in both
    g1, g2 = normalised(fetch_graph(whole)), normalised(fetch_graph(split))
    got = {e for e in edges_of(g1) if not e.startswith("user->")}
    assert got == set(want), "edges (one request): %s, want %s" % (sorted(edges_of(g1)), sorted(MIXED_EDGES))
    assert g1 == g2, "the graph differs when the spans arrive split and reversed:\none request:\n%s\nsplit:\n%s" % (
        show(g1), show(g2))
    n = nodes_of(g1)
    assert (n["worker-agent"]["detail__input_tokens"], n["worker-agent"]["detail__output_tokens"]) == (1200, 300)
    s1, s2 = sg_series(whole.scrape()), sg_series(split.scrape())
    assert s1 == s2, "service graph metrics differ:\none request: %s\nsplit: %s" % (sorted(s1.items()), sorted(s2.items()))


# ---------------------------------------------------------------------------
# Admin API: Jaeger dependencies, Node Graph API plugin
# ---------------------------------------------------------------------------

def deps(col, end_ms, lookback_ms):
    path = "/api/dependencies?endTs=%d&lookback=%d" % (end_ms, lookback_ms)
    r = col.admin_get(path)
    assert r.status == 200, "GET %s answered %d: %r" % (path, r.status, r.body[:300])
    assert r.content_type.split(";")[0].strip() == "application/json", "GET %s: Content-Type %r" % (path, r.content_type)
    d = r.json()
    assert set(d) == {"data", "total", "limit", "offset", "errors"}, "GET %s: keys %s" % (path, sorted(d))
    assert (d["total"], d["limit"], d["offset"], d["errors"]) == (0, 0, 0, None), "GET %s: %r" % (path, d)
    assert isinstance(d["data"], list), "GET %s: data %r" % (path, d["data"])
    for link in d["data"]:
        assert set(link) == {"parent", "child", "callCount"}, "GET %s: link %r" % (path, link)
        assert isinstance(link["parent"], str) and isinstance(link["child"], str), link
        assert isinstance(link["callCount"], int) and not isinstance(link["callCount"], bool) and link["callCount"] > 0, link
    pairs = [(x["parent"], x["child"]) for x in d["data"]]
    assert len(pairs) == len(set(pairs)), "GET %s: (parent, child) repeated: %s" % (path, pairs)
    return path, {(x["parent"], x["child"]): x["callCount"] for x in d["data"]}


def test_dependencies_in_jaeger_shape(start_collector):
    col = start_sg(start_collector, "deps")
    spans = []
    for _ in range(3):
        t = Trace()
        c = t.span("web", "GET /", KIND_CLIENT, dur_s=0.02)
        t.span("api", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
        spans += t.spans
    t = Trace()
    t.span("api", "SELECT", KIND_CLIENT, dur_s=0.01, attrs={"db.system": "postgresql", "peer.service": "pg"})
    spans += t.spans
    post(col, spans)
    g = wait_edges(col, {edge_id("web", "api"): edge(3), edge_id("api", "pg", "database"): edge(1)})
    now = int(time.time() * 1000)
    path, links = deps(col, now, 3600 * 1000)
    assert links.get(("web", "api")) == 3 and links.get(("api", "pg")) == 1, \
        "GET %s: links %s, want web->api 3 and api->pg 1" % (path, links)
    # every link is an edge of the graph, with the calls of its edges summed
    calls = collections.Counter()
    for e in g["edges"]:
        calls[(e["source"], e["target"])] += e["detail__requests"]
    assert links == dict(calls), "GET %s: %s, but /api/service-graph edges sum to %s" % (path, links, dict(calls))


@pytest.mark.parametrize("lookback_min", [10, 60])
def test_dependencies_window_excludes_edges_outside_it(start_collector, lookback_min):
    """A window that ended 3 hours ago (before the collector started) has no links; one ending now has."""
    col = start_sg(start_collector, "deps-window")
    t = Trace(base_ns=time.time_ns() - 2 * 1_000_000_000)
    c = t.span("web", "GET /", KIND_CLIENT, dur_s=0.02)
    t.span("api", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
    post(col, t.spans)
    wait_edges(col, {edge_id("web", "api"): edge(1)})
    now = int(time.time() * 1000)
    path, links = deps(col, now + 1000, lookback_min * 60 * 1000)
    assert links == {("web", "api"): 1}, "GET %s (a window ending now): %s, want web->api 1" % (path, links)
    path, links = deps(col, now - 3 * 3600 * 1000, lookback_min * 60 * 1000)
    assert links == {}, "GET %s (a window ending 3h ago, lookback %d min): %s, want no links" % (
        path, lookback_min, links)


def test_dependencies_bad_end_ts_is_a_400_in_jaeger_shape(start_collector):
    col = start_sg(start_collector, "deps-bad")
    r = col.admin_get("/api/dependencies?endTs=yesterday&lookback=1000")
    assert r.status == 400, "GET /api/dependencies?endTs=yesterday answered %d: %r" % (r.status, r.body[:300])
    d = r.json()
    assert d.get("data") is None and isinstance(d.get("errors"), list) and d["errors"] \
        and d["errors"][0].get("code") == 400 and isinstance(d["errors"][0].get("msg"), str), \
        "GET /api/dependencies?endTs=yesterday: %r, want {\"data\":null,...,\"errors\":[{\"code\":400,\"msg\":...}]}" % d


def test_node_graph_api_plugin_endpoints(start_collector):
    col = start_sg(start_collector, "nodegraph")
    post(col, agent_trace().spans)
    g = wait_edges(col, AGENT_EDGES)

    r = col.admin_get("/api/health")
    assert r.status == 200, "GET /api/health answered %d: %r" % (r.status, r.body[:300])

    fields = fetch_graph(col, "/api/graph/fields")
    assert isinstance(fields, dict) and set(fields) >= {"nodes_fields", "edges_fields"}, \
        "GET /api/graph/fields: %.500r" % (fields,)
    declared = {}
    for kind in ("nodes_fields", "edges_fields"):
        assert isinstance(fields[kind], list), "GET /api/graph/fields: %s %r" % (kind, fields[kind])
        declared[kind] = {}
        for f in fields[kind]:
            assert isinstance(f, dict) and isinstance(f.get("field_name"), str) and f.get("type") in ("string", "number"), \
                "GET /api/graph/fields: %s entry %r (want field_name and type string|number)" % (kind, f)
            assert set(f) <= {"field_name", "type", "color", "displayName"}, "GET /api/graph/fields: %r" % f
            declared[kind][f["field_name"]] = f
    nf, ef = declared["nodes_fields"], declared["edges_fields"]
    assert "id" in nf and nf["id"]["type"] == "string", "nodes_fields: %s" % sorted(nf)
    for name in ("id", "source", "target"):
        assert name in ef and ef[name]["type"] == "string", "edges_fields: %s" % sorted(ef)
    for name in ("arc__success", "arc__failed"):
        assert name in nf and nf[name]["type"] == "number" and nf[name].get("color"), \
            "nodes_fields %s: %r (want a number field with a color)" % (name, nf.get(name))

    data = fetch_graph(col, "/api/graph/data")
    assert isinstance(data, dict) and isinstance(data.get("nodes"), list) and isinstance(data.get("edges"), list), \
        "GET /api/graph/data: %.500r" % (data,)
    for kind, rows, decl in (("node", data["nodes"], nf), ("edge", data["edges"], ef)):
        for row in rows:
            undeclared = sorted(set(row) - set(decl))
            assert not undeclared, "GET /api/graph/data: %s %r has fields %s that /api/graph/fields does not declare" % (
                kind, row.get("id"), undeclared)
            for name, value in row.items():
                t = decl[name]["type"]
                ok = _is_number(value) if t == "number" else isinstance(value, str)
                assert ok, "GET /api/graph/data: %s %r field %s = %r but /api/graph/fields says %s" % (
                    kind, row.get("id"), name, value, t)
    assert sorted(n["id"] for n in data["nodes"]) == sorted(n["id"] for n in g["nodes"]), \
        "node ids: /api/graph/data %s, /api/service-graph %s" % (sorted(n["id"] for n in data["nodes"]),
                                                                 sorted(n["id"] for n in g["nodes"]))
    assert sorted(e["id"] for e in data["edges"]) == sorted(e["id"] for e in g["edges"]), \
        "edge ids: /api/graph/data %s, /api/service-graph %s" % (sorted(e["id"] for e in data["edges"]),
                                                                 sorted(e["id"] for e in g["edges"]))


# ---------------------------------------------------------------------------
# 7. A real Prometheus scraping /metrics; promtool
# ---------------------------------------------------------------------------

def by_client_server(result):
    """A Prometheus instant vector as {(client, server): value}."""
    return {(x["metric"].get("client"), x["metric"].get("server")): float(x["value"][1]) for x in result}


def test_prometheus_scrapes_the_service_graph_metrics(start_collector, prometheus_bin, promtool, tmp_path):
    col = start_sg(start_collector, "prom")
    spans = []
    for status in (None, STATUS_ERROR):
        t = Trace()
        c = t.span("prom-client", "GET /a", KIND_CLIENT, dur_s=0.05)
        t.span("prom-server", "GET /a", KIND_SERVER, parent=c, start_s=0.01, dur_s=0.03, status=status)
        spans += t.spans
    t = Trace()
    t.span("prom-client", "SELECT", KIND_CLIENT, dur_s=0.01, attrs={"db.system": "postgresql", "db.name": "promdb"})
    p = t.span("prom-client", "publish", KIND_PRODUCER, start_s=0.1, dur_s=0.01)
    t.span("prom-consumer", "process", KIND_CONSUMER, parent=p, start_s=0.2, dur_s=0.01)
    spans += t.spans
    post(col, spans)
    wait_edges(col, {edge_id("prom-client", "prom-server"): edge(2, 1),
                     edge_id("prom-client", "promdb", "database"): edge(1),
                     edge_id("prom-client", "prom-consumer", "messaging_system"): edge(1)})

    r = col.admin_get("/metrics")
    pc = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True, timeout=30)
    assert pc.returncode == 0, "promtool check metrics exit %d:\n%s%s" % (
        pc.returncode, pc.stdout.decode(errors="replace"), pc.stderr.decode(errors="replace"))

    prom = h.Prometheus(prometheus_bin, tmp_path / "prometheus", col.admin)
    try:
        prom.wait_ready()
        want_total = {("prom-client", "prom-server"): 2.0, ("prom-client", "promdb"): 1.0,
                      ("prom-client", "prom-consumer"): 1.0}
        want_failed = {("prom-client", "prom-server"): 1.0}
        q_total = "sum by (client, server) (traces_service_graph_request_total)"
        q_failed = "sum by (client, server) (traces_service_graph_request_failed_total) > 0"
        deadline = time.monotonic() + 40
        while True:
            got_total, got_failed = by_client_server(prom.query(q_total)), by_client_server(prom.query(q_failed))
            if (got_total, got_failed) == (want_total, want_failed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got_total == want_total, "Prometheus %s: %s, want %s\ntargets: %s" % (q_total, got_total, want_total,
                                                                                 prom.targets())
        assert got_failed == want_failed, "Prometheus %s: %s, want %s" % (q_failed, got_failed, want_failed)
        q_hist = "sum by (client, server) (traces_service_graph_request_client_seconds_count)"
        got_hist = by_client_server(prom.query(q_hist))
        assert got_hist == want_total, "Prometheus %s: %s, want %s" % (q_hist, got_hist, want_total)
    finally:
        prom.stop()


# ---------------------------------------------------------------------------
# 8. Replay of testdata: --graph-out
# ---------------------------------------------------------------------------

def expected_from_spans(spans):
    """Edges (source, target, connection_type) -> [requests, failed] and per-service token sums,
    derived from the spans by the contract's rules (everything except expiry-made edges)."""
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    svc = lambda s: s.resource.get("service.name")
    edges = collections.defaultdict(lambda: [0, 0])
    tokens = collections.defaultdict(lambda: [0, 0])
    all_tokens = collections.defaultdict(lambda: [0, 0])
    for s in spans:
        a = s.attributes
        err = s.status_code == STATUS_ERROR
        if s.kind in (KIND_SERVER, KIND_CONSUMER) and s.parent_span_id:
            p = by_id.get((s.trace_id, s.parent_span_id))
            want_kind = KIND_CLIENT if s.kind == KIND_SERVER else KIND_PRODUCER
            if p is not None and p.kind == want_kind:
                e = edges[(svc(p), svc(s), "" if s.kind == KIND_SERVER else "messaging_system")]
                e[0] += 1
                e[1] += int(err or p.status_code == STATUS_ERROR)
        if s.kind == KIND_CLIENT and ("db.system" in a or "db.name" in a):
            target = next(a[k] for k in ("peer.service", "server.address", "db.name", "db.system") if k in a)
            e = edges[(svc(s), target, "database")]
            e[0] += 1
            e[1] += int(err)
        op = a.get("gen_ai.operation.name")
        if op == "chat" and "gen_ai.request.model" in a:
            edges[(svc(s), a["gen_ai.request.model"], "model")][0] += 1
            tokens[svc(s)][0] += a.get("gen_ai.usage.input_tokens", 0)
            tokens[svc(s)][1] += a.get("gen_ai.usage.output_tokens", 0)
        if "gen_ai.usage.input_tokens" in a or "gen_ai.usage.output_tokens" in a:
            all_tokens[svc(s)][0] += a.get("gen_ai.usage.input_tokens", 0)
            all_tokens[svc(s)][1] += a.get("gen_ai.usage.output_tokens", 0)
        if op == "execute_tool" and "gen_ai.tool.name" in a:
            edges[(svc(s), a["gen_ai.tool.name"], "tool")][0] += 1
        if s.kind == KIND_INTERNAL and s.parent_span_id:
            p = by_id.get((s.trace_id, s.parent_span_id))
            if p is not None and svc(p) != svc(s):
                edges[(svc(p), svc(s), "agent")][0] += 1
        if "agent.source" in a and "agent.target" in a:
            edges[(a["agent.source"], a["agent.target"], "agent")][0] += 1
    # other gen_ai operations naming a model (embeddings) may or may not make a model edge
    optional = {(svc(s), s.attributes["gen_ai.request.model"], "model") for s in spans
                if s.attributes.get("gen_ai.operation.name") not in (None, "chat") and "gen_ai.request.model" in s.attributes}
    return dict(edges), dict(tokens), dict(all_tokens), optional - set(edges)


def test_replay_graph_out_matches_the_testdata(agenttrace_bin, tmp_path, testdata):
    src = testdata("multi-agent.jsonl")
    spans = h.load_spans(src)
    cfg = h.write_config(str(tmp_path / "replay.yaml"),
                         h.build_config(str(tmp_path / "unused.jsonl"), exporter="nop", service_graph=sg_settings()))
    outs = []
    for i in (1, 2):
        out = str(tmp_path / ("graph-%d.json" % i))
        r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, "--graph-out", out, src], timeout=120)
        assert r.returncode == 0, "agenttrace replay --config %s --graph-out %s %s exited %d\nstdout:\n%s\nstderr:\n%s" % (
            cfg, out, src, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        s = h.parse_replay_output(r.stdout)
        assert (s.spans_read, s.accepted, s.rejected) == (len(spans), len(spans), 0), s
        assert os.path.exists(out), "replay --graph-out did not write %s" % out
        outs.append(open(out, "rb").read())
    assert outs[0] == outs[1], "two replays wrote different graphs (%d vs %d bytes)" % (len(outs[0]), len(outs[1]))
    g = json.loads(outs[0])
    problems = graph_problems(g, "replay --graph-out")
    assert not problems, "\n".join(problems) + "\n" + show(g)

    want, tokens, all_tokens, optional = expected_from_spans(spans)
    # the scenarios of scripts/generate-testdata, as the spans say
    for callee in ("planner-agent", "research-agent", "coder-agent"):
        assert ("coordinator-main", callee, "") in want, "testdata has no coordinator-main -> %s request" % callee
    assert want[("coordinator-main", "coder-agent", "")][1] >= 1, "testdata's coder error is not a failed request"
    assert any(ct == "database" for _, _, ct in want) and any(ct == "model" for _, _, ct in want)

    got = {(e["source"], e["target"], e["detail__connection_type"]): e for e in g["edges"]}
    problems = []
    for key, (requests, failed) in sorted(want.items()):
        e = got.get(key)
        if e is None:
            problems.append("edge %s missing (want requests %d)" % (edge_id(*key), requests))
            continue
        if e["detail__requests"] != requests:
            problems.append("edge %s: detail__requests %r, want %d" % (edge_id(*key), e["detail__requests"], requests))
        if key[2] in ("", "messaging_system", "database") and e["detail__failed"] != failed:
            problems.append("edge %s: detail__failed %r, want %d" % (edge_id(*key), e["detail__failed"], failed))
    exact_types = {"", "messaging_system", "database", "model", "tool", "agent"}
    for key in sorted(got):
        if key[0] == "user" and key[2] != "virtual_node":
            problems.append("edge %s: a user edge (root span without client) has connection_type %r, want "
                            "'virtual_node' as Tempo and the servicegraph connector set at expiry" % (edge_id(*key), key[2]))
        elif key[2] in exact_types and key not in want and key not in optional:
            problems.append("edge %s not expected from the spans: %s" % (edge_id(*key), got[key]))
    nodes = nodes_of(g)
    for service, (tin, tout) in sorted(tokens.items()):
        n = nodes.get(service)
        if n is None:
            problems.append("node %s missing" % service)
            continue
        got_tokens = (n["detail__input_tokens"], n["detail__output_tokens"])
        allowed = {(tin, tout), tuple(all_tokens.get(service, (tin, tout)))}
        if got_tokens not in allowed:
            problems.append("node %s: detail__input_tokens/detail__output_tokens %s, want %s (chat spans%s)" % (
                service, got_tokens, (tin, tout),
                "" if len(allowed) == 1 else "; or %s counting every gen_ai span" % (tuple(all_tokens[service]),)))
    assert not problems, "replay --graph-out %s:\n  %s\ngraph:\n%s" % (src, "\n  ".join(problems), show(g))


# ---------------------------------------------------------------------------
# 9. The servicegraph connector's behaviour (contrib connector/servicegraphconnector)
# ---------------------------------------------------------------------------

def test_a_pasted_connector_block_validates(agenttrace_bin, tmp_path):
    """The README's example block of the connector, plus its other documented keys, loads as
    `processors: service_graph:`; keys with no meaning here fail naming the key."""
    block = {
        "latency_histogram_buckets": ["100ms", "250ms", "1s", "5s", "10s"],
        "dimensions": ["dimension-1", "dimension-2"],
        "store": {"ttl": "1s", "max_items": 10},
        "virtual_node_peer_attributes": ["db.name", "rpc.service"],
        "virtual_node_extra_label": True,
        "metrics_flush_interval": "60s",
        "store_expiration_loop": "2s",
        "database_name_attributes": ["db.name"],
    }
    cfg = h.build_config(str(tmp_path / "out.jsonl"), exporter="nop", service_graph=block)
    path = h.write_config(str(tmp_path / "connector.yaml"), cfg)
    r = h.run_cli(agenttrace_bin, ["validate", "--config", path])
    assert r.returncode == 0, "validate of a connector block exited %d\n%s\n%s%s" % (
        r.returncode, open(path).read(), r.stdout, r.stderr)
    for key, value in (("exponential_histogram_max_size", 160), ("cache_loop", "2m")):
        cfg = h.build_config(str(tmp_path / "out.jsonl"), exporter="nop", service_graph=dict(block, **{key: value}))
        path = h.write_config(str(tmp_path / ("bad-%s.yaml" % key)), cfg)
        r = h.run_cli(agenttrace_bin, ["validate", "--config", path])
        assert r.returncode != 0 and "processors.service_graph." + key in r.stdout + r.stderr, \
            "validate with %s: exit %d\n%s%s" % (key, r.returncode, r.stdout, r.stderr)


def test_dimension_named_server_keeps_metrics_valid_and_failed_is_a_label(start_collector, promtool):
    """dimensions: [server] gives `client_server`/`server_server` (connector: kind+"_"+dim), never a second
    `server` label; every series carries `failed` (connector: dims.PutBool("failed", e.Failed))."""
    col = start_sg(start_collector, "dim-server", dimensions=["server", "tenant"])
    spans = []
    for status in (None, STATUS_ERROR):
        t = Trace()
        c = t.span("ds-client", "GET /", KIND_CLIENT, dur_s=0.02, attrs={"server": "s-1", "tenant": "acme"})
        t.span("ds-server", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01, status=status,
               attrs={"tenant": "globex"})
        spans += t.spans
    post(col, spans)
    wait_edges(col, {edge_id("ds-client", "ds-server"): edge(2, 1, "")})
    r = col.admin_get("/metrics")
    pc = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True, timeout=30)
    assert pc.returncode == 0, "promtool check metrics with dimensions [server] exit %d:\n%s%s" % (
        pc.returncode, pc.stdout.decode(errors="replace"), pc.stderr.decode(errors="replace"))
    ms = col.scrape()
    want = dict(lab("ds-client", "ds-server"), client_server="s-1", client_tenant="acme", server_tenant="globex")
    for failed, n in (("false", 1), ("true", 1)):
        L = dict(want, failed=failed)
        for name in (M_TOTAL, M_SERVER + "_count", M_CLIENT + "_count"):
            assert mval(ms, name, L, default=None) == n, "%s%s = %r, want %d\n%s" % (
                name, L, mval(ms, name, L, default=None), n, ms.series(name))
    assert mval(ms, M_FAILED, dict(want, failed="true"), default=None) == 1
    assert mval(ms, M_FAILED, dict(want, failed="false"), default=None) is None, \
        "request_failed_total has a failed=false series (the connector counts only failed calls)"


def test_unpaired_producer_with_peer_becomes_a_virtual_node(start_collector):
    """connector.go: PRODUCER falls through to the CLIENT case (peer attributes recorded); onExpire names
    the missing server from them: a queue with an uninstrumented consumer stays in the graph."""
    col = start_sg(start_collector, "producer-virtual")
    t = Trace()
    t.span("publisher", "publish", KIND_PRODUCER, dur_s=0.01, attrs={"peer.service": "orders-queue"})
    post(col, t.spans)
    eid = edge_id("publisher", "orders-queue", "virtual_node")
    wait_edges(col, {eid: edge(1, 0, "virtual_node")}, timeout=TTL_S + 10.0, what="ttl after an unpaired PRODUCER")


def test_root_server_keeps_its_user_edge_with_a_child_server(start_collector):
    """A root SERVER and a SERVER child of it (its client span missing): the root still gives user -> it."""
    col = start_sg(start_collector, "root-child")
    t = Trace()
    root = t.span("gateway", "GET /", KIND_SERVER, dur_s=0.5)
    t.span("backend", "GET /inner", KIND_SERVER, parent=root, start_s=0.1, dur_s=0.1)
    post(col, t.spans)
    eid = edge_id("user", "gateway", "virtual_node")
    wait_edges(col, {eid: edge(1, 0, "virtual_node")}, timeout=TTL_S + 10.0, what="ttl after a root SERVER")


def _unnamed_request(tagged):
    """An OTLP request whose resource for service "-" has no service.name."""
    req = otlp_request(tagged)
    for rs in req["resourceSpans"]:
        if rs["resource"]["attributes"][0]["value"]["stringValue"] == "-":
            rs["resource"]["attributes"] = [{"key": "host.name", "value": {"stringValue": "box"}}]
    return req


@pytest.mark.parametrize("include", [False, True])
def test_resources_without_service_name(start_collector, include):
    """connector.go: "If service.name doesn't exist, skip processing this trace"; counted here, and
    `include_unnamed_services: true` names them unknown_service instead."""
    extra = {"include_unnamed_services": True} if include else {}
    col = start_sg(start_collector, "unnamed-%s" % include, **extra)
    t = Trace()
    c = t.span("named-client", "GET /", KIND_CLIENT, dur_s=0.02)
    t.span("-", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
    r = col.post_traces(json.dumps(_unnamed_request(t.spans)).encode(), "application/json")
    assert r.status == 200
    if include:
        wait_edges(col, {edge_id("named-client", "unknown_service"): edge(1, 0, "")})
    else:
        wait_metric(col, "traces_service_graph_skipped_spans_total", {}, 1)
        g = fetch_graph(col)
        assert "unknown_service" not in nodes_of(g), "an unnamed resource became a node: %s" % show(g)


def test_service_filter_window_and_max_edges(start_collector):
    """`?service=` keeps the edges touching that node; `?window=` only edges with calls in it (by span end
    time); `max_edges` bounds the graph, the rest counted as dropped."""
    col = start_sg(start_collector, "filters", max_edges=3)
    spans = []
    old = Trace(base_ns=time.time_ns() - 30 * 60 * 1_000_000_000)      # ended 30 minutes ago
    c = old.span("f-old", "GET /", KIND_CLIENT, dur_s=0.02)
    old.span("f-hub", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
    spans += old.spans
    for client in ("f-new", "f-other"):
        t = Trace()
        c = t.span(client, "GET /", KIND_CLIENT, dur_s=0.02)
        t.span("f-hub" if client == "f-new" else "f-elsewhere", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
        spans += t.spans
    post(col, spans)
    all3 = {edge_id("f-old", "f-hub"): edge(1), edge_id("f-new", "f-hub"): edge(1), edge_id("f-other", "f-elsewhere"): edge(1)}
    wait_edges(col, all3)
    # A fourth edge passes max_edges (3): dropped and counted.
    t = Trace()
    c = t.span("f-fourth", "GET /", KIND_CLIENT, dur_s=0.02)
    t.span("f-hub", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
    post(col, t.spans)
    wait_metric(col, M_DROPPED, {}, 1)
    assert set(edges_of(fetch_graph(col))) == set(all3), "max_edges 3: %s" % sorted(edges_of(fetch_graph(col)))

    g = fetch_graph(col, "/api/service-graph?service=f-hub")
    assert set(edges_of(g)) == {edge_id("f-old", "f-hub"), edge_id("f-new", "f-hub")}, show(g)
    assert set(nodes_of(g)) == {"f-old", "f-new", "f-hub"}, show(g)
    g = fetch_graph(col, "/api/service-graph?window=5m")
    assert set(edges_of(g)) == {edge_id("f-new", "f-hub"), edge_id("f-other", "f-elsewhere")}, show(g)
    g = fetch_graph(col, "/api/service-graph?window=1h")
    assert set(edges_of(g)) == set(all3), show(g)
    g = fetch_graph(col, "/api/graph/data?service=f-other&window=5m")
    assert set(edges_of(g)) == {edge_id("f-other", "f-elsewhere")}, show(g)


# ---------------------------------------------------------------------------
# 10. Every golden graph against an independent oracle built from the spans (graph_oracle.py)
# ---------------------------------------------------------------------------

GOLDEN_SCENARIOS = [
    ("multi-agent.jsonl", "multi-agent.graph.json"),
    ("multi-agent.jsonl.gz", "multi-agent.graph.json"),
    ("multi-agent.json", "multi-agent-single-request.graph.json"),
    ("multi-agent.pb", "multi-agent-single-request.graph.json"),
    ("invalid-ids.json", "invalid-ids.graph.json"),
    ("connector-cases.jsonl", "connector-cases.graph.json"),
]


@pytest.mark.parametrize("source,expected", GOLDEN_SCENARIOS)
def test_golden_graph_matches_the_oracle(testdata, source, expected):
    """Node and edge sets, request and failed counts, virtual nodes and p50/p95/p99 of each golden file,
    against graph_oracle computed from the input spans (not from our output)."""
    import graph_oracle
    requests = [h.spans_of(r) for r in h.load_requests(testdata(source))]
    with open(testdata("expected/" + expected)) as f:
        golden = json.load(f)
    problems = graph_oracle.problems(golden, requests)
    assert not problems, "testdata/expected/%s vs the oracle from %s:\n  %s" % (expected, source, "\n  ".join(problems))


def test_connector_cases_replay_matches_the_oracle(agenttrace_bin, tmp_path, testdata):
    """replay --graph-out of testdata/connector-cases.jsonl: the producer's queue, the late-paired LLM call,
    the root's user edge, no unnamed node, and percentiles from the durations."""
    import graph_oracle
    src = testdata("connector-cases.jsonl")
    cfg = h.write_config(str(tmp_path / "replay.yaml"), h.build_config(str(tmp_path / "unused.jsonl"), exporter="nop",
                                                                       service_graph={}))
    out = str(tmp_path / "graph.json")
    r = h.run_cli(agenttrace_bin, ["replay", "--config", cfg, "--graph-out", out, src], timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    g = json.load(open(out))
    problems = graph_oracle.problems(g, [h.spans_of(x) for x in h.load_requests(src)])
    assert not problems, "replay --graph-out %s:\n  %s\n%s" % (src, "\n  ".join(problems), show(g))
    ids = set(edges_of(g))
    for eid in (edge_id("publisher", "orders-queue", "virtual_node"), edge_id("research-agent", "llm-gateway"),
                edge_id("user", "edge-gateway", "virtual_node")):
        assert eid in ids, "%s missing from %s" % (eid, sorted(ids))
    slow = nodes_of(g)["slow-api"]
    assert slow["detail__p95_ms"] < 12800 * 0.9, "p95 %r of slow-api is a bucket bound" % slow["detail__p95_ms"]


# ---------------------------------------------------------------------------
# 11. Components own their admin routes: two service_graph instances are both served
# ---------------------------------------------------------------------------

def test_two_service_graph_instances_are_both_served(start_collector):
    """`service_graph/a` and `service_graph/b` in two pipelines fed by one receiver: each keeps its own
    graph, `?processor=service_graph/b` answers from b, no parameter from the first (a), an unknown
    processor is a 404 naming the ones that serve the path."""
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"service_graph/a": {"store": {"ttl": "1s"}},
                       "service_graph/b": {"store": {"ttl": "1s"}, "max_edges": 1}},
        "exporters": {"nop": {}},
        "service": {
            "admin": {"endpoint": "127.0.0.1:0"},
            "pipelines": {"traces/a": {"receivers": ["otlp"], "processors": ["service_graph/a"], "exporters": ["nop"]},
                          "traces/b": {"receivers": ["otlp"], "processors": ["service_graph/b"], "exporters": ["nop"]}},
        },
    }
    col = start_collector.launch("two-graphs", config)
    spans = []
    for client in ("two-x", "two-y"):
        t = Trace()
        c = t.span(client, "GET /", KIND_CLIENT, dur_s=0.02)
        t.span("two-hub", "GET /", KIND_SERVER, parent=c, start_s=0.001, dur_s=0.01)
        spans += t.spans
    post(col, spans)
    both = {edge_id("two-x", "two-hub"): edge(1), edge_id("two-y", "two-hub"): edge(1)}
    wait_edges(col, both, what="service_graph/a, the first, without ?processor=")
    g = fetch_graph(col, "/api/service-graph?processor=service_graph/a")
    assert set(edges_of(g)) == set(both), show(g)
    # b keeps one edge (max_edges: 1): the other is dropped there, not in a.
    g = fetch_graph(col, "/api/service-graph?processor=service_graph/b")
    assert len(edges_of(g)) == 1 and set(edges_of(g)) < set(both), show(g)
    r = col.admin_get("/api/dependencies?processor=service_graph/b")
    assert r.status == 200 and len(r.json()["data"]) == 1, (r.status, r.body[:300])
    r = col.admin_get("/api/dependencies")
    assert r.status == 200 and len(r.json()["data"]) == 2, (r.status, r.body[:300])
    r = col.admin_get("/api/service-graph?processor=service_graph/c")
    assert r.status == 404, r.status
    text = r.body.decode()
    assert "service_graph/a" in text and "service_graph/b" in text, text
