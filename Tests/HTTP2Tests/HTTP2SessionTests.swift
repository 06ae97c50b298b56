import Testing
@testable import HTTP2

/// Two sessions wired back to back: whatever one writes, the other reads.
struct SessionPair {
    let client: HTTP2Session
    let server: HTTP2Session

    init(settings: HTTP2Settings = HTTP2Settings()) throws {
        client = try HTTP2Session(role: .client)
        server = try HTTP2Session(role: .server, settings: settings)
    }

    /// Moves bytes both ways until neither side has anything to say; returns what each side saw.
    func exchange() throws -> (client: [HTTP2Event], server: [HTTP2Event]) {
        var clientEvents: [HTTP2Event] = []
        var serverEvents: [HTTP2Event] = []
        for _ in 0..<50 {
            var toServer: [UInt8] = []
            var toClient: [UInt8] = []
            let clientWrote = try client.takeOutput(into: &toServer)
            if clientWrote { serverEvents += try toServer.withUnsafeBytes { try server.receive($0) } }
            let serverWrote = try server.takeOutput(into: &toClient)
            if serverWrote { clientEvents += try toClient.withUnsafeBytes { try client.receive($0) } }
            if !clientWrote && !serverWrote { break }
        }
        return (clientEvents, serverEvents)
    }
}

@Suite("HTTP/2 session over nghttp2")
struct HTTP2SessionTests {
    @Test("a request with a body and trailers gets a response with a body and trailers")
    func requestResponse() throws {
        let pair = try SessionPair()
        let body = Array(repeating: UInt8(7), count: 100_000)  // several DATA frames, past the 64 KiB default window
        let streamID = try pair.client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"),
                                                         (":authority", "localhost"), ("content-type", "application/grpc")],
                                               body: body)
        var (_, serverEvents) = try pair.exchange()
        var received: [UInt8] = []
        var requestHeaders: [HTTP2Header] = []
        var ended = false
        for event in serverEvents {
            switch event {
            case .headers(let id, let headers, _) where id == streamID: requestHeaders = headers
            case .data(let id, let bytes) where id == streamID: received += bytes
            case .endStream(let id) where id == streamID: ended = true
            default: break
            }
        }
        #expect(requestHeaders.contains { $0.name == ":path" && $0.value == "/x.Y/Z" })
        #expect(received == body)
        #expect(ended)

        try pair.server.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")],
                                body: [1, 2, 3], trailers: [("grpc-status", "0")])
        let clientEvents: [HTTP2Event]
        (clientEvents, serverEvents) = try pair.exchange()
        var headerBlocks: [[HTTP2Header]] = []
        var responseBody: [UInt8] = []
        for event in clientEvents {
            switch event {
            case .headers(_, let headers, _): headerBlocks.append(headers)
            case .data(_, let bytes): responseBody += bytes
            default: break
            }
        }
        #expect(headerBlocks.count == 2)
        #expect(headerBlocks.first?.first { $0.name == ":status" }?.value == "200")
        #expect(headerBlocks.last?.first { $0.name == "grpc-status" }?.value == "0")
        #expect(responseBody == [1, 2, 3])
        #expect(pair.server.openStreams == 0)
    }

    @Test("a body given in parts arrives as their concatenation, split into DATA frames across part boundaries",
          arguments: [[5, 70_000], [0, 5, 16_379, 0, 16_385, 1], [3, 1, 4, 1, 5]])
    func bodyInParts(sizes: [Int]) throws {
        let pair = try SessionPair()
        let parts = sizes.enumerated().map { index, size in Array(repeating: UInt8(index + 1), count: size) }
        let streamID = try pair.client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"),
                                                         (":authority", "localhost"), ("content-type", "application/grpc")],
                                               bodyParts: parts, trailers: [("x-end", "1")])
        let (_, serverEvents) = try pair.exchange()
        var received: [UInt8] = []
        var sawTrailers = false
        for event in serverEvents {
            switch event {
            case .data(let id, let bytes) where id == streamID: received += bytes
            case .headers(let id, let headers, let endStream) where id == streamID && endStream:
                sawTrailers = headers.contains { $0.name == "x-end" && $0.value == "1" }
            default: break
            }
        }
        #expect(received == parts.flatMap { $0 })
        #expect(sawTrailers)
    }

    @Test("DATA frames written from the body's parts are well-formed: 9-byte header, length, type 0, stream id")
    func dataFramesOnTheWire() throws {
        let client = try HTTP2Session(role: .client)
        let message = Array(repeating: UInt8(0xAB), count: 20_000)
        let streamID = try client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"),
                                                    (":authority", "localhost")],
                                          bodyParts: GRPCFraming.bodyParts(message))
        var wire: [UInt8] = []
        try client.takeOutput(into: &wire)
        // Skip the 24-byte client preface, then walk the frames (RFC 9113 §4.1: 24-bit length, 8-bit
        // type, 8-bit flags, 31-bit stream identifier, then the payload).
        var offset = 24
        var data: [UInt8] = []
        var endStream = false
        while offset + 9 <= wire.count {
            let length = Int(wire[offset]) << 16 | Int(wire[offset + 1]) << 8 | Int(wire[offset + 2])
            let type = wire[offset + 3], flags = wire[offset + 4]
            let stream = Int32(wire[offset + 5] & 0x7F) << 24 | Int32(wire[offset + 6]) << 16 | Int32(wire[offset + 7]) << 8 | Int32(wire[offset + 8])
            #expect(offset + 9 + length <= wire.count)
            if type == 0 {
                #expect(stream == streamID)
                #expect(length <= 16_384)
                data += wire[(offset + 9)..<(offset + 9 + length)]
                endStream = endStream || flags & 0x1 != 0
            }
            offset += 9 + length
        }
        #expect(offset == wire.count)
        #expect(data == GRPCFraming.frame(message))
        #expect(endStream)
    }

    @Test("bytes that are not HTTP/2 are a bad preface, reported as an error rather than a crash")
    func badPreface() throws {
        let server = try HTTP2Session(role: .server)
        let request = Array("POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        do {
            _ = try request.withUnsafeBytes { try server.receive($0) }
            Issue.record("expected an error")
        } catch let error as HTTP2Error {
            #expect(error.isBadPreface)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("garbage after a valid preface ends the connection with GOAWAY, not a crash")
    func garbageFrames() throws {
        let server = try HTTP2Session(role: .server)
        let bytes = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Array(repeating: 0xFF, count: 64)
        _ = try? bytes.withUnsafeBytes { try server.receive($0) }
        var output: [UInt8] = []
        _ = try server.takeOutput(into: &output)
        // Walk the frames written: 3-byte length, 1-byte type, 1-byte flags, 4-byte stream id, payload.
        var types: [UInt8] = []
        var offset = 0
        while offset + 9 <= output.count {
            let length = Int(output[offset]) << 16 | Int(output[offset + 1]) << 8 | Int(output[offset + 2])
            types.append(output[offset + 3])
            offset += 9 + length
        }
        #expect(types.contains(0x7))  // GOAWAY
        #expect(!server.isActive)
    }

    @Test("a header block over the advertised limit resets the stream only")
    func headerLimit() throws {
        var settings = HTTP2Settings()
        settings.maxHeaderListSize = 1024
        let pair = try SessionPair(settings: settings)
        _ = try pair.exchange()  // settle SETTINGS
        let big = String(repeating: "a", count: 2000)
        _ = try pair.client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/a"), (":authority", "x"),
                                              ("x-big", big)], body: [1])
        let (clientEvents, serverEvents) = try pair.exchange()
        #expect(!serverEvents.contains { if case .headers = $0 { true } else { false } })
        #expect(clientEvents.contains { if case .streamClosed(_, let code) = $0 { code != 0 } else { false } })
    }
}

@Suite("HTTP/2 early responses")
struct HTTP2EarlyResponseTests {
    @Test("an answer given before the request body ends reaches the client before the reset")
    func earlyAnswer() throws {
        let pair = try SessionPair()
        let streamID = try pair.client.request(headers: [(":method", "POST"), (":scheme", "http"), (":path", "/a"), (":authority", "x")],
                                               body: Array(repeating: 1, count: 10))
        // Let only the headers through: the server answers before the body ends.
        var toServer: [UInt8] = []
        _ = try pair.client.takeOutput(into: &toServer)
        _ = try toServer.withUnsafeBytes { try pair.server.receive($0) }
        try pair.server.respond(streamID: streamID, headers: [(":status", "200"), ("grpc-status", "8")])
        pair.server.resetAfterResponse(streamID)
        let (clientEvents, _) = try pair.exchange()
        let statuses = clientEvents.compactMap { event -> String? in
            if case .headers(_, let headers, _) = event { return headers.first { $0.name == "grpc-status" }?.value }
            return nil
        }
        #expect(statuses == ["8"])
    }
}
