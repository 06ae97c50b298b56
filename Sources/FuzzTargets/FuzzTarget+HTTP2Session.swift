import HTTP2

extension FuzzTarget {
    /// The connection preface every HTTP/2 client sends first (RFC 9113 §3.4); the target sends it itself,
    /// so inputs are the frames after it.
    static let clientPreface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// The path the gRPC stand-in serves.
    static let exportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    /// A server session fed the preface, then the input one frame at a time (a frame's 9-byte header
    /// says how long it is; a header that claims more than is left gets the rest). After each piece the
    /// events are answered as `GRPCConnectionHandler` answers them and everything the session wants to
    /// send is taken, which must be a whole number of well-formed frames. A protocol error from the
    /// peer is a refusal: nghttp2 queues GOAWAY and goes inactive (or, for a few errors, `receive`
    /// throws); the GOAWAY is taken and the connection ends, as in the handler. A session that took
    /// all the input is then shut down gracefully (shutdown notice, GOAWAY), as the server does on SIGTERM.
    static func http2Session(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        let session: HTTP2Session
        do {
            session = try HTTP2Session(role: .server, settings: sessionSettings)
        } catch {
            throw InvariantViolation(.http2Session, "cannot create a server session: \(error)")
        }
        defer { session.close() }
        var server = UnaryGRPCResponder(maximumMessageSize: maximumMessageSize)
        var output: [UInt8] = []
        var peerSaidGoodbye = false

        var pieces = [clientPreface[...]]
        var offset = 0
        while offset < input.count {
            var end = input.count
            if input.count - offset >= 9 {
                let length = Int(input[offset]) << 16 | Int(input[offset + 1]) << 8 | Int(input[offset + 2])
                end = min(input.count, offset + 9 + length)
            }
            pieces.append(input[offset..<end])
            offset = end
        }

        for piece in pieces {
            let received: Result<[HTTP2Event], HTTP2Error> = Array(piece).withUnsafeBytes { bytes in
                Result { () throws(HTTP2Error) in try session.receive(bytes) }
            }
            let events: [HTTP2Event]
            switch received {
            case .success(let value):
                events = value
            case .failure(let error):
                output.removeAll()
                _ = try? session.takeOutput(into: &output)
                try checkFrames(output)
                return .rejected(error.description)
            }
            for event in events {
                if case .goAway = event { peerSaidGoodbye = true }
                server.handle(event, session: session)
            }
            output.removeAll()
            do {
                try session.takeOutput(into: &output)
            } catch {
                return .rejected("cannot write: \(error)")
            }
            try checkFrames(output)
            // After the peer's GOAWAY and the last stream, the connection is done: that ends it normally.
            guard session.isActive else { return peerSaidGoodbye ? .accepted : .rejected("the session ended the connection") }
        }
        // Graceful shutdown, as on SIGTERM: the notice, then GOAWAY; both must still be whole frames.
        session.sendShutdownNotice()
        output.removeAll()
        _ = try? session.takeOutput(into: &output)
        try checkFrames(output)
        session.sendGoAway()
        output.removeAll()
        _ = try? session.takeOutput(into: &output)
        try checkFrames(output)
        return .accepted
    }

    /// Tighter than the defaults, so inputs of a few kilobytes reach the limits: the header list
    /// limit (the stream is reset), concurrent streams (refused) and flow control (WINDOW_UPDATEs).
    static var sessionSettings: HTTP2Settings {
        var settings = HTTP2Settings()
        settings.maxConcurrentStreams = 8
        settings.maxHeaderListSize = 2048
        settings.initialWindowSize = 65_535
        settings.connectionWindowSize = 65_535
        return settings
    }

    /// Bytes a session wrote are whole frames: 9-byte headers whose lengths tile the output exactly.
    @discardableResult
    static func checkFrames(_ output: [UInt8]) throws(InvariantViolation) -> Int {
        var kinds = 0
        var offset = 0
        while offset < output.count {
            guard output.count - offset >= 9 else {
                throw InvariantViolation(.http2Session, "the session wrote \(output.count - offset) stray bytes after its last frame")
            }
            let length = Int(output[offset]) << 16 | Int(output[offset + 1]) << 8 | Int(output[offset + 2])
            guard output.count - offset - 9 >= length else {
                throw InvariantViolation(.http2Session, "the session wrote a frame of type \(output[offset + 3]) declaring \(length) bytes "
                                                        + "with only \(output.count - offset - 9) following")
            }
            kinds &+= AnswerKinds.note(type: output[offset + 3], flags: output[offset + 4],
                                       payload: output[(offset + 9)..<(offset + 9 + length)])
            offset += 9 + length
        }
        return kinds
    }
}

/// libnghttp2 is a system library built without coverage instrumentation, so libFuzzer cannot tell its
/// code paths apart by themselves. What the session answers is the next best signal: each kind of frame
/// it writes (type, the flags that matter, the error code of a RST_STREAM or GOAWAY) takes its own
/// branch here, so an input that draws a new kind of answer from nghttp2 counts as new coverage and
/// is kept. The numbers returned mean nothing; they give each branch something of its own to do.
enum AnswerKinds {
    /// Takes the branch for one written frame.
    static func note(type: UInt8, flags: UInt8, payload: ArraySlice<UInt8>) -> Int {
        let endStream = flags & 0x1 != 0
        return switch type {
        case 0x0: endStream ? 1 : 2  // DATA
        case 0x1: endStream ? 3 : 4  // HEADERS
        case 0x3: rstStream(errorCode(payload, at: 0))
        case 0x4: flags & 0x1 != 0 ? 5 : 6  // SETTINGS, ACK
        case 0x6: flags & 0x1 != 0 ? 7 : 8  // PING, ACK
        case 0x7: goAway(errorCode(payload, at: 4))
        case 0x8: 9  // WINDOW_UPDATE
        case 0x9: 10  // CONTINUATION
        default: 11
        }
    }

    /// The 32-bit error code at `offset` in a RST_STREAM or GOAWAY payload; `.max` when it is cut short.
    static func errorCode(_ payload: ArraySlice<UInt8>, at offset: Int) -> UInt32 {
        guard payload.count >= offset + 4 else { return .max }
        let start = payload.startIndex + offset
        return payload[start...].prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// RFC 9113 §7 error codes, one branch each.
    static func rstStream(_ code: UInt32) -> Int {
        switch code {
        case 0x0: 100
        case 0x1: 101
        case 0x2: 102
        case 0x3: 103
        case 0x4: 104
        case 0x5: 105
        case 0x6: 106
        case 0x7: 107
        case 0x8: 108
        case 0x9: 109
        case 0xA: 110
        case 0xB: 111
        case 0xC: 112
        case 0xD: 113
        default: 114
        }
    }

    /// The same for GOAWAY, in branches of its own.
    static func goAway(_ code: UInt32) -> Int {
        switch code {
        case 0x0: 200
        case 0x1: 201
        case 0x2: 202
        case 0x3: 203
        case 0x4: 204
        case 0x5: 205
        case 0x6: 206
        case 0x7: 207
        case 0x8: 208
        case 0x9: 209
        case 0xA: 210
        case 0xB: 211
        case 0xC: 212
        case 0xD: 213
        default: 214
        }
    }
}

/// Answers unary gRPC calls on a server session with the product's own `GRPCUnaryCalls` (the state
/// `GRPCConnectionHandler` keeps), carrying out its actions as the handler does: 415 for what is not
/// gRPC, the refusal's status (with a reset after an early answer), and OK with an empty response for
/// a complete call.
struct UnaryGRPCResponder {
    private var calls: GRPCUnaryCalls

    /// A responder with no stream yet.
    init(maximumMessageSize: Int) {
        calls = GRPCUnaryCalls(maxMessageSize: maximumMessageSize, serves: { $0 == FuzzTarget.exportPath })
    }

    /// Acts on one event from `session`, submitting any answer to it.
    mutating func handle(_ event: HTTP2Event, session: HTTP2Session) {
        guard let action = calls.handle(event, now: .now()) else { return }
        switch action {
        case .refuse(let streamID, let response, let reset):
            respond(streamID, status: response.status, session: session)
            if reset { session.resetAfterResponse(streamID) }
        case .notGRPC(let streamID, let reset):
            try? session.respond(streamID: streamID, headers: [(":status", "415"), ("content-type", "text/plain")],
                                 body: Array("not gRPC\n".utf8))
            if reset { session.resetAfterResponse(streamID) }
        case .call(let streamID, _, _, _):
            do {
                try session.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")],
                                    body: GRPCFraming.frame([]), trailers: [("grpc-status", String(GRPCStatusCode.ok.rawValue))])
            } catch {
                session.resetStream(streamID, errorCode: 2)
            }
        }
    }

    /// Trailers-Only: one HEADERS frame carrying the status, ending the stream.
    private func respond(_ streamID: Int32, status: GRPCStatusCode, session: HTTP2Session) {
        do {
            try session.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc"),
                                                              ("grpc-status", String(status.rawValue)), ("grpc-message", "refused")])
        } catch {
            session.resetStream(streamID, errorCode: 2)
        }
    }
}
