import NIOCore
import NIOEmbedded
import NIOHTTP1
import Pipeline
import Synchronization
import Testing
import TraceModel
import TraceWire
@testable import Receivers


@Suite("OTLP/HTTP responder")
struct OTLPHTTPResponderTests {
    let loop = EmbeddedEventLoop()

    func responder(sink: RecordingSink, limit: Int = 1 << 20) -> OTLPHTTPResponder {
        var configuration = OTLPHTTPConfiguration()
        configuration.maxRequestBodySize = limit
        return OTLPHTTPResponder(configuration: configuration, sink: sink, group: loop,
                                 metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "http", metrics: SelfMetrics()),
                                 offload: RecordingOffload().offload)
    }

    func head(_ method: HTTPMethod = .POST, _ uri: String = "/v1/traces", type: String? = "application/x-protobuf",
              encoding: String? = nil) -> HTTPRequestHead {
        var headers = HTTPHeaders()
        if let type { headers.add(name: "content-type", value: type) }
        if let encoding { headers.add(name: "content-encoding", value: encoding) }
        return HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
    }

    @Test("RFC 9110 §8.3.1: the media type is case-insensitive, parameters and surrounding whitespace ignored", arguments: [
        ("application/x-protobuf", TraceIngest.Format.protobuf), ("application/protobuf", .protobuf),
        ("Application/X-Protobuf; charset=binary", .protobuf), ("application/json", .json),
        (" APPLICATION/JSON ;charset=utf-8", .json), ("\tapplication/json\t", .json),
    ])
    func mediaTypes(contentType: String, expected: TraceIngest.Format) {
        #expect(OTLPHTTPResponder.format(mediaType: contentType) == expected)
    }

    @Test("other media types, and near misses, have no format", arguments: [
        "", ";", "text/plain", "application/jsonl", "application/json-seq", "application/x-protobu", "application/ json",
        "application/xprotobuf", "multipart/form-data; boundary=x",
    ])
    func otherMediaTypes(contentType: String) {
        #expect(OTLPHTTPResponder.format(mediaType: contentType) == nil)
    }

    func request(spans: [Span]) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: spans)])])
    }

    @Test("routing: 404 for other paths, 405 for other methods, 415 for other types and encodings")
    func routing() {
        let responder = responder(sink: RecordingSink())
        #expect(responder.respond(toHead: head(.POST, "/v1/logs"))?.status == .notFound)
        #expect(responder.respond(toHead: head(.GET))?.status == .methodNotAllowed)
        #expect(responder.respond(toHead: head(type: "text/plain"))?.status == .unsupportedMediaType)
        #expect(responder.respond(toHead: head(type: nil))?.status == .unsupportedMediaType)
        #expect(responder.respond(toHead: head(encoding: "br"))?.status == .unsupportedMediaType)
        #expect(responder.respond(toHead: head(type: "application/json; charset=utf-8")) == nil)
        #expect(responder.respond(toHead: head(.POST, "/v1/traces?x=1")) == nil)
    }

    @Test("a valid protobuf request is accepted whole and answered with an empty response")
    func accepted() throws {
        let sink = RecordingSink()
        let batch = request(spans: [Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "ok")])
        let body = ByteBuffer(bytes: OTLPProtobufCodec().encodeRequest(batch))
        let response = try responder(sink: sink).respond(to: head(), body: body, eventLoop: loop).completedValue()
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "content-type") == "application/x-protobuf")
        #expect(response.body?.readableBytes == 0)
        #expect(sink.received.withLock { $0 } == [batch])
    }

    @Test("invalid ids are dropped and reported as partial success")
    func partialSuccess() throws {
        let sink = RecordingSink()
        let batch = request(spans: [
            Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3)),
            Span(traceID: .zero, spanID: SpanID(4)),
            Span(traceID: TraceID(high: 1, low: 2), spanID: .zero),
        ])
        let body = ByteBuffer(bytes: OTLPJSON.encodeRequest(batch))
        let response = try responder(sink: sink).respond(to: head(type: "application/json"), body: body, eventLoop: loop).completedValue()
        #expect(response.status == .ok)
        let partial = try OTLPJSON.decodeResponse(Array(response.body!.readableBytesView))
        #expect(partial.rejectedSpans == 2)
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
    }

    @Test("undecodable bodies get 400 with a google.rpc.Status in the request's format")
    func badRequest() throws {
        let responder = responder(sink: RecordingSink())
        let protobuf = try responder.respond(to: head(), body: ByteBuffer(bytes: [0xFF, 0xFF]), eventLoop: loop).completedValue()
        #expect(protobuf.status == .badRequest)
        let status = try OTLPProtobufCodec().decodeStatus(Array(protobuf.body!.readableBytesView))
        #expect(status.code == 3)
        let json = try responder.respond(to: head(type: "application/json"), body: ByteBuffer(string: "{"), eventLoop: loop).completedValue()
        #expect(json.status == .badRequest)
        #expect(String(buffer: json.body!).hasPrefix("{\"code\":3,"))
        let gzip = try responder.respond(to: head(encoding: "gzip"), body: ByteBuffer(string: "not gzip"), eventLoop: loop).completedValue()
        #expect(gzip.status == .badRequest)
    }

    @Test("a gzip body inflating past the limit is 413")
    func gzipBomb() throws {
        let bomb = try Gzip.deflate(ByteBuffer(bytes: Array(repeating: 0, count: 4 << 20)))
        let response = try responder(sink: RecordingSink(), limit: 1 << 20).respond(to: head(encoding: "gzip"), body: bomb, eventLoop: loop).completedValue()
        #expect(response.status == .payloadTooLarge)
    }

    @Test("a full pipeline answers 503 with Retry-After, and nothing is half-accepted")
    func backpressure() throws {
        let sink = RecordingSink(accepting: false)
        let batch = request(spans: [Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3))])
        let response = try responder(sink: sink).respond(to: head(), body: ByteBuffer(bytes: OTLPProtobufCodec().encodeRequest(batch)), eventLoop: loop).completedValue()
        #expect(response.status == .serviceUnavailable)
        #expect(response.headers.first(name: "retry-after") == "1")
    }
}
