import Pipeline
import TraceWire

/// `exporters: zipkin:` settings.
public struct ZipkinExporterConfiguration: Sendable, Equatable {
    /// The Zipkin v2 spans URL, such as `http://localhost:9411/api/v2/spans`. Required.
    public var endpoint: String
    /// `json` (default) or `proto` (zipkin.proto3 ListOfSpans).
    public var format = "json"
    /// gzip the body. Default false.
    public var gzip = false
    public var common = ExporterCommonConfiguration()

    public init(section: ConfigSection) throws(ConfigurationError) {
        guard let endpoint = try section.optionalString("endpoint"), endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw ConfigurationError(key: section.keyPath("endpoint"), "required: a URL such as http://localhost:9411/api/v2/spans")
        }
        self.endpoint = endpoint
        format = try section.string("format", default: format)
        guard format == "json" || format == "proto" else {
            throw ConfigurationError(key: section.keyPath("format"), "expected json or proto")
        }
        gzip = try ExporterCommonConfiguration.gzip(section)
        common = try ExporterCommonConfiguration(section: section)
        try section.finish()
    }
}

/// Builds `zipkin` exporters: Zipkin v2 over HTTP, behind the retrying queue.
public struct ZipkinExporterFactory: ExporterFactory {
    public let type = "zipkin"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        let configuration = try ZipkinExporterConfiguration(section: section)
        let proto = configuration.format == "proto"
        let sender = try HTTPBatchSender(url: configuration.endpoint, headers: [], gzip: configuration.gzip,
                                         timeout: configuration.common.timeout, tls: configuration.common.tls,
                                         readResponse: { payload, _, _ in .unmappable(payload) }) { payload in
            let spans = ZipkinTranslator.spans(from: payload.batch)
            return proto ? (ZipkinEncoder().proto(spans), "application/x-protobuf") : (ZipkinEncoder.json(spans), "application/json")
        }
        return QueuedExporter(id: context.id, sender: sender, queue: configuration.common.queue, retry: configuration.common.retry,
                              metrics: context.metrics, logger: context.logger)
    }
}
