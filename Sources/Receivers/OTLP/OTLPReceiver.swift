import Logging
import NIOCore
import NIOPosix
import Pipeline
import ServiceLifecycle

/// The `otlp` receiver: OTLP over HTTP (protobuf and JSON) today; gRPC joins it under `protocols:`.
public struct OTLPReceiverConfiguration: Sendable, Equatable {
    /// `protocols: http:` settings; nil when the protocol is not configured.
    public var http: OTLPHTTPConfiguration?

    public init(http: OTLPHTTPConfiguration? = OTLPHTTPConfiguration()) {
        self.http = http
    }

    /// Reads `receivers: otlp:`, failing on unknown keys or bad values.
    public init(section: ConfigSection) throws(ConfigurationError) {
        guard let protocols = try section.section("protocols") else {
            throw ConfigurationError(key: section.keyPath("protocols"), "required: configure at least one of http")
        }
        http = try protocols.section("http").map { (http) throws(ConfigurationError) in try OTLPHTTPConfiguration(section: http) }
        if protocols.value("grpc") != nil {
            throw ConfigurationError(key: protocols.keyPath("grpc"), "OTLP/gRPC is not available in this build yet")
        }
        try protocols.finish()
        try section.finish()
        guard http != nil else {
            throw ConfigurationError(key: section.keyPath("protocols"), "configure at least one of http")
        }
    }
}

/// `receivers: otlp: protocols: http:` settings.
public struct OTLPHTTPConfiguration: Sendable, Equatable {
    /// Where to listen. Default `localhost:4318`; use `0.0.0.0:4318` to accept from other hosts.
    public var endpoint = Endpoint(host: "localhost", port: 4318)
    /// The largest request body, in bytes, after gzip decompression. Default 64 MiB.
    public var maxRequestBodySize = 64 << 20
    /// The path traces are posted to. Default `/v1/traces`.
    public var tracesURLPath = "/v1/traces"

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        endpoint = try section.endpoint("endpoint", default: endpoint)
        maxRequestBodySize = try section.int("max_request_body_size", default: maxRequestBodySize, in: 1...(1 << 30))
        tracesURLPath = try section.string("traces_url_path", default: tracesURLPath)
        guard tracesURLPath.hasPrefix("/") else {
            throw ConfigurationError(key: section.keyPath("traces_url_path"), "must start with /")
        }
        try section.finish()
    }
}

/// Builds `otlp` receivers.
public struct OTLPReceiverFactory: ReceiverFactory {
    public let type = "otlp"
    private let group: any EventLoopGroup

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    public func makeReceiver(section: ConfigSection, context: ComponentContext, sink: any BatchSink) throws -> [any Service] {
        let configuration = try OTLPReceiverConfiguration(section: section)
        var services: [any Service] = []
        if let http = configuration.http {
            let responder = OTLPHTTPResponder(configuration: http, sink: sink, group: group,
                                              metrics: OTLPReceiverMetrics(receiver: context.id.description, transport: "http",
                                                                           metrics: context.metrics))
            services.append(HTTP1Server(endpoint: http.endpoint, responder: responder, group: group, logger: context.logger) { address in
                context.announceListening("http", address)
            })
        }
        return services
    }
}
