import HTTP2
import NIOCore
import Pipeline
import TraceWire

/// `exporters: otlp:` settings, as the OpenTelemetry Collector's otlp and otlphttp exporters take them.
public struct OTLPExporterConfiguration: Sendable, Equatable {
    public enum TransportProtocol: String, Sendable {
        case grpc, httpProtobuf = "http/protobuf", httpJSON = "http/json"
    }

    /// `grpc` (default), `http/protobuf` or `http/json`.
    public var transport = TransportProtocol.grpc
    /// gRPC: `host:port`. HTTP: a base URL; `/v1/traces` is appended.
    public var endpoint: String
    /// HTTP: the full traces URL, used as given.
    public var tracesEndpoint: String?
    /// Sent as HTTP headers or gRPC metadata.
    public var headers: [(String, String)] = []
    /// Compress with gzip. Default false.
    public var gzip = false
    public var common = ExporterCommonConfiguration()

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.transport == rhs.transport && lhs.endpoint == rhs.endpoint && lhs.tracesEndpoint == rhs.tracesEndpoint
            && lhs.headers.elementsEqual(rhs.headers, by: ==) && lhs.gzip == rhs.gzip && lhs.common == rhs.common
    }

    public init(section: ConfigSection) throws(ConfigurationError) {
        try self.init(section: section, endpoint: nil)
    }

    /// Reads the section; with `endpoint` given (the loadbalancing exporter's template, whose endpoint each
    /// backend fills in) the section must not set one.
    init(section: ConfigSection, endpoint fixedEndpoint: String?) throws(ConfigurationError) {
        let protocolName = try section.string("protocol", default: "grpc")
        guard let transport = TransportProtocol(rawValue: protocolName) else {
            throw ConfigurationError(key: section.keyPath("protocol"), "expected grpc, http/protobuf or http/json")
        }
        self.transport = transport
        if let fixedEndpoint {
            // The Collector's loadbalancing exporter: "the endpoint property should not be set and will be
            // overridden by this exporter with the backend endpoint".
            for key in ["endpoint", "traces_endpoint"] where section.value(key) != nil {
                throw ConfigurationError(key: section.keyPath(key), "set by the resolver for each backend; remove it")
            }
            endpoint = fixedEndpoint
        } else {
            tracesEndpoint = try section.optionalString("traces_endpoint")
            guard let endpoint = try section.optionalString("endpoint") ?? tracesEndpoint else {
                throw ConfigurationError(key: section.keyPath("endpoint"), "required")
            }
            self.endpoint = endpoint
        }
        headers = try ExporterCommonConfiguration.headers(section)
        gzip = try ExporterCommonConfiguration.gzip(section)
        common = try ExporterCommonConfiguration(section: section)
        try section.finish()
        guard fixedEndpoint == nil else { return }
        if transport == .grpc {
            guard grpcEndpoint != nil else {
                throw ConfigurationError(key: section.keyPath("endpoint"), "expected host:port for gRPC, not \"\(endpoint)\"")
            }
        } else {
            guard tracesURL.hasPrefix("http://") || tracesURL.hasPrefix("https://") else {
                throw ConfigurationError(key: section.keyPath("endpoint"), "expected a URL such as http://localhost:4318")
            }
        }
    }

    /// This template's settings for the backend at `host:port`: gRPC dials it as is; HTTP posts to
    /// `http://host:port/v1/traces` (`https://` with `tls:`).
    func forBackend(_ address: String) -> OTLPExporterConfiguration {
        var configuration = self
        configuration.endpoint = transport == .grpc ? address : "\(common.tls == nil ? "http" : "https")://\(address)"
        configuration.tracesEndpoint = nil
        return configuration
    }

    /// gRPC's `host:port` (a leading `http://` is tolerated).
    var grpcEndpoint: Endpoint? {
        var text = endpoint
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text.removeFirst(scheme.count) }
        if text.hasSuffix("/") { text.removeLast() }
        return Endpoint(text)
    }

    /// HTTP's URL: `traces_endpoint`, or `endpoint` + `/v1/traces`.
    var tracesURL: String {
        if let tracesEndpoint { return tracesEndpoint }
        return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
    }
}

/// Forwards `ExportTraceServiceRequest`s over OTLP/gRPC.
struct OTLPGRPCSender: BatchSender {
    static let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    let client: GRPCClient
    let gzip: Bool
    let metadata: [HTTP2Header]
    let timeout: Duration

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        var message = OTLPProtobufWriter.request(payload.batch)
        if gzip {
            do {
                message = Array(try Gzip.deflate(ByteBuffer(bytes: message)).readableBytesView)
            } catch {
                throw .permanent("cannot gzip the request: \(error)")
            }
        }
        let response = try await GRPCCall.unary(client, path: Self.path, message: message, compressed: gzip,
                                                metadata: metadata, timeout: timeout)
        return OTLPPartialSuccess.read(response, json: false)
    }

    func shutdown() async {
        await client.close()
    }
}

/// OTLP's `partial_success` in a successful `ExportTraceServiceResponse`.
///
/// The OTLP specification: "If the request is only partially accepted (i.e. when the server accepts only
/// parts of the data and rejects the rest), the server MUST respond with [success] and populate the
/// partial_success field"; the client "MUST NOT retry the request" for the rejected part.
enum OTLPPartialSuccess {
    /// What `body` (protobuf, or OTLP/JSON when `json`) says was rejected; an empty or unreadable body is a
    /// full success, as the status already said.
    static func read(_ body: [UInt8], json: Bool) -> SendResult {
        guard !body.isEmpty else { return .accepted }
        let decoded: (rejectedSpans: Int64, errorMessage: String)
        do {
            decoded = json ? try OTLPJSON.decodeResponse(body)
                : try OTLPProtobufCodec(initialArenaCapacity: 4 << 10).decodeResponse(body)
        } catch {
            return .accepted
        }
        return SendResult(rejectedSpans: Int(clamping: max(0, decoded.rejectedSpans)), errorMessage: decoded.errorMessage)
    }

    /// An OTLP/HTTP response: "The server MUST use the same 'Content-Type' in the response as it received
    /// in the request", so a response without one is read in the request's encoding.
    static func readHTTP(_ body: [UInt8], contentType: String?, requestWasJSON: Bool) -> SendResult {
        let json = contentType.map { $0.lowercased().hasPrefix("application/json") } ?? requestWasJSON
        return read(body, json: json)
    }
}

/// Builds `otlp` exporters.
public struct OTLPExporterFactory: ExporterFactory {
    public let type = "otlp"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        let configuration = try OTLPExporterConfiguration(section: section)
        return QueuedExporter(id: context.id, sender: try Self.makeSender(configuration), queue: configuration.common.queue,
                              retry: configuration.common.retry, metrics: context.metrics, logger: context.logger)
    }

    /// The sender for one configured endpoint (its transport, TLS, headers, compression and timeout).
    static func makeSender(_ configuration: OTLPExporterConfiguration) throws -> any BatchSender {
        let sender: any BatchSender
        switch configuration.transport {
        case .grpc:
            guard let endpoint = configuration.grpcEndpoint else {
                throw ConfigurationError(key: "endpoint", "expected host:port for gRPC, not \"\(configuration.endpoint)\"")
            }
            let tls = configuration.common.tls ?? (configuration.endpoint.hasPrefix("https://") ? TLSClientSettings() : nil)
            let client = GRPCClient(host: endpoint.host, port: endpoint.port,
                                    configureTransport: try tls?.grpcTransport(host: endpoint.host))
            sender = OTLPGRPCSender(client: client, gzip: configuration.gzip,
                                    metadata: configuration.headers.map { ($0.0, $0.1) }, timeout: configuration.common.timeout)
        case .httpProtobuf:
            sender = try HTTPBatchSender(url: configuration.tracesURL, headers: configuration.headers, gzip: configuration.gzip,
                                         timeout: configuration.common.timeout, tls: configuration.common.tls,
                                         readResponse: { OTLPPartialSuccess.readHTTP($1, contentType: $2, requestWasJSON: false) }) { payload in
                (OTLPProtobufWriter.request(payload.batch), "application/x-protobuf")
            }
        case .httpJSON:
            sender = try HTTPBatchSender(url: configuration.tracesURL, headers: configuration.headers, gzip: configuration.gzip,
                                         timeout: configuration.common.timeout, tls: configuration.common.tls,
                                         readResponse: { OTLPPartialSuccess.readHTTP($1, contentType: $2, requestWasJSON: true) }) { payload in
                (OTLPJSON.encodeRequest(payload.batch), "application/json")
            }
        }
        return sender
    }
}
