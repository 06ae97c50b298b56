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
    enum Format {
        case protobuf, json

        var contentType: String { self == .protobuf ? "application/x-protobuf" : "application/json" }
    }

    let configuration: OTLPHTTPConfiguration
    let sink: any BatchSink
    let metrics: OTLPReceiverMetrics
    /// The tokens a request must present; nil lets every request in.
    let tokens: BearerTokens?
    private let codecs: PerEventLoopCodecs

    init(configuration: OTLPHTTPConfiguration, sink: any BatchSink, group: any EventLoopGroup, metrics: OTLPReceiverMetrics,
         tokens: BearerTokens? = nil) {
        self.configuration = configuration
        self.sink = sink
        self.metrics = metrics
        self.tokens = tokens
        codecs = PerEventLoopCodecs(group: group)
    }

    var maxBodySize: Int { configuration.maxRequestBodySize }

    static func format(of head: HTTPRequestHead) -> Format? {
        guard let contentType = head.headers.first(name: "content-type") else { return nil }
        let mediaType = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        }
        switch mediaType {
        case "application/x-protobuf", "application/protobuf": return .protobuf
        case "application/json": return .json
        default: return nil
        }
    }

    func respond(toHead head: HTTPRequestHead) -> HTTP1Response? {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let format = Self.format(of: head) ?? .json
        // RFC 6750 §3: a request without valid credentials gets 401 with `WWW-Authenticate: Bearer`.
        if let tokens, !tokens.allows(authorization: head.headers.first(name: "authorization")) {
            var response = error(.unauthorized, GRPCStatusCode.unauthenticated, "missing or invalid bearer token", format)
            response.headers.add(name: "www-authenticate", value: head.headers.contains(name: "authorization")
                                 ? #"Bearer realm="agenttrace", error="invalid_token""# : #"Bearer realm="agenttrace""#)
            return response
        }
        guard path == configuration.tracesURLPath else {
            return error(.notFound, GRPCStatusCode.notFound, "no such path: only POST \(configuration.tracesURLPath) is served", format)
        }
        guard head.method == .POST else {
            var response = error(.methodNotAllowed, GRPCStatusCode.unimplemented, "\(head.method) is not allowed; use POST", format)
            response.headers.add(name: "allow", value: "POST")
            return response
        }
        guard Self.format(of: head) != nil else {
            let received = head.headers.first(name: "content-type") ?? "none"
            return error(.unsupportedMediaType, GRPCStatusCode.invalidArgument,
                         "unsupported Content-Type \(received); use application/x-protobuf or application/json", .json)
        }
        let encoding = head.headers.first(name: "content-encoding")?.lowercased() ?? "identity"
        guard encoding == "gzip" || encoding == "identity" else {
            return error(.unsupportedMediaType, GRPCStatusCode.invalidArgument,
                         "unsupported Content-Encoding \(encoding); use gzip or none", format)
        }
        return nil
    }

    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response {
        error(.payloadTooLarge, GRPCStatusCode.resourceExhausted,
              "request body exceeds max_request_body_size (\(configuration.maxRequestBodySize) bytes)", Self.format(of: head) ?? .json)
    }

    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> HTTP1Response {
        // respond(toHead:) has already refused requests without a usable format.
        let format = Self.format(of: head) ?? .json
        var body = body
        if head.headers.first(name: "content-encoding")?.lowercased() == "gzip" {
            do {
                body = try Gzip.inflate(body, limit: configuration.maxRequestBodySize)
            } catch .tooLarge {
                return tooLarge(head)
            } catch {
                metrics.decodeFailed("gzip")
                return self.error(.badRequest, GRPCStatusCode.invalidArgument, "body is not valid gzip", format)
            }
        }
        // A full pipeline refuses at once: decoding a request it cannot take would only take time
        // from the pipeline that has to catch up.
        guard !sink.isFull else { return unavailable(format) }
        let codec = codecs.codec(on: eventLoop)
        var batch: SpanBatch
        do {
            switch format {
            case .protobuf:
                batch = try body.withUnsafeReadableBytes { buffer in
                    try codec.decodeRequest(buffer)
                }
            case .json:
                batch = try body.withUnsafeReadableBytes { try OTLPJSON.decodeRequest($0) }
            }
        } catch {
            metrics.decodeFailed(format == .protobuf ? "protobuf" : "json")
            return self.error(.badRequest, GRPCStatusCode.invalidArgument, "cannot decode ExportTraceServiceRequest: \(error)", format)
        }

        let rejected = SpanValidation.dropInvalidSpans(&batch)
        if rejected > 0 { metrics.refusedSpans.increment(by: Int64(rejected)) }
        let accepted = batch.spanCount
        if accepted > 0 {
            guard sink.offer(batch) else {
                metrics.refusedSpans.increment(by: Int64(accepted))
                return unavailable(format)
            }
            metrics.acceptedSpans.increment(by: Int64(accepted))
        }
        let message = rejected > 0 ? SpanValidation.rejectionMessage(rejected) : ""
        let responseBody: [UInt8] = switch format {
        case .protobuf: codec.encodeResponse(rejectedSpans: rejected, errorMessage: message)
        case .json: OTLPJSON.encodeResponse(rejectedSpans: rejected, errorMessage: message)
        }
        metrics.answered("200")
        return HTTP1Response(status: .ok, headers: ["content-type": format.contentType], body: ByteBuffer(bytes: responseBody))
    }

    /// 503 with `Retry-After`: "the client SHOULD retry", as the OTLP specification says of 503.
    private func unavailable(_ format: Format) -> HTTP1Response {
        var response = error(.serviceUnavailable, GRPCStatusCode.unavailable, "the pipeline is full; retry later", format)
        response.headers.add(name: "retry-after", value: "1")
        return response
    }

    private func error(_ status: HTTPResponseStatus, _ code: GRPCStatusCode, _ message: String, _ format: Format) -> HTTP1Response {
        metrics.answered(String(status.code))
        let body: [UInt8] = switch format {
        case .protobuf: OTLPProtobufCodec(initialArenaCapacity: 4096).encodeStatus(code: Int32(code.rawValue), message: message)
        case .json: OTLPJSON.encodeStatus(code: Int32(code.rawValue), message: message)
        }
        return HTTP1Response(status: status, headers: ["content-type": format.contentType], body: ByteBuffer(bytes: body))
    }
}

/// The checks OTLP asks of receivers before spans enter the pipeline.
public enum SpanValidation {
    /// Drops spans whose trace id is not 16 non-zero bytes or whose span id is not 8 non-zero bytes
    /// (decoders turn malformed ids into zero ids); returns how many were dropped.
    public static func dropInvalidSpans(_ batch: inout SpanBatch) -> Int {
        let before = batch.spanCount
        // Reads the ids in place: copying each span out would retain and release all its fields.
        let anyInvalid = batch.resourceSpans.contains { resourceSpans in
            resourceSpans.scopeSpans.contains { scopeSpans in
                scopeSpans.spans.contains { !$0.traceID.isValid || !$0.spanID.isValid }
            }
        }
        guard anyInvalid else { return 0 }
        batch.filterSpans { $0.traceID.isValid && $0.spanID.isValid }
        return before - batch.spanCount
    }

    /// The `partial_success.error_message` for dropped spans.
    public static func rejectionMessage(_ count: Int) -> String {
        "\(count) span(s) dropped: trace id must be 16 non-zero bytes and span id 8 non-zero bytes"
    }
}
