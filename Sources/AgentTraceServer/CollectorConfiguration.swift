import Pipeline
import HTTP2
import Receivers

/// The whole configuration file, shaped like the OpenTelemetry Collector's: components declared by
/// kind and name, then wired into pipelines under `service:`.
public struct CollectorConfiguration: Sendable {
    /// One `service: pipelines:` entry.
    public struct PipelineConfiguration: Sendable, Equatable {
        public var name: String
        public var receivers: [ComponentID]
        public var processors: [ComponentID]
        public var exporters: [ComponentID]
    }

    /// `service: queue:`: the bounded queue between receivers and each pipeline's processors.
    public struct QueueConfiguration: Sendable, Equatable {
        /// Batches (export requests) held at most. Default 1024.
        public var maxBatches = 1024
        /// Spans held at most. Default 1,000,000.
        public var maxSpans = 1_000_000
    }

    /// Declared receivers, by id, with their raw settings.
    public var receivers: [(id: ComponentID, value: ConfigValue)]
    /// Declared processors.
    public var processors: [(id: ComponentID, value: ConfigValue)]
    /// Declared exporters.
    public var exporters: [(id: ComponentID, value: ConfigValue)]
    /// The pipelines.
    public var pipelines: [PipelineConfiguration]
    /// `service: admin: endpoint`. Default `localhost:8888`.
    public var adminEndpoint = Endpoint(host: "localhost", port: 8888)
    /// `service: admin:` timeouts and connection limits, as on the OTLP/HTTP receiver (defaults in `ListenerDefaults`).
    public var adminLimits = HTTP1Limits(connection: ConnectionLimits(maxConnections: 100, readHeaderTimeout: ListenerDefaults.readHeaderTimeout,
                                                                      readTimeout: ListenerDefaults.readTimeout),
                                         idleTimeout: ListenerDefaults.idleTimeout)
    /// `service: admin: auth:`; nil (the default) serves everyone. `/healthz` and `/readyz` stay open for probes.
    public var adminAuth: BearerAuthConfiguration?
    /// `service: admin: tls:`; nil (the default) serves plain HTTP.
    public var adminTLS: TLSServerConfiguration?
    /// `service: shutdown_timeout`: how long SIGTERM may take to drain before the rest is cancelled. Default 30s.
    public var shutdownTimeout: Duration = .seconds(30)
    /// `service: memory_limiter:`; nil (the default) sets no memory limit.
    public var memoryLimiter: MemoryLimiterConfiguration?
    /// `service: telemetry: logs: level`. Default `info`.
    public var logLevel = "info"
    /// `service: queue:`.
    public var queue = QueueConfiguration()

    /// The embedded default configuration's text.
    public static var defaultYAML: String { String(decoding: PackageResources.default_config_yaml, as: UTF8.self) }

    /// Parses and checks the top level; component settings are checked when `CollectorBuilder` builds them.
    public init(yaml: String, environment: [String: String]) throws(ConfigurationError) {
        let root = try ConfigSection(try ConfigValue.parse(yaml: yaml, environment: environment), path: "")
        receivers = try Self.components(root, "receivers")
        processors = try Self.components(root, "processors")
        exporters = try Self.components(root, "exporters")
        _ = try root.section("extensions")  // accepted for Collector compatibility; none exist yet
        _ = try root.section("connectors")
        guard let service = try root.section("service") else {
            throw ConfigurationError(key: "service", "required: it wires components into pipelines")
        }
        if let admin = try service.section("admin") {
            adminEndpoint = try admin.endpoint("endpoint", default: adminEndpoint)
            let maxConnections = try admin.int("max_connections", default: 100, in: 0...1_000_000)
            adminLimits = try HTTP1Limits(section: admin)
            adminLimits.connection.maxConnections = maxConnections == 0 ? nil : maxConnections
            adminAuth = try admin.bearerAuth()
            adminTLS = try admin.tlsServer()
            try admin.finish()
        }
        shutdownTimeout = try service.duration("shutdown_timeout", default: shutdownTimeout, minimum: .milliseconds(100))
        if let limiter = try service.section("memory_limiter") {
            memoryLimiter = try MemoryLimiterConfiguration(section: limiter)
        }
        if let telemetry = try service.section("telemetry") {
            if let logs = try telemetry.section("logs") {
                logLevel = try logs.string("level", default: logLevel).lowercased()
                guard ["trace", "debug", "info", "notice", "warning", "warn", "error", "critical"].contains(logLevel) else {
                    throw ConfigurationError(key: logs.keyPath("level"), "expected debug, info, warn or error")
                }
                try logs.finish()
            }
            try telemetry.finish()
        }
        if let queueSection = try service.section("queue") {
            queue.maxBatches = try queueSection.int("max_batches", default: queue.maxBatches, in: 1...1_000_000)
            queue.maxSpans = try queueSection.int("max_spans", default: queue.maxSpans, in: 1...1_000_000_000)
            try queueSection.finish()
        }
        let pipelinesSection = try service.section("pipelines")
        try service.finish()  // a misspelt key is a better message than a missing one
        guard let pipelinesSection else {
            throw ConfigurationError(key: "service.pipelines", "required: declare at least a traces pipeline")
        }
        pipelines = []
        for name in pipelinesSection.keys {
            let path = pipelinesSection.keyPath(name)
            guard ComponentID(name).type == "traces" else {
                throw ConfigurationError(key: path, "only traces pipelines exist (traces or traces/NAME)")
            }
            guard let section = try pipelinesSection.section(name) else { continue }
            let pipeline = PipelineConfiguration(
                name: name,
                receivers: try section.stringList("receivers", default: []).map(ComponentID.init),
                processors: try section.stringList("processors", default: []).map(ComponentID.init),
                exporters: try section.stringList("exporters", default: []).map(ComponentID.init)
            )
            try section.finish()
            try Self.check(pipeline.receivers, declared: receivers, kind: "receivers", at: section)
            try Self.check(pipeline.processors, declared: processors, kind: "processors", at: section)
            try Self.check(pipeline.exporters, declared: exporters, kind: "exporters", at: section)
            guard !pipeline.receivers.isEmpty else { throw ConfigurationError(key: section.keyPath("receivers"), "needs at least one receiver") }
            guard !pipeline.exporters.isEmpty else { throw ConfigurationError(key: section.keyPath("exporters"), "needs at least one exporter") }
            for other in pipelines {
                if let shared = pipeline.exporters.first(where: other.exporters.contains) {
                    throw ConfigurationError(key: section.keyPath("exporters"),
                                             "exporter \(shared) is already used by pipeline \(other.name); declare a second instance (\(shared.type)/2)")
                }
            }
            pipelines.append(pipeline)
        }
        guard !pipelines.isEmpty else { throw ConfigurationError(key: "service.pipelines", "declare at least one traces pipeline") }
        try pipelinesSection.finish()
        try root.finish()
    }

    private static func components(_ root: ConfigSection, _ kind: String) throws(ConfigurationError) -> [(id: ComponentID, value: ConfigValue)] {
        guard let section = try root.section(kind) else { return [] }
        var result: [(id: ComponentID, value: ConfigValue)] = []
        for key in section.keys {
            let id = ComponentID(key)
            guard !id.type.isEmpty else { throw ConfigurationError(key: section.keyPath(key), "a component needs a type name") }
            result.append((id, section.value(key) ?? .null))
        }
        try section.finish()
        return result
    }

    private static func check(_ used: [ComponentID], declared: [(id: ComponentID, value: ConfigValue)], kind: String,
                              at section: ConfigSection) throws(ConfigurationError) {
        for id in used where !declared.contains(where: { $0.id == id }) {
            throw ConfigurationError(key: section.keyPath(kind), "\(id) is not declared under \(kind):")
        }
        if let duplicate = used.enumerated().first(where: { index, id in used[..<index].contains(id) })?.element {
            throw ConfigurationError(key: section.keyPath(kind), "\(duplicate) is listed twice")
        }
    }
}
