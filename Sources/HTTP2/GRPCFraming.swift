/// gRPC's message framing over HTTP/2 DATA (the gRPC "Length-Prefixed-Message"): a one-byte
/// compressed flag, a four-byte big-endian length, then the message.
public enum GRPCFraming {
    /// One message as framed.
    public struct Message: Sendable, Equatable {
        /// True when the message is compressed with the stream's `grpc-encoding`.
        public var compressed: Bool
        public var bytes: [UInt8]

        public init(compressed: Bool, bytes: [UInt8]) {
            self.compressed = compressed
            self.bytes = bytes
        }
    }

    /// Why a body is not a sequence of well-formed messages.
    public enum FramingError: Error, Equatable, Sendable {
        /// A message declares more bytes than the limit.
        case tooLarge(declared: Int, limit: Int)
        /// The body ends inside a prefix or a message.
        case truncated
        /// The compressed flag is neither 0 nor 1.
        case invalidFlag(UInt8)
        /// A unary call's body holds no message, or more than one.
        case notOneMessage(count: Int)
    }

    /// The length a partial body's first prefix declares, once five bytes have arrived, for refusing
    /// an oversized message before it is all received.
    public static func declaredLength(_ body: [UInt8]) -> Int? {
        guard body.count >= 5 else { return nil }
        return Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
    }

    /// Splits a complete body into messages.
    public static func messages(in body: [UInt8], maxMessageSize: Int) throws(FramingError) -> [Message] {
        var messages: [Message] = []
        var offset = 0
        while offset < body.count {
            guard body.count - offset >= 5 else { throw .truncated }
            let flag = body[offset]
            guard flag <= 1 else { throw .invalidFlag(flag) }
            let length = Int(body[offset + 1]) << 24 | Int(body[offset + 2]) << 16 | Int(body[offset + 3]) << 8 | Int(body[offset + 4])
            guard length <= maxMessageSize else { throw .tooLarge(declared: length, limit: maxMessageSize) }
            guard body.count - offset - 5 >= length else { throw .truncated }
            messages.append(Message(compressed: flag == 1, bytes: Array(body[(offset + 5)..<(offset + 5 + length)])))
            offset += 5 + length
        }
        return messages
    }

    /// The 5-byte prefix that goes before a message of `length` bytes (the length is written big-endian,
    /// as the gRPC HTTP/2 protocol asks: "Message-Length → {length of Message} # encoded as 4 byte
    /// unsigned integer (big endian)").
    public static func prefix(length: Int, compressed: Bool) -> [UInt8] {
        let length = UInt32(truncatingIfNeeded: length)
        return [compressed ? 1 : 0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
    }

    /// One message as the parts a stream's body is sent in: its prefix, then the message itself,
    /// never joined (`HTTP2Session` writes each from where it is).
    public static func bodyParts(_ message: [UInt8], compressed: Bool = false) -> [[UInt8]] {
        [prefix(length: message.count, compressed: compressed), message]
    }

    /// Frames one uncompressed message into one array, copying it: for tests and fuzz seeds; sending
    /// uses `bodyParts`.
    public static func frame(_ message: [UInt8]) -> [UInt8] {
        prefix(length: message.count, compressed: false) + message
    }
}

/// A gRPC status code: the one type for `grpc-status` everywhere (server, client, exporters, the
/// `code` of a `google.rpc.Status` body). Names as grpc/doc/statuscodes.md spells them, numbers as
/// google/rpc/code.proto assigns them; a number outside the table is kept as received (see `isKnown`).
public struct GRPCStatusCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The number sent in `grpc-status`.
    public var rawValue: Int
    /// The code numbered `rawValue`.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// 0: Success.
    public static let ok = GRPCStatusCode(rawValue: 0)
    /// 1: Cancelled, typically by the caller.
    public static let cancelled = GRPCStatusCode(rawValue: 1)
    /// 2: An unknown error.
    public static let unknown = GRPCStatusCode(rawValue: 2)
    /// 3: The client sent an invalid argument (OTLP: data that cannot be decoded).
    public static let invalidArgument = GRPCStatusCode(rawValue: 3)
    /// 4: The deadline passed before the operation completed.
    public static let deadlineExceeded = GRPCStatusCode(rawValue: 4)
    /// 5: A requested entity was not found.
    public static let notFound = GRPCStatusCode(rawValue: 5)
    /// 6: The entity to create already exists.
    public static let alreadyExists = GRPCStatusCode(rawValue: 6)
    /// 7: The caller may not do this.
    public static let permissionDenied = GRPCStatusCode(rawValue: 7)
    /// 8: A resource ran out; also a message over the size limit.
    public static let resourceExhausted = GRPCStatusCode(rawValue: 8)
    /// 9: The system is not in the state the operation needs.
    public static let failedPrecondition = GRPCStatusCode(rawValue: 9)
    /// 10: Aborted, typically by a concurrency conflict.
    public static let aborted = GRPCStatusCode(rawValue: 10)
    /// 11: Past the valid range.
    public static let outOfRange = GRPCStatusCode(rawValue: 11)
    /// 12: Not implemented, or not enabled here (unknown methods and encodings).
    public static let unimplemented = GRPCStatusCode(rawValue: 12)
    /// 13: An internal error.
    public static let `internal` = GRPCStatusCode(rawValue: 13)
    /// 14: Unavailable for now; retrying may succeed.
    public static let unavailable = GRPCStatusCode(rawValue: 14)
    /// 15: Unrecoverable data loss or corruption.
    public static let dataLoss = GRPCStatusCode(rawValue: 15)
    /// 16: No valid authentication credentials.
    public static let unauthenticated = GRPCStatusCode(rawValue: 16)

    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    /// True for the seventeen codes of google/rpc/code.proto.
    public var isKnown: Bool { Self.names.indices.contains(rawValue) }

    /// The name statuscodes.md gives the code (`OK`, `INVALID_ARGUMENT`…); `CODE_n` for others.
    public var description: String { isKnown ? Self.names[rawValue] : "CODE_\(rawValue)" }
}

/// The outcome of one unary call.
public struct GRPCResponse: Sendable, Equatable {
    public var status: GRPCStatusCode
    /// `grpc-message`: a human-readable reason; sent percent-encoded.
    public var message: String
    /// The response message (unframed); sent only with `.ok`.
    public var body: [UInt8]

    public init(status: GRPCStatusCode, message: String = "", body: [UInt8] = []) {
        self.status = status
        self.message = message
        self.body = body
    }

    /// `grpc-message` percent-encoding, as the gRPC HTTP/2 protocol defines it: bytes outside
    /// printable ASCII, and `%`, become `%XX`.
    public static func percentEncoded(_ message: String) -> String {
        var result = ""
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                result.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF")
                result += "%\(hex[Int(byte >> 4)])\(hex[Int(byte & 0xF)])"
            }
        }
        return result
    }
}
