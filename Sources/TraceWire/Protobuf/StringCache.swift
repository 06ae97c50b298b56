#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reuses the Swift strings made for recurring protobuf strings (attribute keys, service and model
/// names, span names): a direct-mapped table keyed by the length and the first and last eight bytes,
/// so a hit costs two loads and a `memcmp` instead of a heap allocation and UTF-8 validation. Strings
/// of 15 bytes or fewer are stored inline by Swift and are never cached; long ones (ids, statements)
/// rarely repeat and are not either.
struct StringCache {
    private static let slotCount = 4096
    private static let longest = 96

    // Parallel tables, so a probe reads plain bytes and integers and retains nothing but its result.
    private var lengths = [Int](repeating: 0, count: slotCount)
    private var bytes = [UInt8](repeating: 0, count: slotCount * longest)
    private var strings = [String](repeating: "", count: slotCount)

    /// A Swift string for a NUL-terminated protobuf-c string; NULL reads as empty.
    mutating func string(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return string(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
    }

    /// A Swift string for UTF-8 bytes; invalid UTF-8 is repaired with U+FFFD.
    mutating func string(_ buffer: UnsafeRawBufferPointer) -> String {
        let length = buffer.count
        guard length > 15, length <= Self.longest, let raw = buffer.baseAddress else {
            return String(decoding: buffer, as: UTF8.self)
        }
        let first = raw.loadUnaligned(as: UInt64.self)
        let last = raw.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self)
        let hash = (first &* 0x9E37_79B9_7F4A_7C15) ^ (last &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(length)
        let slot = Int(truncatingIfNeeded: hash >> 52) & (Self.slotCount - 1)
        let offset = slot * Self.longest
        if lengths[slot] == length, bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress! + offset, raw, length) == 0 }) {
            return strings[slot]
        }
        let made = String(decoding: buffer, as: UTF8.self)
        lengths[slot] = length
        bytes.withUnsafeMutableBufferPointer { UnsafeMutableRawPointer($0.baseAddress! + offset).copyMemory(from: raw, byteCount: length) }
        strings[slot] = made
        return made
    }
}
