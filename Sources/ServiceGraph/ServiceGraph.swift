import Foundation
import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// The live graph: per edge and per node, counts in one-minute buckets for the last hour (so a
/// `window` can be asked for), all-time totals, and latency histograms; plus the Prometheus series
/// Tempo's service-graph view queries.
public final class ServiceGraph: Sendable {
    /// Minutes of history kept for windowed views.
    static let minutes = 60

    struct EdgeKey: Hashable, Sendable {
        var client: String
        var server: String
        var connectionType: String
        var dimensions: [String]
        var virtualNode: String
    }

    /// One set of Prometheus series: an edge and its `failed` value, as the connector keys them
    /// ("buildMetricKey(clientName, serverName, connectionType, failed, dimensions)").
    struct SeriesKey: Sendable {
        var edge: EdgeKey
        var failed: Bool
    }

    /// Requests and failures per minute for the last hour, one slot per minute of the hour.
    struct Buckets: Sendable {
        struct Slot: Sendable {
            var minute: Int64 = -1
            var requests = 0
            var failed = 0
        }

        var slots = [Slot](repeating: Slot(), count: ServiceGraph.minutes)

        mutating func add(minute: Int64, requests count: Int, failed failedCount: Int) {
            let index = Int(minute % Int64(ServiceGraph.minutes))
            if slots[index].minute != minute {
                // An older minute than the one in the slot is outside the hour kept: only totals count it.
                guard slots[index].minute < minute else { return }
                slots[index] = Slot(minute: minute)
            }
            slots[index].requests += count
            slots[index].failed += failedCount
        }

        /// Requests and failures in the minutes from `since` to `until` (Unix nanoseconds); open ends when nil.
        func sum(since: UInt64?, until: UInt64? = nil) -> (requests: Int, failed: Int) {
            let first = since.map { Int64($0 / 60_000_000_000) } ?? 0
            let last = until.map { Int64($0 / 60_000_000_000) } ?? Int64.max
            var result = (0, 0)
            for slot in slots where slot.minute >= first && slot.minute <= last {
                result.0 += slot.requests
                result.1 += slot.failed
            }
            return result
        }
    }

    struct EdgeStats: Sendable {
        /// The edge's id in the graph APIs (edges that differ only in dimensions share it).
        let id: String
        /// Positions of the client and server nodes.
        let client: Int
        let server: Int
        var requests = 0
        var failed = 0
        var buckets = Buckets()
        var serverNanosSum: UInt64 = 0
        var serverCount = 0
        /// The calls' durations (server side, else client side), for p50/p95/p99.
        var latency = LatencySketch()
        /// `latency`'s p50/p95/p99 in ms as the last snapshot made them, when `latency` held
        /// `percentilesTotal` values: made when asked for, not per batch, and kept while no call comes.
        var percentiles: [Double] = []
        var percentilesTotal: UInt64 = 0

        /// Adds one call: its outcome, its minute, its time for the sketch (the server side's, else the
        /// client's) and the server side's time, when it had one.
        mutating func record(failed isFailure: Bool, minute: Int64, seconds: Double?, serverSeconds: Double?) {
            requests += 1
            if isFailure { failed += 1 }
            buckets.add(minute: minute, requests: 1, failed: isFailure ? 1 : 0)
            if let serverSeconds {
                serverNanosSum &+= UInt64((serverSeconds * 1e9).rounded())
                serverCount += 1
            }
            if let seconds { latency.add(seconds) }
        }
    }

    /// The four series of one `SeriesKey`; `failed` only for failed calls, as the connector counts them.
    final class EdgeMetrics: Sendable {
        init(total: Counter, failed: Counter?, server: ValueHistogram, client: ValueHistogram) {
            self.total = total
            self.failed = failed
            self.server = server
            self.client = client
        }

        let total: Counter
        let failed: Counter?
        let server: ValueHistogram
        let client: ValueHistogram
    }

    /// An edge's series for calls that succeeded and for calls that failed, each once the first such call came.
    struct EdgeSeries: Sendable {
        var ok: EdgeMetrics?
        var failed: EdgeMetrics?
    }

    struct NodeStats: Sendable {
        var requests = 0
        var failed = 0
        var buckets = Buckets()
        /// Durations of the calls into this node (server side, else client side), for p50/p95/p99.
        var latency = LatencySketch()
        /// `latency`'s p50/p95/p99 in ms as the last snapshot made them (as `EdgeStats`).
        var percentiles: [Double] = []
        var percentilesTotal: UInt64 = 0
        var inputTokens: Int64 = 0
        var outputTokens: Int64 = 0

        /// Adds one call into this node: its outcome, its minute and its time for the sketch.
        mutating func record(failed isFailure: Bool, minute: Int64, seconds: Double?) {
            requests += 1
            if isFailure { failed += 1 }
            buckets.add(minute: minute, requests: 1, failed: isFailure ? 1 : 0)
            if let seconds { latency.add(seconds) }
        }
    }

    /// Edges and nodes live in arrays, found by key through an index map: a snapshot copies the arrays
    /// (copy-on-write) and reads them in place, without a hash lookup or a copy per edge.
    private struct State: Sendable {
        var edgeIndex: [EdgeKey: Int] = [:]
        var edgeKeys: [EdgeKey] = []
        var edgeStats: [EdgeStats] = []
        var nodeIndex: [String: Int] = [:]
        var nodeNames: [String] = []
        var nodeStats: [NodeStats] = []
        /// Edge positions by id and node positions by name: appended as they come, sorted by the next
        /// snapshot (edges and nodes are only ever added, so once the graph settles no snapshot sorts).
        var edgeOrder: [Int] = []
        var nodeOrder: [Int] = []
        var sorted = true
        /// The `agent.*` resource attributes last seen per node name, at most `max_nodes` names.
        var details: [String: [Attribute]] = [:]
        /// Each node's details as Node Graph fields (`GraphJSON.detailFields`), by node position: made when
        /// they change, so an answer only copies them.
        var nodeDetails: [(attributes: [Attribute], fields: [(field: String, text: String)])] = []
        /// The Node Graph JSON last written for each edge (by the position of its first dimension variant)
        /// and each node, with what it was written from: an answer writes again only what changed since.
        var edgeJSON: [(edge: GraphSnapshot.Edge, json: [UInt8])?] = []
        var nodeJSON: [(node: GraphSnapshot.Node, json: [UInt8])?] = []

        mutating func node(_ name: String) -> Int {
            if let index = nodeIndex[name] { return index }
            let index = nodeStats.count
            nodeIndex[name] = index
            nodeNames.append(name)
            nodeStats.append(NodeStats())
            let attributes = details[name] ?? []
            nodeDetails.append((attributes, attributes.isEmpty ? [] : GraphJSON.detailFields(attributes)))
            nodeJSON.append(nil)
            nodeOrder.append(index)
            sorted = false
            return index
        }

        mutating func addEdge(_ key: EdgeKey, _ stats: EdgeStats) -> Int {
            let index = edgeStats.count
            edgeIndex[key] = index
            edgeKeys.append(key)
            edgeStats.append(stats)
            edgeOrder.append(index)
            edgeJSON.append(nil)
            sorted = false
            return index
        }
    }

    let configuration: ServiceGraphConfiguration
    private let metrics: SelfMetrics
    private let state = Mutex(State())
    private let droppedSpans: Counter
    private let unpairedSpans: Counter
    private let skippedSpans: Counter
    /// Prometheus series by the edge's position in the graph and `failed`, at most two per edge (so bounded
    /// by `max_edges`).
    private let seriesByEdge = Mutex<[EdgeSeries]>([])
    /// Per node, its token counters (`traces_service_graph_node_{input,output}_tokens_total`), bounded
    /// by `max_nodes` as the nodes are: what lives only in memory, exported so a cluster graph has it too.
    private let tokenSeries = Mutex<[String: (input: Counter, output: Counter)]>([:])

    /// The series names of what a node holds besides its edges, for the cluster graph's queries: AgentTrace's
    /// additions to the `traces_service_graph_*` family (Tempo has no such series), kept beside the graph's
    /// other per-edge series rather than among the `agenttrace_*` ones, which stay small however large the
    /// graph grows.
    enum NodeSeries {
        static let inputTokens = "traces_service_graph_node_input_tokens_total"
        static let outputTokens = "traces_service_graph_node_output_tokens_total"
        /// 1 for each `agent.*` detail a node has now (`node`, `key`, `value`), 0 once it changed.
        static let detail = "traces_service_graph_node_detail"
    }

    public init(configuration: ServiceGraphConfiguration, metrics: SelfMetrics) {
        self.configuration = configuration
        self.metrics = metrics
        droppedSpans = metrics.counter("traces_service_graph_dropped_spans_total",
                                       help: "Spans the service graph could not hold (store or edge limit).")
        unpairedSpans = metrics.counter("traces_service_graph_unpaired_spans_total",
                                        help: "Client or server spans that expired without their other half.")
        skippedSpans = metrics.counter("traces_service_graph_skipped_spans_total",
                                       help: "Spans skipped because their resource has no service.name.")
    }

    /// Counts spans dropped, unpaired and skipped by the pairing store since the last call.
    func countStore(dropped: Int, unpaired: Int, skipped: Int = 0) {
        if dropped > 0 { droppedSpans.increment(by: Int64(dropped)) }
        if unpaired > 0 { unpairedSpans.increment(by: Int64(unpaired)) }
        if skipped > 0 { skippedSpans.increment(by: Int64(skipped)) }
    }

    /// Adds observed calls: finds each one's edge first, then takes the lock once and adds the calls one
    /// by one where they lie (no per-edge summary with arrays of its own to build and free).
    func record(_ observations: [EdgeObservation]) {
        guard !observations.isEmpty else { return }
        // In order of first appearance, so limits cut the same edges on every run.
        var keys: [EdgeKey] = []
        // Each observation's position in `keys`.
        var keyOf = [Int](repeating: 0, count: observations.count)
        // Calls and failed calls per key.
        var calls: [Int] = []
        var failedCalls: [Int] = []
        var indexOf: [EdgeKey: Int] = [:]
        var tokens: [(agent: String, input: Int64, output: Int64)] = []
        // Observations are read where they lie (one taken out of the array is a copy of its strings), and the
        // few edges of a batch are compared with (their strings mostly shared, so by reference) before any key
        // is built and hashed.
        for position in observations.indices {
            var index = -1
            for candidate in keys.indices.suffix(8).reversed()
            where keys[candidate].client == observations[position].client && keys[candidate].server == observations[position].server
                && keys[candidate].connectionType == observations[position].connectionType
                && keys[candidate].virtualNode == observations[position].virtualNode
                && keys[candidate].dimensions == observations[position].dimensions {
                index = candidate
                break
            }
            if index < 0 {
                let key = EdgeKey(client: observations[position].client, server: observations[position].server,
                                  connectionType: observations[position].connectionType, dimensions: observations[position].dimensions,
                                  virtualNode: observations[position].virtualNode)
                if let known = indexOf[key] {
                    index = known
                } else {
                    index = keys.count
                    indexOf[key] = index
                    keys.append(key)
                    calls.append(0)
                    failedCalls.append(0)
                }
            }
            keyOf[position] = index
            calls[index] += 1
            if observations[position].failed { failedCalls[index] += 1 }
            if let usage = observations[position].tokens {
                // Summed per agent (the agent of the previous call, mostly): one node lookup per agent, not per call.
                if let last = tokens.indices.last, tokens[last].agent == usage.agent {
                    tokens[last].input += usage.input
                    tokens[last].output += usage.output
                } else {
                    tokens.append((usage.agent, usage.input, usage.output))
                }
            }
        }
        var dropped = 0
        // Each key's edge position in the graph, -1 where the limits dropped it.
        var edgeOf = [Int](repeating: -1, count: keys.count)
        state.withLock { state in
            for (position, key) in keys.enumerated() {
                if let index = state.edgeIndex[key] {
                    edgeOf[position] = index
                    continue
                }
                let newNodes = (state.nodeIndex[key.client] == nil ? 1 : 0) + (state.nodeIndex[key.server] == nil ? 1 : 0)
                guard state.edgeStats.count < configuration.maxEdges, state.nodeStats.count + newNodes <= configuration.maxNodes else {
                    dropped += calls[position]
                    continue
                }
                let id = GraphSnapshot.Edge.id(source: key.client, target: key.server, connectionType: key.connectionType)
                let client = state.node(key.client)
                let server = state.node(key.server)
                edgeOf[position] = state.addEdge(key, EdgeStats(id: id, client: client, server: server))
            }
            for position in observations.indices {
                let edge = edgeOf[keyOf[position]]
                guard edge >= 0 else { continue }
                let failed = observations[position].failed
                let minute = Int64(observations[position].time / 60_000_000_000)
                let server = observations[position].serverSeconds
                // The server side's time, else the client's, for the edge's and the node's sketches.
                let seconds = server ?? observations[position].clientSeconds
                state.edgeStats[edge].record(failed: failed, minute: minute, seconds: seconds, serverSeconds: server)
                state.nodeStats[state.edgeStats[edge].server].record(failed: failed, minute: minute, seconds: seconds)
            }
            for usage in tokens {
                guard state.nodeIndex[usage.agent] != nil || state.nodeStats.count < configuration.maxNodes else { continue }
                let node = state.node(usage.agent)
                state.nodeStats[node].inputTokens += usage.input
                state.nodeStats[node].outputTokens += usage.output
            }
        }
        // The Prometheus series, outside the lock the APIs read under (registering a series is slow).
        let edgeSeries = series(of: keys, at: edgeOf, calls: calls, failedCalls: failedCalls)
        for position in observations.indices where edgeOf[keyOf[position]] >= 0 {
            let both = edgeSeries[keyOf[position]]
            let series = observations[position].failed ? both.failed : both.ok
            if let seconds = observations[position].serverSeconds { series?.server.record(seconds) }
            if let seconds = observations[position].clientSeconds { series?.client.record(seconds) }
        }
        for (key, both) in edgeSeries.enumerated() where edgeOf[key] >= 0 {
            let failed = failedCalls[key], ok = calls[key] - failed
            if ok > 0 { both.ok?.total.increment(by: Int64(ok)) }
            if failed > 0 {
                both.failed?.total.increment(by: Int64(failed))
                both.failed?.failed?.increment(by: Int64(failed))
            }
        }
        for usage in tokens where usage.input > 0 || usage.output > 0 {
            let counters: (input: Counter, output: Counter)? = tokenSeries.withLock { known in
                if let counters = known[usage.agent] { return counters }
                guard known.count < configuration.maxNodes else { return nil }
                let labels = [("node", usage.agent)]
                let made = (metrics.counter(NodeSeries.inputTokens, help: "Input tokens of a node's model calls.", labels: labels),
                            metrics.counter(NodeSeries.outputTokens, help: "Output tokens of a node's model calls.", labels: labels))
                known[usage.agent] = made
                return made
            }
            counters?.input.increment(by: usage.input)
            counters?.output.increment(by: usage.output)
        }
        if dropped > 0 { droppedSpans.increment(by: Int64(dropped)) }
    }

    /// Notes the `agent.*` attributes of resources (as `agent_enrichment` adds them) for their nodes'
    /// details, by `service.name` and by `agent.name` where it differs; once per resource, not per span.
    func noteDetails(of resources: [Resource]) {
        var noted: [(name: String, details: [Attribute])] = []
        for resource in resources {
            let details = resource.attributes.filter { $0.key.hasPrefix("agent.") }
            guard !details.isEmpty else { continue }
            guard let service = configuration.serviceName(of: resource) else { continue }
            noted.append((service, details))
            if let agent = resource.attributes["agent.name"]?.stringValue, !agent.isEmpty, agent != service {
                noted.append((agent, details))
            }
        }
        guard !noted.isEmpty else { return }
        let changed: [(name: String, old: [Attribute], new: [Attribute])] = state.withLock { state in
            var changed: [(name: String, old: [Attribute], new: [Attribute])] = []
            for (name, details) in noted where state.details[name] != details {
                guard state.details[name] != nil || state.details.count < configuration.maxNodes else { continue }
                changed.append((name, state.details[name] ?? [], details))
                state.details[name] = details
                if let node = state.nodeIndex[name] { state.nodeDetails[node] = (details, GraphJSON.detailFields(details)) }
            }
            return changed
        }
        // The details as series, outside the lock: the old values go to 0, the new ones are 1.
        for change in changed {
            for attribute in change.old where !change.new.contains(attribute) {
                detailGauge(change.name, attribute).set(Double(0))
            }
            for attribute in change.new { detailGauge(change.name, attribute).set(Double(1)) }
        }
    }

    private func detailGauge(_ node: String, _ attribute: Attribute) -> Gauge {
        metrics.gauge(NodeSeries.detail, help: "A node's agent.* resource attribute: 1 while it has this value.",
                      labels: [("node", node), ("key", attribute.key), ("value", GraphJSON.detailText(attribute.value))])
    }

    /// The agent attribute keys (`agent.type`, …) nodes carry, sorted: the node detail fields.
    public var nodeDetailKeys: [String] {
        state.withLock { state in Set(state.details.values.flatMap { $0.map(\.key) }) }.sorted()
    }

    /// Node names with details, for tests.
    var detailedNodes: [String] { state.withLock { $0.details.keys.sorted() } }

    /// The series of each of `keys` at its edge position in the graph (`edges`, -1 where the limits dropped
    /// it; nothing is registered for those), for the calls each brings: a `failed` value's series are
    /// registered when the first call with it comes. Found by position, without hashing the key's strings;
    /// edges are never removed, so a position names one edge for good.
    private func series(of keys: [EdgeKey], at edges: [Int], calls: [Int], failedCalls: [Int]) -> [EdgeSeries] {
        seriesByEdge.withLock { known in
            var found: [EdgeSeries] = []
            found.reserveCapacity(keys.count)
            for (position, key) in keys.enumerated() {
                let edge = edges[position]
                guard edge >= 0 else {
                    found.append(EdgeSeries())
                    continue
                }
                if known.count <= edge { known.append(contentsOf: repeatElement(EdgeSeries(), count: edge + 1 - known.count)) }
                if known[edge].ok == nil, calls[position] > failedCalls[position] {
                    known[edge].ok = makeMetrics(SeriesKey(edge: key, failed: false))
                }
                if known[edge].failed == nil, failedCalls[position] > 0 {
                    known[edge].failed = makeMetrics(SeriesKey(edge: key, failed: true))
                }
                found.append(known[edge])
            }
            return found
        }
    }

    /// The labels of a series, as the connector's `buildDimensions`: `client`, `server`,
    /// `connection_type`, `failed`, then `client_<key>` / `server_<key>` per dimension (and
    /// `virtual_node` with `virtual_node_extra_label`).
    static func labels(_ key: SeriesKey, configuration: ServiceGraphConfiguration) -> [(String, String)] {
        let edge = key.edge
        var labels = [("client", edge.client), ("server", edge.server), ("connection_type", edge.connectionType),
                      ("failed", key.failed ? "true" : "false")]
        let count = configuration.dimensions.count
        for (position, name) in configuration.dimensions.enumerated() {
            let label = ServiceGraphConfiguration.labelName(name)
            labels.append(("client_" + label, edge.dimensions.indices.contains(position) ? edge.dimensions[position] : ""))
            labels.append(("server_" + label, edge.dimensions.indices.contains(count + position) ? edge.dimensions[count + position] : ""))
        }
        if configuration.virtualNodeExtraLabel { labels.append(("virtual_node", edge.virtualNode)) }
        return labels
    }

    private func makeMetrics(_ key: SeriesKey) -> EdgeMetrics {
        let labels = Self.labels(key, configuration: configuration)
        return EdgeMetrics(
            total: metrics.counter("traces_service_graph_request_total", help: "Requests between two nodes.", labels: labels),
            failed: key.failed
                ? metrics.counter("traces_service_graph_request_failed_total", help: "Failed requests between two nodes.", labels: labels) : nil,
            server: metrics.histogram("traces_service_graph_request_server_seconds", help: "Time the server side took, in seconds.",
                                      labels: labels, buckets: configuration.latencyBuckets),
            client: metrics.histogram("traces_service_graph_request_client_seconds", help: "Time the client side took, in seconds.",
                                      labels: labels, buckets: configuration.latencyBuckets))
    }

    /// Every (caller, callee) pair the graph holds an edge for, once each, in the order first seen.
    public var callPairs: [(String, String)] {
        let keys = state.withLock { $0.edgeKeys }
        var seen = Set<[String]>()
        return keys.compactMap { key in seen.insert([key.client, key.server]).inserted ? (key.client, key.server) : nil }
    }

    /// A snapshot for the APIs: edges seen since `since` (all when nil), optionally only those touching `service`.
    /// The lock is held only to take copy-on-write copies; the work happens outside it. With `rendering`, each
    /// edge and node also carries its Node Graph JSON: kept from an earlier answer when it has not changed.
    public func snapshot(since: UInt64? = nil, until: UInt64? = nil, service: String? = nil, rendering: Bool = false) -> GraphSnapshot {
        var (keys, edges, names, nodes, edgeOrder, nodeOrder, sorted, details) = state.withLock {
            ($0.edgeKeys, $0.edgeStats, $0.nodeNames, $0.nodeStats, $0.edgeOrder, $0.nodeOrder, $0.sorted, $0.nodeDetails)
        }
        let (edgeJSON, nodeJSON) = rendering ? state.withLock { ($0.edgeJSON, $0.nodeJSON) } : ([], [])
        if !sorted {
            edgeOrder.sort { edges[$0].id < edges[$1].id }
            nodeOrder.sort { names[$0] < names[$1] }
            // Keep the order for the next snapshot unless more came meanwhile.
            state.withLock { [edgeOrder, nodeOrder] state in
                if state.edgeOrder.count == edgeOrder.count, state.nodeOrder.count == nodeOrder.count {
                    (state.edgeOrder, state.nodeOrder, state.sorted) = (edgeOrder, nodeOrder, true)
                }
            }
        }
        let isWindowed = since != nil || until != nil
        // With a service named, only edges touching its node.
        let serviceNode = service.map { names.firstIndex(of: $0) ?? -1 }
        var touched = [Bool](repeating: false, count: nodes.count)
        // Each node's kind from the edges in this snapshot that reach it, in their order: an edge's target
        // takes its kind unless that is `service` and it has one; a source first seen is a `service` (`user`
        // is a `user`).
        var kinds = [String?](repeating: nil, count: nodes.count)
        var snapshot = GraphSnapshot()
        snapshot.edges.reserveCapacity(edgeOrder.count)
        // Edges that differ only in their dimensions are one edge in the graph; they are next to each other.
        var serverNanos: UInt64 = 0
        var serverCount = 0
        // The first edge of the current id, and the merged sketch once a dimension variant of it follows.
        var first = 0
        var merged: LatencySketch?
        // Percentiles made for this snapshot, kept in the graph for the next one.
        var madeEdges: [(index: Int, total: UInt64, percentiles: [Double])] = []
        var madeNodes: [(index: Int, total: UInt64, percentiles: [Double])] = []
        // The position of each snapshot edge's first variant, and of each snapshot node.
        var edgeFirsts: [Int] = []
        var nodePositions: [Int] = []
        func finishEdge() {
            guard !snapshot.edges.isEmpty else { return }
            let percentiles: [Double]
            if let merged {
                percentiles = merged.percentilesMilliseconds
            } else if edges[first].percentilesTotal == edges[first].latency.total {
                percentiles = edges[first].percentiles
            } else {
                percentiles = edges[first].latency.percentilesMilliseconds
                madeEdges.append((first, edges[first].latency.total, percentiles))
            }
            snapshot.edges[snapshot.edges.count - 1].percentiles = percentiles
            guard serverCount > 0 else { return }
            snapshot.edges[snapshot.edges.count - 1].meanServerMilliseconds = Double(serverNanos) / Double(serverCount) / 1e6
        }
        for index in edgeOrder {
            let (client, server) = (edges[index].client, edges[index].server)
            if let serviceNode, client != serviceNode, server != serviceNode { continue }
            let counts: (requests: Int, failed: Int) = isWindowed
                ? edges[index].buckets.sum(since: since, until: until) : (edges[index].requests, edges[index].failed)
            guard !isWindowed || counts.requests > 0 else { continue }
            if let last = snapshot.edges.indices.last, snapshot.edges[last].id == edges[index].id {
                snapshot.edges[last].requests += counts.requests
                snapshot.edges[last].failed += counts.failed
                if merged == nil { merged = edges[first].latency }
                merged?.merge(edges[index].latency)
            } else {
                finishEdge()
                (serverNanos, serverCount, first, merged) = (0, 0, index, nil)
                edgeFirsts.append(index)
                snapshot.edges.append(GraphSnapshot.Edge(id: edges[index].id, source: names[client], target: names[server],
                                                         connectionType: keys[index].connectionType,
                                                         requests: counts.requests, failed: counts.failed, meanServerMilliseconds: nil))
                touched[client] = true
                touched[server] = true
                (kinds[server], kinds[client]) = GraphSnapshot.kinds(after: keys[index].connectionType, target: kinds[server],
                                                                     source: client == server ? nil : kinds[client], sourceName: names[client],
                                                                     sameNode: client == server)
            }
            serverNanos &+= edges[index].serverNanosSum
            serverCount += edges[index].serverCount
        }
        finishEdge()
        for index in nodeOrder where touched[index] {
            let counts: (requests: Int, failed: Int) = isWindowed
                ? nodes[index].buckets.sum(since: since, until: until) : (nodes[index].requests, nodes[index].failed)
            var percentiles = nodes[index].percentiles
            if nodes[index].percentilesTotal != nodes[index].latency.total {
                percentiles = nodes[index].latency.percentilesMilliseconds
                madeNodes.append((index, nodes[index].latency.total, percentiles))
            }
            nodePositions.append(index)
            snapshot.nodes.append(GraphSnapshot.Node(
                id: names[index], requests: counts.requests, failed: counts.failed,
                percentiles: percentiles,
                inputTokens: nodes[index].inputTokens, outputTokens: nodes[index].outputTokens,
                details: details[index].attributes, kind: kinds[index] ?? "service", detailFields: details[index].fields))
        }
        var writtenEdges: [(index: Int, entry: (edge: GraphSnapshot.Edge, json: [UInt8]))] = []
        var writtenNodes: [(index: Int, entry: (node: GraphSnapshot.Node, json: [UInt8]))] = []
        if rendering {
            for (position, index) in edgeFirsts.enumerated() {
                if let kept = edgeJSON[index], kept.edge.answersAlike(snapshot.edges[position]) {
                    snapshot.edges[position].json = kept.json
                } else {
                    let json = GraphJSON.edgeObject(snapshot.edges[position])
                    writtenEdges.append((index, (snapshot.edges[position], json)))
                    snapshot.edges[position].json = json
                }
            }
            for (position, index) in nodePositions.enumerated() {
                if let kept = nodeJSON[index], kept.node.answersAlike(snapshot.nodes[position]) {
                    snapshot.nodes[position].json = kept.json
                } else {
                    let json = GraphJSON.nodeObject(snapshot.nodes[position])
                    writtenNodes.append((index, (snapshot.nodes[position], json)))
                    snapshot.nodes[position].json = json
                }
            }
        }
        if !madeEdges.isEmpty || !madeNodes.isEmpty || !writtenEdges.isEmpty || !writtenNodes.isEmpty {
            // Unless more calls came meanwhile (positions never change: edges and nodes are only added).
            state.withLock { state in
                for made in madeEdges where state.edgeStats[made.index].latency.total == made.total {
                    (state.edgeStats[made.index].percentiles, state.edgeStats[made.index].percentilesTotal) = (made.percentiles, made.total)
                }
                for made in madeNodes where state.nodeStats[made.index].latency.total == made.total {
                    (state.nodeStats[made.index].percentiles, state.nodeStats[made.index].percentilesTotal) = (made.percentiles, made.total)
                }
                // Kept with what they were written from, so a later answer reuses them only when that is alike.
                for written in writtenEdges { state.edgeJSON[written.index] = written.entry }
                for written in writtenNodes { state.nodeJSON[written.index] = written.entry }
            }
        }
        return snapshot
    }
}

/// The graph at one moment, in API-neutral form.
public struct GraphSnapshot: Sendable {
    public struct Node: Sendable {
        public var id: String
        public var requests: Int
        public var failed: Int
        /// p50, p95, p99 of the durations of the calls into this node (server side, else client side), in
        /// ms, from a `LatencySketch` (within 1% of the exact nearest-rank value); empty without data.
        public var percentiles: [Double]
        public var inputTokens: Int64
        public var outputTokens: Int64
        /// The node's `agent.*` resource attributes (`agent.type`, `agent.critical`, metadata), shown as
        /// `detail__agent_…` fields.
        public var details: [Attribute] = []
        /// What the edges reaching it make it: `service`, `user`, `model`, `tool`, `database` or `external`
        /// (the Node Graph's subtitle).
        public var kind = "service"
        /// `details` as Node Graph fields, sorted (`GraphJSON.detailFields`).
        var detailFields: [(field: String, text: String)] = []
        /// Its Node Graph JSON object, when the snapshot was made for rendering.
        var json: [UInt8]? = nil

        /// True when `other` gives the same Node Graph object (everything it is written from is equal).
        func answersAlike(_ other: Node) -> Bool {
            id == other.id && requests == other.requests && failed == other.failed && percentiles == other.percentiles
                && inputTokens == other.inputTokens && outputTokens == other.outputTokens && kind == other.kind
                && details == other.details  // `detailFields` are made from them
        }
    }

    public struct Edge: Sendable {
        /// `source->target`, with `:connection_type` when there is one.
        public var id: String
        public var source: String
        public var target: String
        public var connectionType: String
        public var requests: Int
        public var failed: Int
        public var meanServerMilliseconds: Double?
        /// p50, p95, p99 of the calls' durations (server side, else client side), in ms; empty without data.
        public var percentiles: [Double] = []
        /// Its Node Graph JSON object, when the snapshot was made for rendering.
        var json: [UInt8]? = nil

        /// True when `other` gives the same Node Graph object.
        func answersAlike(_ other: Edge) -> Bool {
            id == other.id && source == other.source && target == other.target && connectionType == other.connectionType
                && requests == other.requests && failed == other.failed && meanServerMilliseconds == other.meanServerMilliseconds
                && percentiles == other.percentiles
        }

        /// The id an edge between `source` and `target` has.
        public static func id(source: String, target: String, connectionType: String) -> String {
            connectionType.isEmpty ? "\(source)->\(target)" : "\(source)->\(target):\(connectionType)"
        }
    }

    public var nodes: [Node] = []
    public var edges: [Edge] = []

    /// The node-kind rule, one edge at a time in the answer's edge order: the target takes the edge's kind
    /// unless that is `service` and it has one; then a source first seen is a `service` (`user` is a `user`).
    /// For an edge from a node to itself pass `source` nil: the source then is the target, already kinded.
    static func kinds(after connectionType: String, target: String?, source: String?, sourceName: String,
                      sameNode: Bool = false) -> (target: String, source: String) {
        let kind = GraphJSON.targetKind(connectionType)
        let newTarget = target == nil || kind != "service" ? kind : target ?? kind
        return (newTarget, source ?? (sameNode ? newTarget : sourceName == "user" ? "user" : "service"))
    }

    /// Gives each node its kind from the edges and its detail fields from its details: for snapshots made
    /// other than by `ServiceGraph.snapshot` (the cluster graph's), which makes them as it goes.
    mutating func assignKindsAndDetailFields() {
        var kinds: [String: String] = [:]
        for edge in edges {
            let same = edge.source == edge.target
            let (target, source) = GraphSnapshot.kinds(after: edge.connectionType, target: kinds[edge.target],
                                                        source: same ? nil : kinds[edge.source], sourceName: edge.source, sameNode: same)
            kinds[edge.target] = target
            kinds[edge.source] = same ? target : source
        }
        for position in nodes.indices {
            nodes[position].kind = kinds[nodes[position].id] ?? "service"
            nodes[position].detailFields = GraphJSON.detailFields(nodes[position].details)
        }
    }
}

