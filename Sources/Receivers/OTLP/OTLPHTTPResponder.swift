import HTTP2
import NIOCore
import NIOHTTP1
import Pipeline
import TraceModel
import TraceWire

/// OTLP/HTTP for traces, as the OTLP specification defines it: `POST /v1/traces` with a binary
/// (`application/x-protobuf`) or JSON (`application/json`) `ExportTraceServiceRequest`, optionally
/// `Content-Encoding: gzip`; the response in the request's content type.
struct OTLPHTTPResponder: HTTP1Responder {
    typealias Format = TraceIngest.Format

    let configuration: OTLPHTTPConfiguration
    /// The shared ingest path.
    let ingest: TraceIngest
    let metrics: OTLPReceiverMetrics
    /// The tokens a request must present; nil lets every request in.
    let tokens: BearerTokens?
    /// The answers that never change, by format, encoded once: a fully accepted request's, and the
    /// 503 a full pipeline gives (under overload that is most answers; encoding each cost 10% of the CPU).
    private let fullyAccepted: [Format: ByteBuffer]
    private let pipelineFull: [Format: ByteBuffer]

    init(configuration: OTLPHTTPConfiguration, sink: any BatchSink, group: any EventLoopGroup, metrics: OTLPReceiverMetrics,
         tokens: BearerTokens? = nil, offload: IngestOffload = .threadPool()) {
        self.configuration = configuration
        ingest = TraceIngest(maxBodySize: configuration.maxRequestBodySize, sink: sink, metrics: metrics, group: group, offload: offload)
        self.metrics = metrics
        self.tokens = tokens
        let codec = OTLPProtobufCodec(initialArenaCapacity: 4096)
        fullyAccepted = [.protobuf: ByteBuffer(bytes: codec.encodeResponse(rejectedSpans: 0, errorMessage: "")),
                         .json: ByteBuffer(bytes: OTLPJSON.encodeResponse(rejectedSpans: 0, errorMessage: ""))]
        pipelineFull = [.protobuf: ByteBuffer(bytes: Self.statusBody(.unavailable, Self.pipelineFullMessage, .protobuf)),
                        .json: ByteBuffer(bytes: Self.statusBody(.unavailable, Self.pipelineFullMessage, .json))]
    }

    static let pipelineFullMessage = "the pipeline is full; retry later"

    var maxBodySize: Int { configuration.maxRequestBodySize }

    static func format(of head: HTTPRequestHead) -> Format? {
        guard let contentType = head.headers.first(name: "content-type") else { return nil }
        return format(mediaType: contentType)
    }

    /// RFC 9110 §8.3.1: the media type before any `;` parameters, case-insensitive, optional whitespace
    /// around it. Compared byte by byte: this runs on every request.
    static func format(mediaType contentType: String) -> Format? {
        var bytes = contentType.utf8[...]
        if let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) { bytes = bytes[..<semicolon] }
        let isWhitespace = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        while let first = bytes.first, isWhitespace(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, isWhitespace(last) { bytes = bytes.dropLast() }
        func matches(_ name: StaticString) -> Bool {
            guard bytes.count == name.utf8CodeUnitCount else { return false }
            return name.withUTF8Buffer { expected in
                zip(bytes, expected).allSatisfy { byte, lower in
                    (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte) == lower
                }
            }
        }
        if matches("application/x-protobuf") || matches("application/protobuf") { return .protobuf }
        if matches("application/json") { return .json }
        return nil
    }

    func respond(toHead head: HTTPRequestHead) -> HTTP1Response? {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let declared = Self.format(of: head)
        let format = declared ?? .json
        // RFC 6750 §3: a request without valid credentials gets 401 with `WWW-Authenticate: Bearer`.
        if let tokens, !tokens.allows(authorization: head.headers.first(name: "authorization")) {
            var response = error(.unauthorized, .unauthenticated, "missing or invalid bearer token", format)
            response.headers.add(name: "www-authenticate", value: head.headers.contains(name: "authorization")
                                 ? #"Bearer realm="agenttrace", error="invalid_token""# : #"Bearer realm="agenttrace""#)
            return response
        }
        guard path == configuration.tracesURLPath else {
            return error(.notFound, .notFound, "no such path: only POST \(configuration.tracesURLPath) is served", format)
        }
        guard head.method == .POST else {
            var response = error(.methodNotAllowed, .unimplemented, "\(head.method) is not allowed; use POST", format)
            response.headers.add(name: "allow", value: "POST")
            return response
        }
        guard declared != nil else {
            let received = head.headers.first(name: "content-type") ?? "none"
            return error(.unsupportedMediaType, .invalidArgument,
                         "unsupported Content-Type \(received); use application/x-protobuf or application/json", .json)
        }
        let encoding = head.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        guard TraceIngest.Compression(name: encoding) != nil else {
            return error(.unsupportedMediaType, .invalidArgument,
                         "unsupported Content-Encoding \(encoding); use gzip or none", format)
        }
        // A full pipeline that does not hold requests refuses on the head: the body is then dropped as it
        // arrives rather than gathered into a buffer only to be refused.
        if ingest.refusesAtOnce { return unavailable(format) }
        return nil
    }

    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response {
        error(.payloadTooLarge, .resourceExhausted,
              "request body exceeds max_request_body_size (\(configuration.maxRequestBodySize) bytes)", Self.format(of: head) ?? .json)
    }

    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> EventLoopFuture<HTTP1Response> {
        // respond(toHead:) has already refused requests without a usable format or encoding.
        let format = Self.format(of: head) ?? .json
        let compression = head.headers.first(name: "content-encoding").flatMap(TraceIngest.Compression.init(name:)) ?? .identity
        let ingest = self.ingest
        return ingest.ingest(.buffer(body), format: format, compression: compression, on: eventLoop).map { outcome in
            response(for: outcome, format: format, head: head, codec: ingest.codec(on: eventLoop))
        }
    }

    /// The HTTP answer for each outcome, with a `google.rpc.Status` body in the request's `format` for errors.
    func response(for outcome: IngestOutcome, format: Format, head: HTTPRequestHead, codec: OTLPProtobufCodec) -> HTTP1Response {
        switch outcome {
        case .accepted(let rejected):
            let body: ByteBuffer
            if rejected == 0, let constant = fullyAccepted[format] {
                body = constant
            } else {
                let bytes: [UInt8] = switch format {
                case .protobuf: codec.encodeResponse(rejectedSpans: rejected, errorMessage: outcome.partialSuccessMessage)
                case .json: OTLPJSON.encodeResponse(rejectedSpans: rejected, errorMessage: outcome.partialSuccessMessage)
                }
                body = ByteBuffer(bytes: bytes)
            }
            metrics.answered("200")
            return HTTP1Response(status: .ok, headers: ["content-type": format.contentType], body: body)
        case .pipelineFull:
            return unavailable(format)
        case .tooLarge:
            return tooLarge(head)
        case .badData(.corruptGzip):
            return error(.badRequest, .invalidArgument, "body is not valid gzip", format)
        case .badData(.undecodable(let reason)):
            return error(.badRequest, .invalidArgument, "cannot decode ExportTraceServiceRequest: \(reason)", format)
        }
    }

    /// 503 with `Retry-After`: "the client SHOULD retry", as the OTLP specification says of 503.
    private func unavailable(_ format: Format) -> HTTP1Response {
        metrics.answered("503")
        return HTTP1Response(status: .serviceUnavailable, headers: ["content-type": format.contentType, "retry-after": "1"],
                             body: pipelineFull[format] ?? ByteBuffer(bytes: Self.statusBody(.unavailable, Self.pipelineFullMessage, format)))
    }

    private func error(_ status: HTTPResponseStatus, _ code: GRPCStatusCode, _ message: String, _ format: Format) -> HTTP1Response {
        metrics.answered(String(status.code))
        return HTTP1Response(status: status, headers: ["content-type": format.contentType], body: ByteBuffer(bytes: Self.statusBody(code, message, format)))
    }

    /// A `google.rpc.Status` in `format`.
    private static func statusBody(_ code: GRPCStatusCode, _ message: String, _ format: Format) -> [UInt8] {
        switch format {
        case .protobuf: OTLPProtobufCodec(initialArenaCapacity: 4096).encodeStatus(code: Int32(code.rawValue), message: message)
        case .json: OTLPJSON.encodeStatus(code: Int32(code.rawValue), message: message)
        }
    }
}

extension TraceIngest.Format {
    /// The `content-type` of requests and answers in this format.
    fileprivate var contentType: String { self == .protobuf ? "application/x-protobuf" : "application/json" }
}
