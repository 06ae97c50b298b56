import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// Keeps the traces the pipeline exported in memory, bounded (`TraceStore`), for the Jaeger-shaped query
/// API it serves on the admin port (`MemoryExporter+AdminRoutes.swift`, docs/trace-query.md).
public final class MemoryExporter: SpanExporter, Sendable {
    /// `exporters: memory:` settings.
    public struct Configuration: Sendable, Equatable {
        /// At most this many traces are kept; the oldest is evicted first. Default 10,000.
        public var maxTraces = 10_000
        /// At most this many bytes, estimated from the spans' strings, tags and events. Default 256 MiB.
        public var maxBytes = 256 << 20

        /// The defaults.
        public init() {}

        /// Reads the section (`max_traces`, `max_bytes`), failing on unknown keys or bad values.
        public init(section: ConfigSection) throws(ConfigurationError) {
            maxTraces = try section.int("max_traces", default: maxTraces)
            maxBytes = try section.int("max_bytes", default: maxBytes)
            try section.finish()
            try validate(path: section.path)
        }

        /// Fails, naming the key, when a bound is below 1.
        public func validate(path: String = "") throws(ConfigurationError) {
            let prefix = path.isEmpty ? "" : "\(path)."
            guard maxTraces >= 1 else { throw ConfigurationError(key: "\(prefix)max_traces", "must be at least 1, got \(maxTraces)") }
            guard maxBytes >= 1 else { throw ConfigurationError(key: "\(prefix)max_bytes", "must be at least 1, got \(maxBytes)") }
        }
    }

    let store: Mutex<TraceStore>
    private let evicted: Counter

    /// An exporter whose store has `configuration`'s bounds; metrics are labelled with `id`.
    public init(configuration: Configuration, id: String = "memory", metrics: SelfMetrics = SelfMetrics()) {
        store = Mutex(TraceStore(maxTraces: configuration.maxTraces, maxBytes: configuration.maxBytes))
        let labels = [("exporter", id)]
        evicted = metrics.counter("agenttrace_memory_evicted_traces_total",
                                  help: "Traces the memory exporter evicted, oldest first, to stay within max_traces and max_bytes.",
                                  labels: labels)
        let traces = metrics.gauge("agenttrace_memory_traces", help: "Traces the memory exporter holds.", labels: labels)
        let bytes = metrics.gauge("agenttrace_memory_estimated_bytes",
                                  help: "The memory exporter's estimate of the bytes its traces take.", labels: labels)
        metrics.onScrape { [weak self] in
            guard let self else { return }
            let (count, size) = store.withLock { ($0.count, $0.estimatedBytes) }
            traces.set(Double(count))
            bytes.set(Double(size))
        }
    }

    public func start() {}

    public func export(_ batch: SpanBatch) {
        let count = store.withLock { $0.insert(batch) }
        if count > 0 { evicted.increment(by: Int64(count)) }
    }

    public func shutdown() {}
}

/// Builds `memory` exporters.
public struct MemoryExporterFactory: ExporterFactory {
    public let type = "memory"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        MemoryExporter(configuration: try MemoryExporter.Configuration(section: section), id: context.id.description,
                       metrics: context.metrics)
    }
}
