import ConfigYAML
import Pipeline
import Receivers
import ServerSupport

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
        /// Batches (export requests) held at most. Default 32: decoded batches waiting in a deep queue go cold
        /// in the cache before the processors read them (1024 cost a quarter of the chain's throughput on small
        /// spans); bursts wait as held requests instead (`waitWhenFull`).
        public var maxBatches = 32
        /// Spans held at most. Default 1,000,000.
        public var maxSpans = 1_000_000
        /// How long a receiver holds a request while the queue is full, letting it in as room frees, before
        /// answering 503 / UNAVAILABLE. Default 2s; 0s refuses at once.
        public var waitWhenFull: Duration = .seconds(2)
    }

    /// Declared receivers, by id, with their raw settings.
    public var receivers: [(id: ComponentID, value: ConfigValue)] = []
    /// Declared processors.
    public var processors: [(id: ComponentID, value: ConfigValue)] = []
    /// Declared exporters.
    public var exporters: [(id: ComponentID, value: ConfigValue)] = []
    /// The pipelines.
    public var pipelines: [PipelineConfiguration] = []
    /// The mistakes `parse` found outside the components' own settings (which `Collector` checks when
    /// it builds them); empty for a configuration made by the throwing initialiser.
    public var problems: [ConfigurationError] = []
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

    /// Parses and checks the top level, failing with every mistake found; component settings are checked
    /// when `Collector` builds them.
    public init(yaml: String, environment: [String: String]) throws(ConfigurationError) {
        self = try Self.parse(yaml: yaml, environment: environment)
        try ConfigurationProblems(problems).finish()
    }

    /// Parses and checks the top level, going on past mistakes: they are kept in `problems` (and the
    /// pipelines leave out the components they name that are not declared), so that `Collector` can add
    /// the components' own mistakes and report them all at once. Throws only when the text is not YAML.
    public static func parse(yaml: String, environment: [String: String]) throws(ConfigurationError) -> CollectorConfiguration {
        var configuration = CollectorConfiguration()
        var problems = ConfigurationProblems()
        configuration.read(try ConfigValue.parse(yaml: yaml, environment: environment), into: &problems)
        configuration.problems = problems.all
        return configuration
    }

    private init() {}

    private mutating func read(_ document: ConfigValue, into problems: inout ConfigurationProblems) {
        guard let root = problems.check("", { () throws in try ConfigSection(document, path: "") }) else { return }
        receivers = Self.components(root, "receivers", &problems)
        processors = Self.components(root, "processors", &problems)
        exporters = Self.components(root, "exporters", &problems)
        _ = problems.check("extensions") { () throws in try root.section("extensions") }  // accepted for Collector compatibility; none exist yet
        _ = problems.check("connectors") { () throws in try root.section("connectors") }
        let serviceSection = problems.check("service") { () throws in try root.section("service") }
        _ = problems.check("") { () throws in try root.finish() }
        guard let serviceSection else { return }
        guard let service = serviceSection else {
            problems.record(ConfigurationError(key: "service", "required: it wires components into pipelines"))
            return
        }
        readService(service, &problems)
    }

    private mutating func readService(_ service: ConfigSection, _ problems: inout ConfigurationProblems) {
        _ = problems.check("service.admin") { () throws in
            guard let admin = try service.section("admin") else { return }
            adminEndpoint = try admin.endpoint("endpoint", default: adminEndpoint)
            let maxConnections = try admin.int("max_connections", default: 100, in: 0...1_000_000)
            adminLimits = try HTTP1Limits(section: admin)
            adminLimits.connection.maxConnections = maxConnections == 0 ? nil : maxConnections
            adminAuth = try admin.bearerAuth()
            adminTLS = try admin.tlsServer()
            try admin.finish()
        }
        _ = problems.check("service.shutdown_timeout") { () throws in
            shutdownTimeout = try service.duration("shutdown_timeout", default: shutdownTimeout, minimum: .milliseconds(100))
        }
        _ = problems.check("service.memory_limiter") { () throws in
            if let limiter = try service.section("memory_limiter") {
                memoryLimiter = try MemoryLimiterConfiguration(section: limiter)
            }
        }
        _ = problems.check("service.telemetry") { () throws in
            guard let telemetry = try service.section("telemetry") else { return }
            if let logs = try telemetry.section("logs") {
                logLevel = try logs.string("level", default: logLevel).lowercased()
                guard ["trace", "debug", "info", "notice", "warning", "warn", "error", "critical"].contains(logLevel) else {
                    throw ConfigurationError(key: logs.keyPath("level"), "expected debug, info, warn or error")
                }
                try logs.finish()
            }
            try telemetry.finish()
        }
        _ = problems.check("service.queue") { () throws in
            guard let queueSection = try service.section("queue") else { return }
            queue.maxBatches = try queueSection.int("max_batches", default: queue.maxBatches, in: 1...1_000_000)
            queue.maxSpans = try queueSection.int("max_spans", default: queue.maxSpans, in: 1...1_000_000_000)
            queue.waitWhenFull = try queueSection.duration("wait_when_full", default: queue.waitWhenFull)
            if queue.waitWhenFull > .seconds(60) {
                throw ConfigurationError(key: queueSection.keyPath("wait_when_full"), "at most 60s: SDKs give up on an export after 10s")
            }
            try queueSection.finish()
        }
        let pipelinesSection = problems.check("service.pipelines") { () throws in try service.section("pipelines") } ?? nil
        _ = problems.check("service") { () throws in try service.finish() }
        guard let pipelinesSection else {
            if !problems.all.contains(where: { $0.key == "service.pipelines" }) {
                problems.record(ConfigurationError(key: "service.pipelines", "required: declare at least a traces pipeline"))
            }
            return
        }
        var sawPipeline = false
        for name in pipelinesSection.keys {
            let path = pipelinesSection.keyPath(name)
            guard ComponentID(name).type == "traces" else {
                _ = pipelinesSection.value(name)
                problems.record(ConfigurationError(key: path, "only traces pipelines exist (traces or traces/NAME)"))
                continue
            }
            sawPipeline = true
            guard let section = problems.check(path, { () throws in try pipelinesSection.section(name) }) ?? nil else { continue }
            var pipeline = PipelineConfiguration(name: name, receivers: [], processors: [], exporters: [])
            pipeline.receivers = Self.list(section, "receivers", declared: receivers, &problems)
            pipeline.processors = Self.list(section, "processors", declared: processors, &problems)
            pipeline.exporters = Self.list(section, "exporters", declared: exporters, &problems)
            _ = problems.check(path) { () throws in try section.finish() }
            for kind in ["receivers", "exporters"] where [nil, .sequence([])].contains(section.value(kind)) {
                problems.record(ConfigurationError(key: section.keyPath(kind), "needs at least one \(kind.dropLast())"))
            }
            // Several pipelines may list one exporter: the collector builds it once and every pipeline that
            // lists it feeds that instance ("multiple pipelines can include the same exporter" — the
            // OpenTelemetry Collector's architecture).
            if !pipeline.receivers.isEmpty, !pipeline.exporters.isEmpty { pipelines.append(pipeline) }
        }
        if !sawPipeline, !problems.all.contains(where: { $0.key.hasPrefix("service.pipelines") }) {
            problems.record(ConfigurationError(key: "service.pipelines", "declare at least one traces pipeline"))
        }
        _ = problems.check("service.pipelines") { () throws in try pipelinesSection.finish() }
    }

    /// The ids a pipeline lists under `kind`, leaving out (and recording) those not declared and repeats.
    private static func list(_ section: ConfigSection, _ kind: String, declared: [(id: ComponentID, value: ConfigValue)],
                             _ problems: inout ConfigurationProblems) -> [ComponentID] {
        guard let names = problems.check(section.keyPath(kind), { () throws in
            try section.stringList(kind, default: [])
        }) else { return [] }
        var ids: [ComponentID] = []
        for id in names.map(ComponentID.init) {
            if !declared.contains(where: { $0.id == id }) {
                problems.record(ConfigurationError(key: section.keyPath(kind), "\(id) is not declared under \(kind):"))
            } else if ids.contains(id) {
                problems.record(ConfigurationError(key: section.keyPath(kind), "\(id) is listed twice"))
            } else {
                ids.append(id)
            }
        }
        return ids
    }

    private static func components(_ root: ConfigSection, _ kind: String,
                                   _ problems: inout ConfigurationProblems) -> [(id: ComponentID, value: ConfigValue)] {
        guard let section = problems.check(kind, { () throws in try root.section(kind) }) ?? nil else { return [] }
        var result: [(id: ComponentID, value: ConfigValue)] = []
        for key in section.keys {
            let id = ComponentID(key)
            guard !id.type.isEmpty else {
                problems.record(ConfigurationError(key: section.keyPath(key), "a component needs a type name"))
                continue
            }
            result.append((id, section.value(key) ?? .null))
        }
        return result
    }
}
