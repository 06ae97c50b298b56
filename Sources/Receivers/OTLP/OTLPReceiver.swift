import HTTP2
import Logging
import NIOCore
import NIOPosix
import Pipeline
import ServerSupport
import ServiceLifecycle

/// The `otlp` receiver: OTLP over gRPC and over HTTP (protobuf and JSON), each under `protocols:`.
public struct OTLPReceiverConfiguration: Sendable, Equatable {
    /// `protocols: grpc:` settings; nil when the protocol is not configured.
    public var grpc: OTLPGRPCConfiguration?
    /// `protocols: http:` settings; nil when the protocol is not configured.
    public var http: OTLPHTTPConfiguration?

    public init(grpc: OTLPGRPCConfiguration? = OTLPGRPCConfiguration(), http: OTLPHTTPConfiguration? = OTLPHTTPConfiguration()) {
        self.grpc = grpc
        self.http = http
    }

    /// Reads `receivers: otlp:`, failing on unknown keys or bad values.
    public init(section: ConfigSection) throws(ConfigurationError) {
        guard let protocols = try section.section("protocols") else {
            throw ConfigurationError(key: section.keyPath("protocols"), "required: configure grpc, http or both")
        }
        grpc = try protocols.section("grpc").map { (grpc) throws(ConfigurationError) in try OTLPGRPCConfiguration(section: grpc) }
        http = try protocols.section("http").map { (http) throws(ConfigurationError) in try OTLPHTTPConfiguration(section: http) }
        try protocols.finish()
        try section.finish()
        guard grpc != nil || http != nil else {
            throw ConfigurationError(key: section.keyPath("protocols"), "configure grpc, http or both")
        }
    }
}

/// `receivers: otlp: protocols: grpc:` settings, named as the OpenTelemetry Collector names them.
public struct OTLPGRPCConfiguration: Sendable, Equatable {
    /// Where to listen. Default `localhost:4317`; use `0.0.0.0:4317` to accept from other hosts.
    public var endpoint = Endpoint(host: "localhost", port: 4317)
    /// The largest request message, in MiB, after decompression. Default 4.
    public var maxReceiveMessageSizeMiB = 4
    /// Concurrent streams per connection. Default 100.
    public var maxConcurrentStreams = 100
    /// `keepalive: server_parameters: max_connection_idle`: close a connection idle this long. Default: never.
    public var maxConnectionIdle: Duration?
    /// `max_connections`, `read_header_timeout` (the preface, each frame and header block; default 10s)
    /// and `read_timeout` (a whole call after its HEADERS, else DEADLINE_EXCEEDED; default 60s).
    public var limits = ConnectionLimits(maxConnections: ListenerDefaults.maxConnections,
                                         readHeaderTimeout: ListenerDefaults.readHeaderTimeout, readTimeout: ListenerDefaults.readTimeout)
    /// `max_header_list_size`: request header bytes (HTTP/2 accounting, 32 per field extra). Default 16384.
    public var maxHeaderListSize = 16_384
    /// `auth:` bearer tokens; nil (the default) lets every call in.
    public var auth: BearerAuthConfiguration?
    /// `tls:`; nil (the default) serves h2c (plain text).
    public var tls: TLSServerConfiguration?

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        endpoint = try section.endpoint("endpoint", default: endpoint)
        maxReceiveMessageSizeMiB = try section.int("max_recv_msg_size_mib", default: maxReceiveMessageSizeMiB, in: 1...1024)
        maxConcurrentStreams = try section.int("max_concurrent_streams", default: maxConcurrentStreams, in: 1...100_000)
        limits = try section.connectionLimits()
        maxHeaderListSize = try section.int("max_header_list_size", default: maxHeaderListSize, in: 1024...(1 << 20))
        auth = try section.bearerAuth()
        tls = try section.tlsServer()
        if let keepalive = try section.section("keepalive") {
            if let server = try keepalive.section("server_parameters") {
                let idle = try server.duration("max_connection_idle", default: .zero)
                maxConnectionIdle = idle > .zero ? idle : nil
                try server.finish()
            }
            try keepalive.finish()
        }
        try section.finish()
    }

    /// The HTTP/2 server's settings.
    var server: GRPCServerConfiguration {
        var configuration = GRPCServerConfiguration(host: endpoint.host, port: endpoint.port)
        configuration.settings.maxConcurrentStreams = UInt32(maxConcurrentStreams)
        configuration.settings.maxHeaderListSize = UInt32(maxHeaderListSize)
        configuration.maxConnectionIdle = maxConnectionIdle
        configuration.limits = limits
        return configuration
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
    /// Timeouts, header and connection limits (defaults in `HTTP1Limits` and `ListenerDefaults`).
    public var limits = HTTP1Limits(connection: ConnectionLimits(maxConnections: ListenerDefaults.maxConnections,
                                                                 readHeaderTimeout: ListenerDefaults.readHeaderTimeout,
                                                                 readTimeout: ListenerDefaults.readTimeout),
                                    idleTimeout: ListenerDefaults.idleTimeout)
    /// `auth:` bearer tokens; nil (the default) lets every request in.
    public var auth: BearerAuthConfiguration?
    /// `tls:`; nil (the default) serves plain HTTP.
    public var tls: TLSServerConfiguration?

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        endpoint = try section.endpoint("endpoint", default: endpoint)
        limits = try HTTP1Limits(section: section)
        auth = try section.bearerAuth()
        tls = try section.tlsServer()
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
        if let grpc = configuration.grpc {
            let metrics = OTLPReceiverMetrics(receiver: context.id.description, transport: "grpc", metrics: context.metrics)
            let service = OTLPGRPCService(maxReceiveMessageSize: grpc.maxReceiveMessageSizeMiB << 20, sink: sink, group: group,
                                          metrics: metrics, tokens: grpc.auth.map(BearerTokens.init))
            let tls = try grpc.tls.map { try TLSServer(configuration: $0, alpn: ["h2"]) }
            services.append(GRPCServer(configuration: grpc.server, service: service, group: group, logger: context.logger,
                                       events: metrics.connectionEvents,
                                       configureTransport: tls?.configureTransport(events: metrics.connectionEvents),
                                       name: "receivers.\(context.id).protocols.grpc") { address in
                context.announceListening("grpc", address)
            })
        }
        if let http = configuration.http {
            let metrics = OTLPReceiverMetrics(receiver: context.id.description, transport: "http", metrics: context.metrics)
            let responder = OTLPHTTPResponder(configuration: http, sink: sink, group: group, metrics: metrics,
                                              tokens: http.auth.map(BearerTokens.init))
            let tls = try http.tls.map { try TLSServer(configuration: $0, alpn: ["http/1.1"]) }
            services.append(HTTP1Server(endpoint: http.endpoint, responder: responder, group: group, limits: http.limits,
                                        events: metrics.connectionEvents,
                                        configureTransport: tls?.configureTransport(events: metrics.connectionEvents),
                                        logger: context.logger, name: "receivers.\(context.id).protocols.http") { address in
                context.announceListening("http", address)
            })
        }
        return services
    }
}
