import Logging
import Pipeline
import TraceModel

/// Logs a one-line summary of every batch: spans, resources, services and traces. For trying things out.
public struct DebugExporter: SpanExporter {
    /// `exporters: debug:` settings.
    public struct Configuration: Sendable, Equatable {
        /// `basic` (default) logs the summary line; `detailed` adds one line per span.
        public var verbosity = "basic"

        public init() {}

        public init(section: ConfigSection) throws(ConfigurationError) {
            verbosity = try section.string("verbosity", default: verbosity)
            guard ["basic", "normal", "detailed"].contains(verbosity) else {
                throw ConfigurationError(key: section.keyPath("verbosity"), "expected basic, normal or detailed")
            }
            try section.finish()
        }
    }

    private let configuration: Configuration
    private let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func start() {}

    public func export(_ batch: SpanBatch) {
        var services: Set<String> = []
        var traces: Set<TraceID> = []
        batch.forEachSpan { span, resource, _ in
            services.insert(resource.serviceName ?? "unknown_service")
            traces.insert(span.traceID)
        }
        logger.info("traces", metadata: [
            "spans": "\(batch.spanCount)", "resources": "\(batch.resourceSpans.count)",
            "traces": "\(traces.count)", "services": "\(services.sorted().joined(separator: ","))",
        ])
        guard configuration.verbosity == "detailed" else { return }
        batch.forEachSpan { span, resource, _ in
            logger.info("span", metadata: [
                "service": "\(resource.serviceName ?? "unknown_service")", "name": "\(span.name)",
                "trace_id": "\(span.traceID.hex)", "span_id": "\(span.spanID.hex)",
                "duration_ms": "\(Double(span.durationNanos) / 1e6)", "status": "\(span.status.code)",
            ])
        }
    }

    public func shutdown() {}
}

/// Builds `debug` exporters.
public struct DebugExporterFactory: ExporterFactory {
    public let type = "debug"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        DebugExporter(configuration: try DebugExporter.Configuration(section: section), logger: context.logger)
    }
}
