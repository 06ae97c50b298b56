import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Pipeline
import Testing
import TraceModel
import TraceWire
@testable import Receivers

/// An offload that keeps its work until the test runs it, as a thread pool would finish it later.
final class DeferredOffload: Sendable {
    let pending = NIOLockedValueBox<[(EventLoopPromise<DecodedRequest>, @Sendable () -> DecodedRequest)]>([])

    var offload: IngestOffload {
        IngestOffload { [pending] eventLoop, work in
            let promise = eventLoop.makePromise(of: DecodedRequest.self)
            pending.withLockedValue { $0.append((promise, work)) }
            return promise.futureResult
        }
    }

    /// Runs every kept piece of work and completes its future.
    func finish() {
        for (promise, work) in pending.withLockedValue({ kept in defer { kept = [] }; return kept }) { promise.succeed(work()) }
    }
}

/// One parsed HTTP/1.1 response (RFC 9112: status line, header fields, then `content-length` bytes).
struct ParsedResponse {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }

    /// Every complete response in `bytes`, in order.
    static func all(in bytes: [UInt8]) -> [ParsedResponse] {
        var responses: [ParsedResponse] = []
        var rest = bytes[...]
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while let end = rest.firstRange(of: separator) {
            let head = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
            guard let statusLine = head.first, let status = Int(statusLine.split(separator: " ")[1]) else { break }
            let headers = head.dropFirst().compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            var response = ParsedResponse(status: status, headers: headers, body: [])
            let length = response.header("content-length").flatMap(Int.init) ?? 0
            let bodyStart = end.upperBound
            guard rest.distance(from: bodyStart, to: rest.endIndex) >= length else { break }
            response.body = Array(rest[bodyStart..<rest.index(bodyStart, offsetBy: length)])
            responses.append(response)
            rest = rest[rest.index(bodyStart, offsetBy: length)...]
        }
        return responses
    }
}

/// `HTTP1RequestHandler` behind the same pipeline `HTTP1Server` builds, in an `EmbeddedChannel`.
struct HTTP1Connection {
    let channel: EmbeddedChannel

    init(responder: any HTTP1Responder) throws {
        channel = EmbeddedChannel()
        let limits = HTTP1Limits()
        try channel.pipeline.syncOperations.addHandler(HTTP1ConnectionGuard(limits: limits, events: .ignored))
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(HTTP1RequestHandler(responder: responder, limits: limits))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4318)).wait()
    }

    /// Sends raw bytes; returns every response written so far.
    func send(_ bytes: [UInt8]) throws -> [ParsedResponse] {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        return try responses()
    }

    /// The responses written so far.
    func responses() throws -> [ParsedResponse] {
        var out: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += buffer.readableBytesView }
        return ParsedResponse.all(in: out)
    }

    /// A `POST /v1/traces` request with `body`.
    static func post(_ body: [UInt8], type: String = "application/x-protobuf", contentLength: Int? = nil) -> [UInt8] {
        Array("POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: \(type)\r\nContent-Length: \(contentLength ?? body.count)\r\n\r\n".utf8) + body
    }
}

@Suite("HTTP1RequestHandler in an EmbeddedChannel")
struct HTTP1ServerTests {
    let valid = Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "ok")

    func responder(_ sink: RecordingSink, limit: Int = 1 << 20, offload: IngestOffload = RecordingOffload().offload) -> OTLPHTTPResponder {
        var configuration = OTLPHTTPConfiguration()
        configuration.maxRequestBodySize = limit
        return OTLPHTTPResponder(configuration: configuration, sink: sink, group: EmbeddedEventLoop(),
                                 metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "http", metrics: SelfMetrics()), offload: offload)
    }

    func request(_ spans: [Span]) -> [UInt8] {
        OTLPProtobufCodec().encodeRequest(SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: spans)])]))
    }

    @Test("a good request is answered 200 with an empty ExportTraceServiceResponse, and its spans are taken")
    func goodRequest() throws {
        let sink = RecordingSink()
        let connection = try HTTP1Connection(responder: responder(sink))
        let responses = try connection.send(HTTP1Connection.post(request([valid])))
        #expect(responses.map(\.status) == [200])
        #expect(responses.first?.header("content-type") == "application/x-protobuf")
        #expect(responses.first?.body == [])  // proto3: a message with every field at its default encodes to nothing
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
        #expect(connection.channel.isActive)
    }

    @Test("two requests on one kept-alive connection are both answered, in order, and it stays open")
    func keepAlive() throws {
        let sink = RecordingSink()
        let connection = try HTTP1Connection(responder: responder(sink))
        #expect(try connection.send(HTTP1Connection.post(request([valid]))).map(\.status) == [200])
        let second = try connection.send(HTTP1Connection.post(Array(#"{"resourceSpans":[]}"#.utf8), type: "application/json"))
        #expect(second.map(\.status) == [200])
        #expect(second.first?.header("content-type") == "application/json")
        #expect(second.first?.header("connection") != "close")
        #expect(connection.channel.isActive)
        #expect(sink.received.withLock { $0.count } == 1)  // the empty JSON request has no span to offer
    }

    @Test("a body declared over max_request_body_size is refused 413 before it is read, and the connection closes")
    func oversized() throws {
        let connection = try HTTP1Connection(responder: responder(RecordingSink(), limit: 1024))
        let head = Array(HTTP1Connection.post([], contentLength: 4096))
        let responses = try connection.send(head)
        #expect(responses.map(\.status) == [413])
        #expect(responses.first?.header("connection") == "close")
        // google.rpc.Status, code RESOURCE_EXHAUSTED (8 in google/rpc/code.proto).
        #expect(try OTLPProtobufCodec().decodeStatus(responses.first?.body ?? []).code == 8)
        _ = try connection.send([UInt8](repeating: 0, count: 4096))  // the rest is drained, then the connection closes
        #expect(!connection.channel.isActive)
    }

    @Test("malformed: an undecodable body is 400 with google.rpc.Status INVALID_ARGUMENT; broken HTTP is 400 with connection: close")
    func malformed() throws {
        let connection = try HTTP1Connection(responder: responder(RecordingSink()))
        let undecodable = try connection.send(HTTP1Connection.post([0xFF, 0xFF]))
        #expect(undecodable.map(\.status) == [400])
        #expect(try OTLPProtobufCodec().decodeStatus(undecodable.first?.body ?? []).code == 3)
        #expect(connection.channel.isActive)

        let broken = try HTTP1Connection(responder: responder(RecordingSink()))
        _ = try? broken.send(Array("NOT HTTP AT ALL\r\n\r\n".utf8))  // the parser error also reaches the pipeline's end
        let refusal = try broken.responses()
        #expect(refusal.map(\.status) == [400])
        #expect(refusal.first?.header("connection")?.lowercased() == "close")
    }

    @Test("a body over 256 KiB is answered when the off-loop decode finishes, on the same connection")
    func deferredAnswer() throws {
        let sink = RecordingSink()
        let offload = DeferredOffload()
        let connection = try HTTP1Connection(responder: responder(sink, limit: 4 << 20, offload: offload.offload))
        var big = valid
        big.attributes = [Attribute("blob", .string(String(repeating: "z", count: 300 << 10)))]
        #expect(try connection.send(HTTP1Connection.post(request([big]))).isEmpty)
        offload.finish()
        #expect(try connection.responses().map(\.status) == [200])
        #expect(sink.received.withLock { $0.count } == 1)
        #expect(connection.channel.isActive)
    }
}
