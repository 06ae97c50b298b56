import Foundation
import Pipeline

/// `processors: service_graph:` settings, named after the OpenTelemetry Collector's servicegraph
/// connector and Tempo's metrics-generator where they have a name.
public struct ServiceGraphConfiguration: Sendable, Equatable {
    /// How long an unpaired half waits for its other half. Default 10s.
    public var ttl: Duration = .seconds(10)
    /// Unpaired halves held at most; more are dropped and counted. Default 10000.
    public var maxItems = 10_000
    /// Attributes that name the peer of an unpaired CLIENT span, best first.
    public var virtualNodePeerAttributes = ["peer.service", "db.name", "db.system", "server.address"]
    /// Latency histogram bounds in seconds (Tempo's defaults).
    public var latencyBuckets: [Double] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]
    /// Extra span or resource attributes added to each edge's labels.
    public var dimensions: [String] = []
    /// Edges kept at most; spans that would add more are dropped and counted. Default 10000.
    public var maxEdges = 10_000
    /// Nodes kept at most; an edge that would add more is dropped and counted. Default 10000.
    public var maxNodes = 10_000
    /// Agent edges (service changes between parent and child, agent.source/target, GenAI model and tool calls). Default true.
    public var agentEdges = true
    /// Trace-id shards, each pairing on its own queue (so on its own core). Default: the cores, at most 8.
    public var shards = ServiceGraphConfiguration.defaultShards

    /// One shard per core, at most 8.
    public static var defaultShards: Int { min(max(ProcessInfo.processInfo.activeProcessorCount, 1), 8) }

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        if let store = try section.section("store") {
            ttl = try store.duration("ttl", default: ttl, minimum: .milliseconds(1))
            maxItems = try store.int("max_items", default: maxItems, in: 1...10_000_000)
            try store.finish()
        }
        virtualNodePeerAttributes = try section.stringList("virtual_node_peer_attributes", default: virtualNodePeerAttributes)
        let bucketTexts = try section.stringList("latency_histogram_buckets", default: latencyBuckets.map { String($0) })
        latencyBuckets = []
        for text in bucketTexts {
            guard let value = Double(text) ?? Duration(configText: text).map({ Double($0.nanoseconds) / 1e9 }), value > 0 else {
                throw ConfigurationError(key: section.keyPath("latency_histogram_buckets"), "\"\(text)\" is not a positive number of seconds")
            }
            latencyBuckets.append(value)
        }
        guard latencyBuckets == latencyBuckets.sorted(), !latencyBuckets.isEmpty else {
            throw ConfigurationError(key: section.keyPath("latency_histogram_buckets"), "must be increasing and not empty")
        }
        dimensions = try section.stringList("dimensions", default: dimensions)
        maxEdges = try section.int("max_edges", default: maxEdges, in: 1...10_000_000)
        maxNodes = try section.int("max_nodes", default: maxNodes, in: 1...10_000_000)
        agentEdges = try section.bool("agent_edges", default: agentEdges)
        shards = try section.int("shards", default: shards, in: 1...64)
        try section.finish()
    }
}
