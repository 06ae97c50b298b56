import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
@testable import HTTP2

/// A unary service that echoes its message back, or, when `deferred`, keeps the answer until the test
/// completes it (as an ingest that decodes off the event loop does).
final class EchoService: GRPCUnaryService, Sendable {
    static let path = "/test.Echo/Call"
    let maxReceiveMessageSize: Int
    let deferred: Bool
    let pending = NIOLockedValueBox<[(EventLoopPromise<GRPCResponse>, [UInt8])]>([])
    let refusals = NIOLockedValueBox<[GRPCStatusCode]>([])

    init(maxReceiveMessageSize: Int = 1024, deferred: Bool = false) {
        self.maxReceiveMessageSize = maxReceiveMessageSize
        self.deferred = deferred
    }

    func serves(path: String) -> Bool { path == Self.path }

    func handle(path: String, message: [UInt8], encoding: String?, eventLoop: any EventLoop) -> EventLoopFuture<GRPCResponse> {
        guard deferred else { return eventLoop.makeSucceededFuture(GRPCResponse(status: .ok, body: message)) }
        let promise = eventLoop.makePromise(of: GRPCResponse.self)
        pending.withLockedValue { $0.append((promise, message)) }
        return promise.futureResult
    }

    func refused(_ response: GRPCResponse) {
        refusals.withLockedValue { $0.append(response.status) }
    }

    /// Answers every kept call with its message.
    func completePending() {
        for (promise, message) in pending.withLockedValue({ calls in defer { calls = [] }; return calls }) {
            promise.succeed(GRPCResponse(status: .ok, body: message))
        }
    }
}

/// What a client stream received.
struct ClientStream {
    var headerBlocks: [[HTTP2Header]] = []
    var body: [UInt8] = []
    var closed = false

    /// `grpc-status` from whichever header block carried it (trailers, or Trailers-Only).
    var grpcStatus: GRPCStatusCode? {
        headerBlocks.joined().last { $0.name == "grpc-status" }.flatMap { Int($0.value) }.map(GRPCStatusCode.init(rawValue:))
    }
}

/// `GRPCConnectionHandler` in an `EmbeddedChannel`, spoken to by the HTTP2 module's own client session:
/// bytes in, bytes out, as swift-nio-http2 tests its handlers.
struct GRPCConnection {
    let channel: EmbeddedChannel
    let client: HTTP2Session
    var streams: [Int32: ClientStream] = [:]

    init(service: EchoService) throws {
        channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(GRPCConnectionHandler(service: service, settings: HTTP2Settings(),
                                                                              logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4317)).wait()
        client = try HTTP2Session(role: .client)
    }

    /// Opens a gRPC call carrying `body` (already framed).
    func call(path: String = EchoService.path, body: [UInt8]) throws -> Int32 {
        try client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
                                     ("content-type", "application/grpc"), ("te", "trailers")],
                           body: body)
    }

    /// Moves bytes both ways until neither side has more.
    mutating func exchange() throws {
        for _ in 0..<50 {
            var toServer: [UInt8] = []
            let clientWrote = try client.takeOutput(into: &toServer)
            if clientWrote { try channel.writeInbound(ByteBuffer(bytes: toServer)) }
            var serverWrote = false
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                serverWrote = true
                for event in try buffer.withUnsafeReadableBytes({ try client.receive($0) }) { record(event) }
            }
            if !clientWrote && !serverWrote { return }
        }
    }

    private mutating func record(_ event: HTTP2Event) {
        switch event {
        case .headers(let streamID, let headers, _): streams[streamID, default: ClientStream()].headerBlocks.append(headers)
        case .data(let streamID, let bytes): streams[streamID, default: ClientStream()].body += bytes
        case .streamClosed(let streamID, _): streams[streamID, default: ClientStream()].closed = true
        case .endStream, .goAway: break
        }
    }
}

@Suite("GRPCConnectionHandler in an EmbeddedChannel")
struct GRPCConnectionHandlerTests {
    @Test("a good call is answered :status 200, its message framed, then grpc-status 0 in the trailers")
    func goodCall() throws {
        var connection = try GRPCConnection(service: EchoService())
        let streamID = try connection.call(body: GRPCFraming.frame([1, 2, 3]))
        try connection.exchange()
        let stream = try #require(connection.streams[streamID])
        #expect(stream.headerBlocks.first?.contains { $0.name == ":status" && $0.value == "200" } == true)
        #expect(stream.body == [0, 0, 0, 0, 3, 1, 2, 3])  // gRPC Length-Prefixed-Message: flag 0, length 3 big-endian
        #expect(stream.grpcStatus == .ok)
        #expect(stream.closed)
    }

    @Test("a message over max_recv_msg_size is refused with RESOURCE_EXHAUSTED")
    func oversized() throws {
        let service = EchoService(maxReceiveMessageSize: 16)
        var connection = try GRPCConnection(service: service)
        let streamID = try connection.call(body: GRPCFraming.frame([UInt8](repeating: 7, count: 100)))
        try connection.exchange()
        #expect(connection.streams[streamID]?.grpcStatus == .resourceExhausted)
        #expect(service.refusals.withLockedValue { $0 } == [.resourceExhausted])
    }

    @Test("malformed framing is INVALID_ARGUMENT; an unknown method UNIMPLEMENTED")
    func malformed() throws {
        let service = EchoService()
        var connection = try GRPCConnection(service: service)
        let badFlag = try connection.call(body: [2, 0, 0, 0, 1, 9])  // the compressed flag may only be 0 or 1
        let unknown = try connection.call(path: "/test.Echo/Other", body: GRPCFraming.frame([1]))
        try connection.exchange()
        #expect(connection.streams[badFlag]?.grpcStatus == .invalidArgument)
        #expect(connection.streams[unknown]?.grpcStatus == .unimplemented)
    }

    @Test("bytes that are not HTTP/2 get an HTTP/1.1 400 and the connection closes")
    func notHTTP2() throws {
        let connection = try GRPCConnection(service: EchoService())
        try connection.channel.writeInbound(ByteBuffer(string: "POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n"))
        var answer = ByteBuffer()
        while var buffer = try connection.channel.readOutbound(as: ByteBuffer.self) { answer.writeBuffer(&buffer) }
        #expect(String(buffer: answer).hasPrefix("HTTP/1.1 400 "))
        #expect(!connection.channel.isActive)
    }

    @Test("an answer completed later (work done off the loop) is written and flushed then")
    func deferredAnswer() throws {
        let service = EchoService(deferred: true)
        var connection = try GRPCConnection(service: service)
        let streamID = try connection.call(body: GRPCFraming.frame([4, 5]))
        try connection.exchange()
        #expect(connection.streams[streamID]?.grpcStatus == nil)
        service.completePending()
        try connection.exchange()
        #expect(connection.streams[streamID]?.grpcStatus == .ok)
        #expect(connection.streams[streamID]?.body == [0, 0, 0, 0, 2, 4, 5])
    }
}
