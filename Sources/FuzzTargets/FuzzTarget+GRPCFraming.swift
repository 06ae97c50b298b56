import HTTP2
import NIOCore
import TraceWire

extension FuzzTarget {
    /// The largest message the framing and session targets accept: small, so that inputs the fuzzer can
    /// reach cross the limit both ways.
    static let maximumMessageSize = 4096

    /// A gRPC request body: split into messages or refused with a `FramingError`. A body that splits
    /// must frame back to the same bytes; one that arrives in pieces must never be refused early when it
    /// is exactly one message within the limit (the check `GRPCConnectionHandler` makes on every DATA
    /// frame); and the one message of a unary call then goes where the OTLP gRPC service sends it
    /// (gzip when flagged compressed, then the protobuf decoder).
    static func grpcFraming(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        let limit = maximumMessageSize
        let messages: [GRPCFraming.Message]
        do {
            messages = try GRPCFraming.messages(in: input, maxMessageSize: limit)
        } catch {
            return .rejected("\(error)")
        }

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

        guard messages.count == 1, let message = messages.first else {
            return .rejected("a unary call takes exactly one message, got \(messages.count)")
        }
        // The body as DATA frames of uneven sizes, checked after each as the connection handler does.
        var received: [UInt8] = []
        var offset = 0
        var piece = 0
        while offset < input.count {
            let size = min([1, 4, 9, 300, 1024][piece % 5], input.count - offset)
            received += input[offset..<(offset + size)]
            offset += size
            piece += 1
            if let declared = GRPCFraming.declaredLength(received), declared > limit || received.count > limit + 5 {
                throw InvariantViolation(.grpcFraming, "a body of one \(message.bytes.count)-byte message was refused as oversized "
                                                       + "after \(received.count) bytes (declared \(declared), limit \(limit))")
            }
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
