import Pipeline
import TraceModel

/// Discards every batch (counted as sent). For benchmarks and for pipelines that only feed the service graph.
public struct NopExporter: SpanExporter {
    public init() {}
    public func start() {}
    public func export(_ batch: SpanBatch) {}
    public func shutdown() {}
}

/// Builds `nop` exporters.
public struct NopExporterFactory: ExporterFactory {
    public let type = "nop"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        try section.finish()
        return NopExporter()
    }
}
