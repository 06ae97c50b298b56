import NIOCore

/// One call's request body as its DATA frames arrive: appended in place, and over the limit as soon
/// as the first message's declared length or the bytes received say so, before the rest is read.
public struct GRPCUnaryBody: Sendable {
    /// The largest message accepted, after the 5-byte prefix.
    public let maxMessageSize: Int
    /// What has arrived so far.
    public private(set) var bytes: [UInt8] = []

    /// An empty body.
    public init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// Appends one DATA frame's bytes; returns the message size to report when the body is now over
    /// the limit (a unary call carries one message, so more than limit + 5 bytes is over it too).
    public mutating func append(_ piece: [UInt8]) -> Int? {
        bytes.append(contentsOf: piece)
        if let declared = GRPCFraming.declaredLength(bytes), declared > maxMessageSize || bytes.count > maxMessageSize + 5 {
            return max(declared, bytes.count - 5)
        }
        return nil
    }

    /// The call's one message, once the body is complete.
    public func message() throws(GRPCFraming.FramingError) -> GRPCFraming.Message {
        let messages = try GRPCFraming.messages(in: bytes, maxMessageSize: maxMessageSize)
        guard messages.count == 1, let message = messages.first else { throw .notOneMessage(count: messages.count) }
        return message
    }
}

/// The unary calls of one gRPC server connection, kept apart from I/O: fed the session's events, it
/// gathers each stream's request and says, as data, how to answer it. `GRPCConnectionHandler` carries
/// the answers out; the fuzz targets drive this same type without a channel.
public struct GRPCUnaryCalls {
    /// What the connection must do for one stream.
    public enum Action: Equatable, Sendable {
        /// Answer with this (non-OK) status; when the client may still be sending, reset the stream
        /// once the answer is out (RFC 9113 §8.1: an early response).
        case refuse(streamID: Int32, GRPCResponse, resetAfterResponse: Bool)
        /// Not a gRPC request: HTTP 415, as gRPC over HTTP/2 asks.
        case notGRPC(streamID: Int32, resetAfterResponse: Bool)
        /// A complete call with exactly one message: the service handles it and its answer is sent.
        case call(streamID: Int32, path: String, message: GRPCFraming.Message, encoding: String?)
    }

    private struct Stream {
        var path: String
        var encoding: String?
        var body: GRPCUnaryBody
        /// Answered early (refused); the rest of its body is ignored.
        var answered = false
        /// When its HEADERS arrived, for `read_timeout`.
        var began: NIODeadline
    }

    /// The largest request message accepted (`max_recv_msg_size`).
    public let maxMessageSize: Int
    private let serves: (String) -> Bool
    private let authenticate: ([HTTP2Header]) -> GRPCResponse?
    private var streams: [Int32: Stream] = [:]

    /// Calls that serve the paths `serves` accepts, after `authenticate` (nil: allowed) lets them in.
    public init(maxMessageSize: Int, serves: @escaping (String) -> Bool,
                authenticate: @escaping ([HTTP2Header]) -> GRPCResponse? = { _ in nil }) {
        self.maxMessageSize = maxMessageSize
        self.serves = serves
        self.authenticate = authenticate
    }

    /// True when no stream is open.
    public var isIdle: Bool { streams.isEmpty }

    /// True while `streamID` is open (begun, and neither closed nor reset).
    public func isOpen(_ streamID: Int32) -> Bool { streams[streamID] != nil }

    /// Takes one event from the session; returns the answer it makes due, if any.
    public mutating func handle(_ event: HTTP2Event, now: NIODeadline) -> Action? {
        switch event {
        case .headers(let streamID, let headers, let endStream):
            if streams[streamID] != nil {
                // Trailers from the client end the request.
                return endStream ? finish(streamID) : nil
            }
            return begin(streamID, headers: headers, endStream: endStream, now: now)
        case .data(let streamID, let bytes):
            guard streams[streamID]?.answered == false, let size = streams[streamID]?.body.append(bytes) else { return nil }
            streams[streamID]?.answered = true
            return .refuse(streamID: streamID, GRPCResponse(status: .resourceExhausted, message: Self.oversized(size, limit: maxMessageSize)),
                           resetAfterResponse: true)
        case .endStream(let streamID):
            return finish(streamID)
        case .streamClosed(let streamID, _):
            streams[streamID] = nil
            return nil
        case .goAway:
            return nil
        }
    }

    /// Answers DEADLINE_EXCEEDED for every unanswered stream whose HEADERS arrived before `cutoff`.
    public mutating func expire(begunBefore cutoff: NIODeadline) -> [Action] {
        let late = streams.filter { !$0.value.answered && $0.value.began < cutoff }.keys.sorted()
        return late.map { streamID in
            streams[streamID]?.answered = true
            return .refuse(streamID: streamID, GRPCResponse(status: .deadlineExceeded, message: "the request did not arrive within read_timeout"),
                           resetAfterResponse: true)
        }
    }

    /// Forgets every stream (the connection is gone).
    public mutating func removeAll() {
        streams.removeAll()
    }

    private mutating func begin(_ streamID: Int32, headers: [HTTP2Header], endStream: Bool, now: NIODeadline) -> Action? {
        var method = "", path = "", contentType = "", encoding: String?
        for header in headers {
            switch header.name {
            case ":method": method = header.value
            case ":path": path = header.value
            case "content-type": contentType = header.value
            case "grpc-encoding": encoding = header.value
            default: break
            }
        }
        streams[streamID] = Stream(path: path, encoding: encoding, body: GRPCUnaryBody(maxMessageSize: maxMessageSize), began: now)
        if let refusal = authenticate(headers) {
            streams[streamID]?.answered = true
            return .refuse(streamID: streamID, refusal, resetAfterResponse: !endStream)
        }
        guard method == "POST", contentType.hasPrefix("application/grpc") else {
            streams[streamID]?.answered = true
            return .notGRPC(streamID: streamID, resetAfterResponse: !endStream)
        }
        guard serves(path) else {
            streams[streamID]?.answered = true
            return .refuse(streamID: streamID, GRPCResponse(status: .unimplemented, message: "unknown method \(path)"), resetAfterResponse: !endStream)
        }
        return endStream ? finish(streamID) : nil
    }

    private mutating func finish(_ streamID: Int32) -> Action? {
        guard let stream = streams[streamID], !stream.answered else { return nil }
        streams[streamID]?.answered = true
        do {
            let message = try stream.body.message()
            return .call(streamID: streamID, path: stream.path, message: message, encoding: message.compressed ? (stream.encoding ?? "") : nil)
        } catch .tooLarge(let declared, let limit) {
            return .refuse(streamID: streamID, GRPCResponse(status: .resourceExhausted, message: Self.oversized(declared, limit: limit)),
                           resetAfterResponse: false)
        } catch .notOneMessage(let count) {
            return .refuse(streamID: streamID, GRPCResponse(status: .invalidArgument, message: "a unary call takes exactly one message, got \(count)"),
                           resetAfterResponse: false)
        } catch {
            return .refuse(streamID: streamID, GRPCResponse(status: .invalidArgument, message: "malformed gRPC message framing: \(error)"),
                           resetAfterResponse: false)
        }
    }

    private static func oversized(_ size: Int, limit: Int) -> String {
        "message of \(size) bytes exceeds max_recv_msg_size (\(limit) bytes)"
    }
}
