"""An independent model of the service graph, computed from the spans of a trace file alone.

It follows the rules as Tempo's service graphs and the Collector's servicegraph connector state them
(docs/service-graph.md) plus AgentTrace's agent edges (README), with the default `service_graph`
configuration (store.ttl 10s, virtual_node_peer_attributes [peer.service, db.name, db.system]):

- spans of a resource without service.name are skipped (connector: "If service.name doesn't exist,
  skip processing this trace");
- CLIENT/PRODUCER pairs with the SERVER/CONSUMER whose parent it is when the two arrive within the ttl
  of each other (store.go: an edge is deleted "after ttl time" without its pair); either kind of the
  messaging pair makes `messaging_system`; failed when either side has status ERROR;
- a CLIENT with a db.* name/system attribute is a database edge at once, named by peer.service,
  server.address, network.peer.address[:port], then the database name (Tempo);
- an unpaired CLIENT or PRODUCER with a peer attribute becomes `client -> peer` (virtual_node); an
  unpaired root SERVER/CONSUMER becomes `user -> service` (virtual_node);
- agent edges: a parent -> child change of service that is not a request pair; agent.source/target;
  GenAI model calls (chat, text_completion, completion, generate_content, embeddings) and tool calls.

Each call contributes one duration: the server side's span where there is one, else the client's. The
percentiles are nearest-rank (the value of rank ceil(q*n)), exact; the collector's sketch must be within
its documented 1%.
"""

import math

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = 1, 2, 3, 4, 5
STATUS_ERROR = 2
TTL_NS = 10 * 1_000_000_000
PEER_ATTRIBUTES = ("peer.service", "db.name", "db.system")
MODEL_OPERATIONS = {"chat", "text_completion", "completion", "generate_content", "embeddings"}


def valid(span):
    return (len(span.trace_id) == 32 and span.trace_id != "0" * 32 and len(span.span_id) == 16
            and span.span_id != "0" * 16 and len(span.parent_span_id) in (0, 16))


def text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return ""


def database_node(a):
    if not any(k in a for k in ("db.namespace", "db.name", "db.system", "db.system.name")):
        return None
    for key in ("peer.service", "server.address"):
        if isinstance(a.get(key), str):
            return a[key]
    if "network.peer.address" in a:
        address = text(a["network.peer.address"])
        return "%s:%s" % (address, text(a["network.peer.port"])) if "network.peer.port" in a else address
    for key in ("db.namespace", "db.name", "db.system", "db.system.name"):
        if isinstance(a.get(key), str):
            return a[key]
    return None


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q)) - 1]


def graph(requests):
    """requests: a list of lists of FlatSpans, in arrival order. Returns (edges, nodes):
    edges {(source, target, connection_type): {"requests", "failed", "ms": [durations]}},
    nodes {name: {"requests", "failed", "ms": [...]}} (every edge end is a node)."""
    clock = 0
    arrivals = []
    for spans in requests:
        spans = [s for s in spans if valid(s)]
        if not spans:
            continue
        clock = max(clock, max(s.end for s in spans))
        arrivals += [(s, clock) for s in spans if "service.name" in s.resource]
    by_id = {(s.trace_id, s.span_id): (s, at) for s, at in arrivals}
    svc = lambda s: s.resource["service.name"]
    calls = []   # (source, target, connection_type, failed, seconds)

    def duration(s):
        return (s.end - s.start) / 1e9

    clients = {}
    for s, at in arrivals:
        a = s.attributes
        err = s.status_code == STATUS_ERROR
        if s.kind in (KIND_CLIENT, KIND_PRODUCER):
            db = database_node(a) if s.kind == KIND_CLIENT else None
            if db is not None:
                calls.append((svc(s), db, "database", err, duration(s)))
            else:
                clients[(s.trace_id, s.span_id)] = (s, at)
        op = a.get("gen_ai.operation.name")
        if "agent.source" in a and "agent.target" in a and text(a["agent.source"]) and text(a["agent.target"]):
            calls.append((text(a["agent.source"]), text(a["agent.target"]), "agent", err, duration(s)))
        if op in MODEL_OPERATIONS:
            model = next((a[k] for k in ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.system")
                          if isinstance(a.get(k), str)), None)
            if model is not None:
                calls.append((svc(s), model, "model", err, duration(s)))
        elif op == "execute_tool" and isinstance(a.get("gen_ai.tool.name"), str):
            calls.append((svc(s), a["gen_ai.tool.name"], "tool", err, duration(s)))
        if s.parent_span_id and (s.trace_id, s.parent_span_id) in by_id:
            p, _ = by_id[(s.trace_id, s.parent_span_id)]
            request_pair = (p.kind, s.kind) in ((KIND_CLIENT, KIND_SERVER), (KIND_PRODUCER, KIND_CONSUMER))
            if svc(p) != svc(s) and not request_pair:
                calls.append((svc(p), svc(s), "agent", err, duration(s)))

    paired = set()
    for s, at in arrivals:
        if s.kind not in (KIND_SERVER, KIND_CONSUMER):
            continue
        if not s.parent_span_id:
            calls.append(("user", svc(s), "virtual_node", s.status_code == STATUS_ERROR, duration(s)))
            continue
        c = clients.get((s.trace_id, s.parent_span_id))
        if c is None or abs(c[1] - at) > TTL_NS or (s.trace_id, s.parent_span_id) in paired:
            continue
        client = c[0]
        paired.add((s.trace_id, s.parent_span_id))
        messaging = KIND_PRODUCER in (client.kind, s.kind) or KIND_CONSUMER in (client.kind, s.kind)
        calls.append((svc(client), svc(s), "messaging_system" if messaging else "",
                      STATUS_ERROR in (client.status_code, s.status_code), duration(s)))
    for key, (s, _) in clients.items():
        if key in paired:
            continue
        peer = next((text(s.attributes[k]) for k in PEER_ATTRIBUTES if text(s.attributes.get(k, ""))), None)
        if peer:
            calls.append((svc(s), peer, "virtual_node", s.status_code == STATUS_ERROR, duration(s)))

    edges, nodes = {}, {}
    for source, target, ct, failed, seconds in calls:
        e = edges.setdefault((source, target, ct), {"requests": 0, "failed": 0, "ms": []})
        e["requests"] += 1
        e["failed"] += int(failed)
        e["ms"].append(seconds * 1000)
        nodes.setdefault(source, {"requests": 0, "failed": 0, "ms": []})
        n = nodes.setdefault(target, {"requests": 0, "failed": 0, "ms": []})
        n["requests"] += 1
        n["failed"] += int(failed)
        n["ms"].append(seconds * 1000)
    return edges, nodes


def problems(document, requests, relative_error=0.01):
    """What differs between a graph document (/api/service-graph JSON) and the oracle, as sentences."""
    want_edges, want_nodes = graph(requests)
    out = []

    def edge_id(source, target, ct):
        return "%s->%s%s" % (source, target, ":" + ct if ct else "")

    got_edges = {(e["source"], e["target"], e["detail__connection_type"]): e for e in document["edges"]}
    got_nodes = {n["id"]: n for n in document["nodes"]}
    if set(got_edges) != set(want_edges):
        out.append("edges: extra %s, missing %s" % (sorted(edge_id(*k) for k in set(got_edges) - set(want_edges)),
                                                    sorted(edge_id(*k) for k in set(want_edges) - set(got_edges))))
    if set(got_nodes) != set(want_nodes):
        out.append("nodes: extra %s, missing %s" % (sorted(set(got_nodes) - set(want_nodes)),
                                                    sorted(set(want_nodes) - set(got_nodes))))

    def compare(what, got, want, requests_key, failed_key):
        if (got[requests_key], got[failed_key]) != (want["requests"], want["failed"]):
            out.append("%s: requests/failed %s, want %s" % (what, (got[requests_key], got[failed_key]),
                                                            (want["requests"], want["failed"])))
        if not want["ms"]:
            return
        for q, field in ((0.5, "detail__p50_ms"), (0.95, "detail__p95_ms"), (0.99, "detail__p99_ms")):
            exact = nearest_rank(want["ms"], q)
            value = got.get(field)
            if value is None or abs(value - exact) > exact * relative_error + 0.001:
                out.append("%s: %s %r, want %.3f (exact nearest-rank) within %g%%" % (
                    what, field, value, exact, relative_error * 100))

    for key in sorted(set(got_edges) & set(want_edges)):
        compare("edge " + edge_id(*key), got_edges[key], want_edges[key], "detail__requests", "detail__failed")
    for name in sorted(set(got_nodes) & set(want_nodes)):
        compare("node " + name, got_nodes[name], want_nodes[name], "detail__requests", "detail__errors")
    return out
