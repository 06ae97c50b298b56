import TraceWire

/// The code that reads bytes from the network, one fuzz target each. A target takes any bytes, must
/// neither crash nor hang on them, and checks properties of what it accepts (a decoded batch
/// re-encodes to itself, a framed body re-frames to itself, a session writes well-formed frames).
/// Used by the `agenttrace-fuzz` executable under libFuzzer and by the unit test that replays the
/// inputs of every crash found so far (`fuzz/regressions/<target>/`).
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `OTLPProtobufCodec.decodeRequest`: a binary `ExportTraceServiceRequest`, as OTLP/HTTP and gRPC carry it.
    case protobuf
    /// `OTLPJSON.decodeRequest`: an OTLP/JSON request body.
    case json
    /// `GRPCFraming`: a gRPC request body (length-prefixed messages), then what the OTLP gRPC service
    /// does with its one message (gzip, protobuf).
    case grpcFraming = "grpc-framing"
    /// `HTTP2Session` as a server: the bytes a client sends after the connection preface, fed frame by
    /// frame, with the session driven as the gRPC connection handler drives it.
    case http2Session = "http2-session"

    /// The longest input worth generating: the largest seed fits, so no seed is cut.
    public var maximumLength: Int {
        switch self {
        case .protobuf: 16_384
        case .json: 65_536
        case .grpcFraming: 16_384
        case .http2Session: 16_384
        }
    }

    /// Runs one input. Returns whether it was accepted or refused (with the error the sender would get);
    /// throws when the input broke a property the target checks, which is a bug like a crash.
    public func run(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        switch self {
        case .protobuf: try Self.protobuf(input, in: context)
        case .json: try Self.json(input, in: context)
        case .grpcFraming: try Self.grpcFraming(input, in: context)
        case .http2Session: try Self.http2Session(input, in: context)
        }
    }
}

/// What one input came to.
public enum FuzzOutcome: Equatable, Sendable {
    /// Decoded (or, for the session, processed to the end with the connection still open).
    case accepted
    /// Refused with the protocol's error; the text is what the sender would be told.
    case rejected(String)
}

/// An input broke a property a target checks: a bug even though nothing crashed.
public struct InvariantViolation: Error, CustomStringConvertible, Sendable {
    /// The target that found it.
    public var target: FuzzTarget
    /// Which property failed, and how.
    public var message: String

    /// Creates a violation report.
    public init(_ target: FuzzTarget, _ message: String) {
        self.target = target
        self.message = message
    }

    /// The target and the message.
    public var description: String { "\(target.rawValue): \(message)" }
}

/// State kept from one input to the next, as a connection or event loop keeps it in the collector: the
/// protobuf codec's arena and string cache are reused, so stale state from an earlier input would show.
/// Not thread-safe; one per fuzzing process or test.
public final class FuzzContext {
    /// The codec every protobuf decode and encode uses, as one event loop's codec serves all its requests.
    let protobuf = OTLPProtobufCodec(initialArenaCapacity: 1 << 16)

    /// Creates fresh state.
    public init() {}
}
