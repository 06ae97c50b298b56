/// Reuses the Swift strings made for recurring protobuf strings (attribute keys, service and model
/// names, span names): a direct-mapped table keyed by a hash of the bytes, so a hit costs a hash and a
/// compare instead of a heap allocation and UTF-8 validation. Strings of 15 bytes or fewer are stored
/// inline by Swift and are never cached; long ones (ids, statements) rarely repeat and are not either.
struct StringCache {
    private static let slotCount = 4096
    private static let longest = 96
    private var slots: [String?] = Array(repeating: nil, count: slotCount)

    /// A Swift string for a NUL-terminated protobuf-c string; NULL reads as empty, invalid UTF-8 is
    /// repaired with U+FFFD.
    mutating func string(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        let bytes = UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self)
        var length = 0
        while bytes[length] != 0 { length += 1 }
        let buffer = UnsafeBufferPointer(start: bytes, count: length)
        guard length > 15, length <= Self.longest else { return String(decoding: buffer, as: UTF8.self) }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        for byte in buffer { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        let slot = Int(truncatingIfNeeded: hash ^ (hash >> 32)) & (Self.slotCount - 1)
        if let cached = slots[slot], cached.utf8.count == length,
           cached.utf8.withContiguousStorageIfAvailable({ $0.elementsEqual(buffer) }) == true {
            return cached
        }
        let made = String(decoding: buffer, as: UTF8.self)
        slots[slot] = made
        return made
    }
}
