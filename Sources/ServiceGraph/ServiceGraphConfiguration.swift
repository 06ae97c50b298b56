import Pipeline
import TraceModel

/// `processors: service_graph:` settings, named after the OpenTelemetry Collector's servicegraph
/// connector and Tempo's metrics-generator where they have a name.
public struct ServiceGraphConfiguration: Sendable, Equatable {
    /// How long an unpaired half waits for its other half. Default 10s.
    public var ttl: Duration = .seconds(10)
    /// Unpaired halves held at most; more are dropped and counted. Default 10000.
    public var maxItems = 10_000
    /// Attributes that name the peer of an unpaired CLIENT or PRODUCER span, best first. Default as the
    /// connector's `defaultPeerAttributes`: `peer.service`, `db.name`, `db.system`.
    public var virtualNodePeerAttributes = ["peer.service", "db.name", "db.system"]
    /// `database_name_attributes` (connector): when set, a CLIENT span with one of these attributes
    /// (resource first, then span) is a database call to the node that attribute names. Nil (the
    /// default) keeps Tempo's rule: any `db.*` system or name attribute, the node named by
    /// `peer.service`, `server.address`, `network.peer.address[:port]`, then the database name.
    public var databaseNameAttributes: [String]? = nil
    /// `virtual_node_extra_label`: adds the connector's `virtual_node` label (`client`, `server` or empty)
    /// to the Prometheus series. Default false.
    public var virtualNodeExtraLabel = false
    /// `include_unnamed_services`: spans whose resource has no `service.name` become a node named
    /// `unknown_service` (the SDKs' fallback) instead of being skipped and counted. Default false, as the
    /// connector ("If service.name doesn't exist, skip processing this trace").
    public var includeUnnamedServices = false
    /// `store_expiration_loop`: how often unpaired halves are looked at for expiry. Default 2s (connector).
    public var storeExpirationLoop: Duration = .seconds(2)
    /// `metrics_flush_interval`: accepted for the connector's configuration; the series are read by the
    /// scrape, so every scrape sees every completed edge (the connector's `0`). Default 60s.
    public var metricsFlushInterval: Duration = .seconds(60)
    /// Latency histogram bounds in seconds (Tempo's defaults).
    public var latencyBuckets: [Double] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]
    /// Extra attributes (looked up on the resource, then the span) added to each series as
    /// `client_<key>` (from the client side) and `server_<key>` (from the server side), as the connector.
    public var dimensions: [String] = []
    /// Edges kept at most; spans that would add more are dropped and counted. Default 10000.
    public var maxEdges = 10_000
    /// Nodes kept at most; an edge that would add more is dropped and counted. Default 10000.
    public var maxNodes = 10_000
    /// Agent edges (service changes between parent and child, agent.source/target, GenAI model and tool calls). Default true.
    public var agentEdges = true
    /// Trace-id shards, each pairing on its own queue (so on its own core). Default: the cores, at most 8.
    public var shards = ServiceGraphConfiguration.defaultShards

    /// `cluster:`: answer the graph APIs for every replica behind a load balancer, from the series each
    /// replica exports, summed by a Prometheus that scrapes them all. Nil (the default): this process's graph.
    public var cluster: ClusterConfiguration?

    /// `cluster:` settings.
    public struct ClusterConfiguration: Sendable, Equatable {
        /// `prometheus`: the Prometheus (or compatible) base URL whose `/api/v1/query` is asked. Required.
        public var prometheus: String
        /// `timeout`: how long the queries of one answer may take together. Default 5s.
        public var timeout: Duration = .seconds(5)

        /// Settings asking the Prometheus at `prometheus`.
        public init(prometheus: String, timeout: Duration = .seconds(5)) {
            self.prometheus = prometheus
            self.timeout = timeout
        }

        init(section: ConfigSection) throws(ConfigurationError) {
            guard let url = try section.optionalString("prometheus"), url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw ConfigurationError(key: section.keyPath("prometheus"), "required: the Prometheus base URL, such as http://prometheus:9090")
            }
            prometheus = url.hasSuffix("/") ? String(url.dropLast()) : url
            timeout = try section.duration("timeout", default: timeout, minimum: .milliseconds(1))
            try section.finish()
        }
    }

    /// One shard per core, at most 8.
    public static var defaultShards: Int { min(UsableCores.count, 8) }

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
        var labels: Set<String> = ["client", "server", "connection_type", "failed", "virtual_node"]
        for dimension in dimensions {
            guard !dimension.isEmpty else { throw ConfigurationError(key: section.keyPath("dimensions"), "a dimension must not be empty") }
            let label = Self.labelName(dimension)
            // client_<key> and server_<key> never equal the fixed labels; two keys may sanitise alike.
            guard labels.insert("client_" + label).inserted, labels.insert("server_" + label).inserted else {
                throw ConfigurationError(key: section.keyPath("dimensions"),
                                         "\"\(dimension)\" gives the label client_\(label)/server_\(label) twice")
            }
        }
        // The connector's database naming: `database_name_attributes`, or the deprecated single key.
        let deprecatedName = try section.optionalString("database_name_attribute")
        if let names = try section.optionalStringList("database_name_attributes") {
            guard !names.isEmpty, !names.contains("") else {
                throw ConfigurationError(key: section.keyPath("database_name_attributes"), "must list at least one attribute name")
            }
            databaseNameAttributes = names
        } else if let deprecatedName {
            guard !deprecatedName.isEmpty else { throw ConfigurationError(key: section.keyPath("database_name_attribute"), "must not be empty") }
            databaseNameAttributes = [deprecatedName]
        }
        virtualNodeExtraLabel = try section.bool("virtual_node_extra_label", default: virtualNodeExtraLabel)
        includeUnnamedServices = try section.bool("include_unnamed_services", default: includeUnnamedServices)
        storeExpirationLoop = try section.duration("store_expiration_loop", default: storeExpirationLoop, minimum: .milliseconds(1))
        metricsFlushInterval = try section.duration("metrics_flush_interval", default: metricsFlushInterval)
        // Deprecated in the connector and a no-op there ("this option is currently noop").
        _ = try section.optionalString("metrics_exporter")
        for (key, why) in Self.unsupportedConnectorKeys where section.keys.contains(key) {
            _ = section.value(key)
            throw ConfigurationError(key: section.keyPath(key), why)
        }
        maxEdges = try section.int("max_edges", default: maxEdges, in: 1...10_000_000)
        maxNodes = try section.int("max_nodes", default: maxNodes, in: 1...10_000_000)
        agentEdges = try section.bool("agent_edges", default: agentEdges)
        shards = try section.int("shards", default: shards, in: 1...64)
        cluster = try section.section("cluster").map { (cluster) throws(ConfigurationError) in try ClusterConfiguration(section: cluster) }
        try section.finish()
    }

    /// The node name of a resource's spans: its `service.name`; `unknown_service` when it has none and
    /// `include_unnamed_services` is set ("SDKs MUST fallback to 'unknown_service'"), else nil (skip).
    public func serviceName(of resource: Resource) -> String? {
        if let name = resource.serviceName { return name }
        return includeUnnamedServices ? "unknown_service" : nil
    }

    /// Connector keys with no AgentTrace meaning, and why.
    static let unsupportedConnectorKeys: [(key: String, why: String)] = [
        ("exponential_histogram_max_size", "exponential histograms are not supported: the series are Tempo's classic histograms; use latency_histogram_buckets"),
        ("metrics_timestamp_offset", "not supported: Prometheus stamps the series when it scrapes /metrics"),
        ("cache_loop", "not supported: series are never dropped as stale; max_edges bounds them instead"),
    ]

    /// A dimension's attribute key as a Prometheus label fragment: anything but [A-Za-z0-9_] becomes `_`.
    public static func labelName(_ key: String) -> String {
        String(key.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") ? $0 : "_" })
    }
}
