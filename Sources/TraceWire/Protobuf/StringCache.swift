#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reuses the Swift strings made for recurring protobuf strings (attribute keys, service and model
/// names, span names): a direct-mapped table keyed by the length and the first and last eight bytes.
/// A hit costs a hash, three compares (and a `memcmp` of the middle for strings over 16 bytes) and a
/// retain, instead of a heap allocation and UTF-8 validation. Short strings (8 to 15 bytes) are stored
/// inline by Swift, but checking and packing them costs more than a hit; strings under 8 bytes are
/// made directly, and long ones (ids, statements) rarely repeat and are not cached either.
struct StringCache {
    private static let slotCount = 4096
    private static let longest = 96

    /// What a probe compares first: the length and the first and last eight bytes, which for 16
    /// bytes or fewer are the whole string.
    private struct Slot {
        var length = 0
        var first: UInt64 = 0
        var last: UInt64 = 0
    }

    // Parallel tables, so a probe reads plain bytes and integers and retains nothing but its result;
    // made at the first string worth caching (half a megabyte: codecs that never decode never pay).
    private var slots: [Slot] = []
    private var bytes: [UInt8] = []
    private var strings: [String] = []

    /// A Swift string for a NUL-terminated protobuf-c string; NULL reads as empty.
    mutating func string(_ pointer: UnsafePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return string(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
    }

    /// A Swift string for UTF-8 bytes; invalid UTF-8 is repaired with U+FFFD.
    @inline(__always)
    mutating func string(_ buffer: UnsafeRawBufferPointer) -> String {
        let length = buffer.count
        guard length >= 8, length <= Self.longest, let raw = buffer.baseAddress else {
            return String(decoding: buffer, as: UTF8.self)
        }
        return cached(raw, length: length)
    }

    private mutating func cached(_ raw: UnsafeRawPointer, length: Int) -> String {
        let first = raw.loadUnaligned(as: UInt64.self)
        let last = raw.loadUnaligned(fromByteOffset: length - 8, as: UInt64.self)
        let hash = (first &* 0x9E37_79B9_7F4A_7C15) ^ (last &* 0xC2B2_AE3D_27D4_EB4F) ^ UInt64(length)
        let slot = Int(truncatingIfNeeded: hash >> 52) & (Self.slotCount - 1)
        if slots.isEmpty {
            slots = [Slot](repeating: Slot(), count: Self.slotCount)
            bytes = [UInt8](repeating: 0, count: Self.slotCount * Self.longest)
            strings = [String](repeating: "", count: Self.slotCount)
        }
        let offset = slot * Self.longest
        let probe = slots[slot]
        if probe.length == length, probe.first == first, probe.last == last,
           length <= 16 || bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress! + offset + 8, raw + 8, length - 16) == 0 }) {
            return strings[slot]
        }
        let made = String(decoding: UnsafeRawBufferPointer(start: raw, count: length), as: UTF8.self)
        slots[slot] = Slot(length: length, first: first, last: last)
        bytes.withUnsafeMutableBufferPointer { UnsafeMutableRawPointer($0.baseAddress! + offset).copyMemory(from: raw, byteCount: length) }
        strings[slot] = made
        return made
    }
}
