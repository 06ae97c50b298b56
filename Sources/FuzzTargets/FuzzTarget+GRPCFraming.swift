import HTTP2
import NIOCore
import TraceWire

extension FuzzTarget {
    /// The largest message the framing and session targets accept: small, so that inputs the fuzzer can
    /// reach cross the limit both ways.
    static let maximumMessageSize = 4096

    /// A gRPC request body, fed in DATA frames of uneven sizes to the product's own `GRPCUnaryBody`
    /// (what `GRPCConnectionHandler` gathers a call in) and split by `GRPCFraming`. A body that splits
    /// must frame back to the same bytes; one that is exactly one message within the limit must never
    /// be refused early, and must come out of `GRPCUnaryBody.message()` as that message; one that is not
    /// must be refused, early or at the end. The message then goes where the OTLP gRPC service sends
    /// it (gzip when flagged compressed, then the protobuf decoder).
    static func grpcFraming(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        let limit = maximumMessageSize
        var body = GRPCUnaryBody(maxMessageSize: limit)
        var refusedEarly: Int?
        var offset = 0
        var piece = 0
        while offset < input.count, refusedEarly == nil {
            let size = min([1, 4, 9, 300, 1024][piece % 5], input.count - offset)
            refusedEarly = body.append(Array(input[offset..<(offset + size)]))
            offset += size
            piece += 1
        }

        let split: Result<[GRPCFraming.Message], GRPCFraming.FramingError> = Result { () throws(GRPCFraming.FramingError) in
            try GRPCFraming.messages(in: input, maxMessageSize: limit)
        }
        if case .success(let messages) = split {
            var reframed: [UInt8] = []
            reframed.reserveCapacity(input.count)
            for message in messages {
                let length = UInt32(message.bytes.count)
                reframed += [message.compressed ? 1 : 0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                             UInt8(length & 0xFF)]
                reframed += message.bytes
                if !message.compressed, GRPCFraming.frame(message.bytes) != Array(reframed.suffix(message.bytes.count + 5)) {
                    throw InvariantViolation(.grpcFraming, "GRPCFraming.frame disagrees with the framing it splits")
                }
            }
            guard reframed == input else {
                throw InvariantViolation(.grpcFraming, "\(messages.count) messages do not frame back to the \(input.count)-byte body")
            }
            if let first = messages.first, GRPCFraming.declaredLength(input) != first.bytes.count {
                throw InvariantViolation(.grpcFraming, "declaredLength disagrees with the first message's length")
            }
        }
        let oneMessage: GRPCFraming.Message? = if case .success(let messages) = split, messages.count == 1 { messages[0] } else { nil }

        if let size = refusedEarly {
            if let oneMessage {
                throw InvariantViolation(.grpcFraming, "a body of one \(oneMessage.bytes.count)-byte message was refused as oversized "
                                                       + "(\(size) bytes reported, limit \(limit))")
            }
            return .rejected("message of \(size) bytes exceeds the limit")
        }
        let message: GRPCFraming.Message
        do {
            message = try body.message()
        } catch {
            if oneMessage != nil {
                throw InvariantViolation(.grpcFraming, "GRPCUnaryBody refused a body of exactly one message: \(error)")
            }
            return .rejected("\(error)")
        }
        guard message == oneMessage else {
            throw InvariantViolation(.grpcFraming, "GRPCUnaryBody accepted a body that is not exactly one message within the limit")
        }

        var bytes = message.bytes
        if message.compressed {
            var inflated: ByteBuffer
            do {
                inflated = try Gzip.inflate(ByteBuffer(bytes: message.bytes), limit: limit)
            } catch {
                return .rejected("gzip: \(error)")
            }
            guard inflated.readableBytes <= limit else {
                throw InvariantViolation(.grpcFraming, "Gzip.inflate returned \(inflated.readableBytes) bytes, over its \(limit)-byte limit")
            }
            bytes = inflated.readBytes(length: inflated.readableBytes) ?? []
        }
        do {
            _ = try context.protobuf.decodeRequest(bytes)
        } catch {
            return .rejected(error.message)
        }
        return .accepted
    }
}
