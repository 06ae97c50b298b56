import HTTP2
import Pipeline
import TraceWire

/// `exporters: jaeger:` settings. Jaeger v2 also takes OTLP: the `otlp` exporter reaches it too.
public struct JaegerExporterConfiguration: Sendable, Equatable {
    /// The collector's gRPC `host:port`, such as `localhost:14250`. Required.
    public var endpoint: Endpoint
    public var common = ExporterCommonConfiguration()

    public init(section: ConfigSection) throws(ConfigurationError) {
        guard let text = try section.optionalString("endpoint") else {
            throw ConfigurationError(key: section.keyPath("endpoint"), "required: host:port of Jaeger's gRPC collector, such as localhost:14250")
        }
        guard let endpoint = Endpoint(text.replacingOccurrences(of: "http://", with: "")) else {
            throw ConfigurationError(key: section.keyPath("endpoint"), "expected host:port, not \"\(text)\"")
        }
        self.endpoint = endpoint
        let protocolName = try section.string("protocol", default: "grpc")
        guard protocolName == "grpc" else {
            throw ConfigurationError(key: section.keyPath("protocol"), "only grpc (api_v2 PostSpans) is supported; use the otlp exporter for Jaeger's OTLP ports")
        }
        common = try ExporterCommonConfiguration(section: section)
        try section.finish()
    }
}

/// Sends each resource's spans as one `jaeger.api_v2.CollectorService/PostSpans` call.
struct JaegerSender: BatchSender {
    static let path = "/jaeger.api_v2.CollectorService/PostSpans"
    let client: GRPCClient
    let timeout: Duration

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        let encoder = JaegerEncoder()
        for batch in JaegerTranslator.batches(from: payload.batch) where !batch.spans.isEmpty {
            try await GRPCCall.unary(client, path: Self.path, message: encoder.postSpansRequest(batch), compressed: false,
                                     metadata: [], timeout: timeout)
        }
        return .unmappable(payload)
    }

    func shutdown() async {
        await client.close()
    }
}

/// Builds `jaeger` exporters.
public struct JaegerExporterFactory: ExporterFactory {
    public let type = "jaeger"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        let configuration = try JaegerExporterConfiguration(section: section)
        let client = GRPCClient(host: configuration.endpoint.host, port: configuration.endpoint.port,
                                configureTransport: try configuration.common.tls?.grpcTransport(host: configuration.endpoint.host))
        let sender = JaegerSender(client: client,
                                  timeout: configuration.common.timeout)
        return QueuedExporter(id: context.id, sender: sender, queue: configuration.common.queue, retry: configuration.common.retry,
                              metrics: context.metrics, logger: context.logger)
    }
}
