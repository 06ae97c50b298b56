import HTTP2
import NIOCore
import Testing

@Suite("gRPC unary calls, without a channel")
struct GRPCUnaryCallsTests {
    static let path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    static let grpcHeaders: [HTTP2Header] = [(":method", "POST"), (":path", path), ("content-type", "application/grpc"),
                                             ("grpc-encoding", "gzip")]

    func calls(limit: Int = 16) -> GRPCUnaryCalls {
        GRPCUnaryCalls(maxMessageSize: limit, serves: { $0 == Self.path })
    }

    @Test("a body in several DATA frames becomes one call with its message when the stream ends")
    func gathersFrames() {
        var calls = calls()
        let now = NIODeadline.now()
        let framed = GRPCFraming.frame([1, 2, 3, 4, 5, 6])
        #expect(calls.handle(.headers(streamID: 1, Self.grpcHeaders, endStream: false), now: now) == nil)
        #expect(calls.handle(.data(streamID: 1, Array(framed[0..<2])), now: now) == nil)
        #expect(calls.handle(.data(streamID: 1, Array(framed[2..<7])), now: now) == nil)
        #expect(calls.handle(.data(streamID: 1, Array(framed[7...])), now: now) == nil)
        #expect(!calls.isIdle)
        let action = calls.handle(.endStream(streamID: 1), now: now)
        #expect(action == .call(streamID: 1, path: Self.path, message: GRPCFraming.Message(compressed: false, bytes: [1, 2, 3, 4, 5, 6]),
                                encoding: nil))
        #expect(calls.handle(.streamClosed(streamID: 1, errorCode: 0), now: now) == nil)
        #expect(calls.isIdle)
    }

    @Test("a compressed message carries the stream's grpc-encoding")
    func compressedMessage() {
        var calls = calls()
        let now = NIODeadline.now()
        _ = calls.handle(.headers(streamID: 3, Self.grpcHeaders, endStream: false), now: now)
        _ = calls.handle(.data(streamID: 3, [1, 0, 0, 0, 2, 9, 9]), now: now)
        #expect(calls.handle(.endStream(streamID: 3), now: now)
                == .call(streamID: 3, path: Self.path, message: GRPCFraming.Message(compressed: true, bytes: [9, 9]), encoding: "gzip"))
    }

    @Test("a declared length over the limit is refused on the frame that declares it, and the rest is ignored")
    func oversizedEarly() {
        var calls = calls(limit: 16)
        let now = NIODeadline.now()
        _ = calls.handle(.headers(streamID: 1, Self.grpcHeaders, endStream: false), now: now)
        #expect(calls.handle(.data(streamID: 1, [0, 0, 0]), now: now) == nil)  // the prefix is not whole yet
        let refusal = calls.handle(.data(streamID: 1, [0, 17]), now: now)
        #expect(refusal == .refuse(streamID: 1, GRPCResponse(status: .resourceExhausted,
                                                             message: "message of 17 bytes exceeds max_recv_msg_size (16 bytes)"),
                                   resetAfterResponse: true))
        #expect(calls.handle(.data(streamID: 1, Array(repeating: 0, count: 17)), now: now) == nil)
        #expect(calls.handle(.endStream(streamID: 1), now: now) == nil)
    }

    @Test("more bytes than one message may hold are refused even when the first prefix is small")
    func tooManyBytes() {
        var calls = calls(limit: 4)
        let now = NIODeadline.now()
        _ = calls.handle(.headers(streamID: 1, Self.grpcHeaders, endStream: false), now: now)
        #expect(calls.handle(.data(streamID: 1, GRPCFraming.frame([1])), now: now) == nil)
        guard case .refuse(1, let response, true)? = calls.handle(.data(streamID: 1, GRPCFraming.frame([2, 3])), now: now) else {
            Issue.record("a 13-byte body with a 4-byte limit was not refused")
            return
        }
        #expect(response.status == .resourceExhausted)
    }

    @Test("two messages, a truncated one and no message are INVALID_ARGUMENT", arguments: [
        (GRPCFraming.frame([1]) + GRPCFraming.frame([]), "a unary call takes exactly one message, got 2"),
        ([], "a unary call takes exactly one message, got 0"),
        ([0, 0, 0, 0, 5, 1], "malformed gRPC message framing: truncated"),
    ] as [([UInt8], String)])
    func badFraming(_ body: [UInt8], _ message: String) {
        var calls = calls()
        let now = NIODeadline.now()
        _ = calls.handle(.headers(streamID: 1, Self.grpcHeaders, endStream: false), now: now)
        if !body.isEmpty { _ = calls.handle(.data(streamID: 1, body), now: now) }
        #expect(calls.handle(.endStream(streamID: 1), now: now)
                == .refuse(streamID: 1, GRPCResponse(status: .invalidArgument, message: message), resetAfterResponse: false))
    }

    @Test("not gRPC gets 415; another path UNIMPLEMENTED; a failed authentication its own answer")
    func refusedAtHeaders() {
        var calls = GRPCUnaryCalls(maxMessageSize: 16, serves: { $0 == Self.path }, authenticate: { headers in
            headers.contains { $0.name == "authorization" } ? nil : GRPCResponse(status: .unauthenticated, message: "no token")
        })
        let now = NIODeadline.now()
        let authorized = Self.grpcHeaders + [("authorization", "Bearer t")]
        #expect(calls.handle(.headers(streamID: 1, [(":method", "POST"), (":path", Self.path), ("content-type", "application/json"),
                                                    ("authorization", "Bearer t")], endStream: false), now: now)
                == .notGRPC(streamID: 1, resetAfterResponse: true))
        #expect(calls.handle(.headers(streamID: 3, [(":method", "POST"), (":path", "/other.Service/Call"),
                                                    ("content-type", "application/grpc"), ("authorization", "Bearer t")], endStream: true), now: now)
                == .refuse(streamID: 3, GRPCResponse(status: .unimplemented, message: "unknown method /other.Service/Call"), resetAfterResponse: false))
        #expect(calls.handle(.headers(streamID: 5, Self.grpcHeaders, endStream: false), now: now)
                == .refuse(streamID: 5, GRPCResponse(status: .unauthenticated, message: "no token"), resetAfterResponse: true))
        #expect(calls.handle(.headers(streamID: 7, authorized, endStream: false), now: now) == nil)
    }

    @Test("read_timeout answers DEADLINE_EXCEEDED only for unanswered streams begun before the cutoff")
    func expiry() {
        var calls = calls()
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = calls.handle(.headers(streamID: 1, Self.grpcHeaders, endStream: false), now: start)
        _ = calls.handle(.headers(streamID: 3, Self.grpcHeaders, endStream: false), now: start + .seconds(5))
        _ = calls.handle(.headers(streamID: 5, [(":method", "GET"), (":path", "/")], endStream: false), now: start)  // answered at once
        let late = calls.expire(begunBefore: start + .seconds(1))
        #expect(late == [.refuse(streamID: 1, GRPCResponse(status: .deadlineExceeded, message: "the request did not arrive within read_timeout"),
                                 resetAfterResponse: true)])
        #expect(calls.expire(begunBefore: start + .seconds(1)).isEmpty)  // answered once
    }
}
