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
    }

    struct Buckets: Sendable {
        var minute: [Int64] = Array(repeating: -1, count: ServiceGraph.minutes)
        var requests: [Int] = Array(repeating: 0, count: ServiceGraph.minutes)
        var failed: [Int] = Array(repeating: 0, count: ServiceGraph.minutes)

        mutating func add(at unixNanos: UInt64, failed isFailed: Bool) {
            let minute = Int64(unixNanos / 60_000_000_000)
            let slot = Int(minute % Int64(ServiceGraph.minutes))
            if self.minute[slot] != minute {
                self.minute[slot] = minute
                requests[slot] = 0
                failed[slot] = 0
            }
            requests[slot] += 1
            if isFailed { failed[slot] += 1 }
        }

        /// Requests and failures in the minutes from `since` to `until` (Unix nanoseconds); open ends when nil.
        func sum(since: UInt64?, until: UInt64? = nil) -> (requests: Int, failed: Int) {
            let first = since.map { Int64($0 / 60_000_000_000) } ?? Int64.min
            let last = until.map { Int64($0 / 60_000_000_000) } ?? Int64.max
            var result = (0, 0)
            for slot in 0..<ServiceGraph.minutes where minute[slot] >= first && minute[slot] <= last && minute[slot] >= 0 {
                result.0 += requests[slot]
                result.1 += failed[slot]
            }
            return result
        }
    }

    struct EdgeStats: Sendable {
        var requests = 0
        var failed = 0
        var buckets = Buckets()
        var lastSeen: UInt64 = 0
        var serverSecondsSum = 0.0
        var serverCount = 0
        let metrics: EdgeMetrics
    }

    struct EdgeMetrics: Sendable {
        let total: Counter
        let failed: Counter
        let server: ValueHistogram
        let client: ValueHistogram
    }

    struct NodeStats: Sendable {
        var requests = 0
        var failed = 0
        var buckets = Buckets()
        var latencies: [Int]
    }

    private struct State: Sendable {
        var edges: [EdgeKey: EdgeStats] = [:]
        var nodes: [String: NodeStats] = [:]
        var droppedEdges = 0
    }

    let configuration: ServiceGraphConfiguration
    private let metrics: SelfMetrics
    private let state = Mutex(State())
    private let droppedSpans: Counter
    private let unpairedSpans: Counter

    public init(configuration: ServiceGraphConfiguration, metrics: SelfMetrics) {
        self.configuration = configuration
        self.metrics = metrics
        droppedSpans = metrics.counter("traces_service_graph_dropped_spans_total",
                                       help: "Spans the service graph could not hold (store or edge limit).")
        unpairedSpans = metrics.counter("traces_service_graph_unpaired_spans_total",
                                        help: "Client or server spans that expired without their other half.")
    }

    /// Counts spans dropped and unpaired by the pairing store since the last call.
    func countStore(dropped: Int, unpaired: Int) {
        if dropped > 0 { droppedSpans.increment(by: Int64(dropped)) }
        if unpaired > 0 { unpairedSpans.increment(by: Int64(unpaired)) }
    }

    /// Adds observed calls.
    func record(_ observations: [EdgeObservation]) {
        guard !observations.isEmpty else { return }
        var dropped = 0
        // Registering an edge's series with Prometheus is slow; do it outside the lock the APIs read under.
        let keys = observations.map {
            EdgeKey(client: $0.client, server: $0.server, connectionType: $0.connectionType, dimensions: $0.dimensions)
        }
        let unknown = state.withLock { state in Set(keys.filter { state.edges[$0] == nil }) }
        var fresh: [EdgeKey: EdgeMetrics] = [:]
        for key in unknown { fresh[key] = makeMetrics(key) }
        state.withLock { state in
            for (observation, key) in zip(observations, keys) {
                if state.edges[key] == nil {
                    let newNodes = (state.nodes[key.client] == nil ? 1 : 0) + (state.nodes[key.server] == nil ? 1 : 0)
                    guard state.edges.count < configuration.maxEdges, state.nodes.count + newNodes <= configuration.maxNodes,
                          let metrics = fresh[key] else {
                        dropped += 1
                        continue
                    }
                    state.edges[key] = EdgeStats(metrics: metrics)
                }
                state.edges[key]!.requests += 1
                if observation.failed { state.edges[key]!.failed += 1 }
                state.edges[key]!.buckets.add(at: observation.time, failed: observation.failed)
                state.edges[key]!.lastSeen = max(state.edges[key]!.lastSeen, observation.time)
                let edgeMetrics = state.edges[key]!.metrics
                edgeMetrics.total.increment()
                if observation.failed { edgeMetrics.failed.increment() }
                if let seconds = observation.serverSeconds {
                    edgeMetrics.server.record(seconds)
                    state.edges[key]!.serverSecondsSum += seconds
                    state.edges[key]!.serverCount += 1
                }
                if let seconds = observation.clientSeconds { edgeMetrics.client.record(seconds) }

                for name in [observation.client, observation.server] where state.nodes[name] == nil {
                    state.nodes[name] = NodeStats(latencies: Array(repeating: 0, count: configuration.latencyBuckets.count + 1))
                }
                state.nodes[observation.server]!.requests += 1
                if observation.failed { state.nodes[observation.server]!.failed += 1 }
                state.nodes[observation.server]!.buckets.add(at: observation.time, failed: observation.failed)
                if let seconds = observation.serverSeconds ?? observation.clientSeconds {
                    let bucket = configuration.latencyBuckets.firstIndex { seconds <= $0 } ?? configuration.latencyBuckets.count
                    state.nodes[observation.server]!.latencies[bucket] += 1
                }
            }
            state.droppedEdges += dropped
        }
        if dropped > 0 { droppedSpans.increment(by: Int64(dropped)) }
    }

    private func makeMetrics(_ key: EdgeKey) -> EdgeMetrics {
        var labels = [("client", key.client), ("server", key.server), ("connection_type", key.connectionType)]
        for (name, value) in zip(configuration.dimensions, key.dimensions) {
            labels.append((name.replacingOccurrences(of: ".", with: "_"), value))
        }
        return EdgeMetrics(
            total: metrics.counter("traces_service_graph_request_total", help: "Requests between two nodes.", labels: labels),
            failed: metrics.counter("traces_service_graph_request_failed_total", help: "Failed requests between two nodes.", labels: labels),
            server: metrics.histogram("traces_service_graph_request_server_seconds", help: "Time the server side took, in seconds.",
                                      labels: labels, buckets: configuration.latencyBuckets),
            client: metrics.histogram("traces_service_graph_request_client_seconds", help: "Time the client side took, in seconds.",
                                      labels: labels, buckets: configuration.latencyBuckets))
    }

    /// A snapshot for the APIs: edges seen since `since` (all when nil), optionally only those touching `service`;
    /// nodes carry their `agentDetails` (the `agent.*` resource attributes seen last).
    public func snapshot(since: UInt64?, until: UInt64? = nil, service: String?, tokens: [String: (input: Int64, output: Int64)],
                         agentDetails: [String: [Attribute]] = [:]) -> GraphSnapshot {
        state.withLock { state in
            var snapshot = GraphSnapshot()
            var touched: Set<String> = []
            // Edges that differ only in their dimensions are one edge in the graph.
            var merged: [String: (edge: GraphSnapshot.Edge, serverSeconds: Double, serverCount: Int)] = [:]
            for (key, stats) in state.edges {
                if let service, key.client != service, key.server != service { continue }
                let windowed = stats.buckets.sum(since: since, until: until)
                let isWindowed = since != nil || until != nil
                guard !isWindowed || windowed.requests > 0 else { continue }
                let counts = isWindowed ? windowed : (stats.requests, stats.failed)
                let edge = GraphSnapshot.Edge(source: key.client, target: key.server, connectionType: key.connectionType,
                                              requests: counts.0, failed: counts.1, meanServerMilliseconds: nil)
                var entry = merged[edge.id] ?? (GraphSnapshot.Edge(source: key.client, target: key.server, connectionType: key.connectionType,
                                                                   requests: 0, failed: 0, meanServerMilliseconds: nil), 0, 0)
                entry.edge.requests += edge.requests
                entry.edge.failed += edge.failed
                entry.serverSeconds += stats.serverSecondsSum
                entry.serverCount += stats.serverCount
                merged[edge.id] = entry
                touched.insert(key.client)
                touched.insert(key.server)
            }
            for (_, entry) in merged {
                var edge = entry.edge
                if entry.serverCount > 0 { edge.meanServerMilliseconds = entry.serverSeconds / Double(entry.serverCount) * 1000 }
                snapshot.edges.append(edge)
            }
            for name in touched {
                guard let stats = state.nodes[name] else { continue }
                let counts = since == nil && until == nil ? (stats.requests, stats.failed) : stats.buckets.sum(since: since, until: until)
                snapshot.nodes.append(GraphSnapshot.Node(
                    id: name, requests: counts.0, failed: counts.1,
                    percentiles: Self.percentiles(stats.latencies, bounds: configuration.latencyBuckets),
                    inputTokens: tokens[name]?.input ?? 0, outputTokens: tokens[name]?.output ?? 0,
                    details: agentDetails[name] ?? []))
            }
            snapshot.edges.sort { $0.id < $1.id }
            snapshot.nodes.sort { $0.id < $1.id }
            return snapshot
        }
    }

    /// p50, p95, p99 in milliseconds from bucket counts (each at its bucket's upper bound).
    static func percentiles(_ counts: [Int], bounds: [Double]) -> [Double] {
        let total = counts.reduce(0, +)
        guard total > 0 else { return [] }
        return [0.5, 0.95, 0.99].map { quantile in
            let rank = Int((Double(total) * quantile).rounded(.up))
            var seen = 0
            for (index, count) in counts.enumerated() {
                seen += count
                if seen >= rank { return (index < bounds.count ? bounds[index] : bounds.last! * 2) * 1000 }
            }
            return bounds.last! * 2000
        }
    }
}

/// The graph at one moment, in API-neutral form.
public struct GraphSnapshot: Sendable {
    public struct Node: Sendable {
        public var id: String
        public var requests: Int
        public var failed: Int
        /// p50, p95, p99 of the latency into this node, in ms; empty without data.
        public var percentiles: [Double]
        public var inputTokens: Int64
        public var outputTokens: Int64
        /// The node's `agent.*` resource attributes (`agent.type`, `agent.critical`, metadata), shown as
        /// `detail__agent_…` fields.
        public var details: [Attribute] = []
    }

    public struct Edge: Sendable {
        public var source: String
        public var target: String
        public var connectionType: String
        public var requests: Int
        public var failed: Int
        public var meanServerMilliseconds: Double?

        public var id: String { connectionType.isEmpty ? "\(source)->\(target)" : "\(source)->\(target):\(connectionType)" }
    }

    public var nodes: [Node] = []
    public var edges: [Edge] = []
}
