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

    /// Frames one uncompressed message.
    public static func frame(_ message: [UInt8]) -> [UInt8] {
        let length = UInt32(message.count)
        return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + message
    }
}

/// gRPC status codes (grpc/doc/statuscodes.md).
public struct GRPCStatusCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let ok = GRPCStatusCode(rawValue: 0)
    public static let deadlineExceeded = GRPCStatusCode(rawValue: 4)
    public static let invalidArgument = GRPCStatusCode(rawValue: 3)
    public static let resourceExhausted = GRPCStatusCode(rawValue: 8)
    public static let unimplemented = GRPCStatusCode(rawValue: 12)
    public static let `internal` = GRPCStatusCode(rawValue: 13)
    public static let unavailable = GRPCStatusCode(rawValue: 14)
    public static let unauthenticated = GRPCStatusCode(rawValue: 16)

    public var description: String {
        switch rawValue {
        case 0: "OK"
        case 3: "INVALID_ARGUMENT"
        case 4: "DEADLINE_EXCEEDED"
        case 8: "RESOURCE_EXHAUSTED"
        case 12: "UNIMPLEMENTED"
        case 13: "INTERNAL"
        case 14: "UNAVAILABLE"
        case 16: "UNAUTHENTICATED"
        default: "CODE_\(rawValue)"
        }
    }
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
