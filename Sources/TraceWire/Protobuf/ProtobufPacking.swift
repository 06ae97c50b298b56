import CProtobufC

/// The one way TraceWire serialises a protobuf-c message: every generated struct begins with its
/// `ProtobufCMessage base` (whose descriptor drives packing), so one generic routine sizes and packs
/// them all straight into the returned array, with no intermediate buffer.
enum ProtobufPacking {
    /// The wire bytes of `message`, a protobuf-c generated struct.
    static func pack<Message>(_ message: UnsafeMutablePointer<Message>) -> [UInt8] {
        message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { base in
            let length = protobuf_c_message_get_packed_size(base)
            return [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
                initialized = length == 0 ? 0 : protobuf_c_message_pack(base, buffer.baseAddress!)
            }
        }
    }
}
