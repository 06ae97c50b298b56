import NIOCore
import NIOEmbedded
import Testing
@testable import HTTP2

/// `GRPCClientHandler` in an `EmbeddedChannel`, answered by the HTTP2 module's own server session.
struct GRPCClientConnection {
    let channel = EmbeddedChannel()
    let server: HTTP2Session
    /// What the server saw, per stream.
    var requestHeaders: [Int32: [HTTP2Header]] = [:]
    var requestBodies: [Int32: [UInt8]] = [:]

    init() throws {
        try channel.pipeline.syncOperations.addHandler(GRPCClientHandler())
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4317)).wait()
        server = try HTTP2Session(role: .server)
    }

    /// Starts a call as `GRPCClient.call` does: the message as its framing's body parts.
    func call(_ message: [UInt8], compressed: Bool = false) throws -> EventLoopFuture<GRPCCallResult> {
        let promise = channel.eventLoop.makePromise(of: GRPCCallResult.self)
        try channel.writeOutbound(GRPCClientCall(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/test.Echo/Call"),
                                                          (":authority", "localhost"), ("content-type", "application/grpc")],
                                                body: GRPCFraming.bodyParts(message, compressed: compressed), promise: promise))
        return promise.futureResult
    }

    /// Moves bytes both ways until neither side has more.
    mutating func exchange() throws {
        for _ in 0..<200 {
            var clientWrote = false
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
                clientWrote = true
                for event in try buffer.withUnsafeReadableBytes({ try server.receive($0) }) {
                    switch event {
                    case .headers(let streamID, let headers, _): requestHeaders[streamID, default: []] += headers
                    case .data(let streamID, let bytes): requestBodies[streamID, default: []] += bytes
                    default: break
                    }
                }
            }
            var toClient: [UInt8] = []
            let serverWrote = try server.takeOutput(into: &toClient)
            if serverWrote { try channel.writeInbound(ByteBuffer(bytes: toClient)) }
            if !clientWrote && !serverWrote { return }
        }
    }
}

@Suite("GRPCClientHandler in an EmbeddedChannel")
struct GRPCClientHandlerTests {
    @Test("a 1 MiB request goes out as one Length-Prefixed-Message; the OK answer's message comes back unframed")
    func largeRequest() throws {
        var connection = try GRPCClientConnection()
        let message = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let result = try connection.call(message)
        try connection.exchange()
        let streamID = try #require(connection.requestBodies.keys.first)
        // gRPC over HTTP/2: Compressed-Flag 0, Message-Length 0x00100000 big-endian, then the message.
        #expect(connection.requestBodies[streamID] == [0, 0x00, 0x10, 0x00, 0x00] + message)
        try connection.server.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")],
                                      bodyParts: GRPCFraming.bodyParts([9, 8, 7]), trailers: [("grpc-status", "0")])
        try connection.exchange()
        let answer = try result.wait()
        #expect(answer.status == .ok)
        #expect(answer.body == [9, 8, 7])
    }

    @Test("a compressed request carries flag 1; a Trailers-Only error comes back with its status and decoded message")
    func errorStatus() throws {
        var connection = try GRPCClientConnection()
        let result = try connection.call([1, 2, 3], compressed: true)
        try connection.exchange()
        let streamID = try #require(connection.requestBodies.keys.first)
        #expect(connection.requestBodies[streamID] == [1, 0, 0, 0, 3, 1, 2, 3])
        try connection.server.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc"),
                                                                    ("grpc-status", "14"), ("grpc-message", "busy%20now")])
        try connection.exchange()
        let answer = try result.wait()
        #expect(answer.status == .unavailable)
        #expect(answer.message == "busy now")
        #expect(answer.body.isEmpty)
    }

    @Test("a response message over the client's limit is refused as RESOURCE_EXHAUSTED, not buffered")
    func oversizedResponse() throws {
        var connection = try GRPCClientConnection()
        let result = try connection.call([1])
        try connection.exchange()
        let streamID = try #require(connection.requestBodies.keys.first)
        try connection.server.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")],
                                      bodyParts: [GRPCFraming.prefix(length: GRPCClientHandler.maxResponseSize + 1, compressed: false), [0]],
                                      trailers: [("grpc-status", "0")])
        try connection.exchange()
        let answer = try result.wait()
        #expect(answer.status == .resourceExhausted)
    }
}
