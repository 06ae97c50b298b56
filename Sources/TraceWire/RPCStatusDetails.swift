import CProtobufC
import CTraceProto

/// Reads `grpc-status-details-bin`: a base64 `google.rpc.Status` whose details may hold a
/// `google.rpc.RetryInfo` saying how long to wait before retrying.
public enum RPCStatusDetails {
    static let retryInfoType = "type.googleapis.com/google.rpc.RetryInfo"

    /// The `RetryInfo.retry_delay`, when the details carry one.
    public static func retryDelay(base64 text: String) -> Duration? {
        guard let bytes = Base64.decode(text), !bytes.isEmpty else { return nil }
        let arena = ProtobufArena(initialCapacity: 4096)
        return arena.withReset(byteLimit: max(bytes.count * 32, 1 << 16)) { allocator -> Duration? in
            bytes.withUnsafeBufferPointer { buffer -> Duration? in
                guard let status = google__rpc__status__unpack(allocator, buffer.count, buffer.baseAddress) else { return nil }
                for index in 0..<status.pointee.n_details {
                    guard let detail = status.pointee.details[index]?.pointee,
                          String(protobufC: detail.type_url) == retryInfoType else { continue }
                    // RetryInfo { google.protobuf.Duration retry_delay = 1; }: one length-delimited field.
                    let value = detail.value.array
                    guard value.count >= 2, value[0] == 0x0A, Int(value[1]) == value.count - 2 else { return nil }
                    let duration = Array(value[2...])
                    return duration.withUnsafeBufferPointer { inner -> Duration? in
                        guard let parsed = google__protobuf__duration__unpack(allocator, inner.count, inner.baseAddress) else { return nil }
                        return .seconds(parsed.pointee.seconds) + .nanoseconds(Int64(parsed.pointee.nanos))
                    }
                }
                return nil
            }
        }
    }
}
