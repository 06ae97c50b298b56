import CProtobufC
import CTraceProto

/// Owns one C `TraceArena`: the bump allocator every protobuf-c decode and encode in TraceWire uses.
/// Not thread-safe; each connection or task keeps its own.
final class ProtobufArena {
    /// Chunk memory kept across resets, so steady-state requests allocate nothing from malloc.
    static let retainedCapacity = 8 << 20

    private let arena: OpaquePointer

    init(initialCapacity: Int = 1 << 20) {
        guard let arena = trace_arena_create(initialCapacity, 0) else {
            // Out of memory at start-up: nothing sensible can continue.
            preconditionFailure("cannot allocate the protobuf arena")
        }
        self.arena = arena
    }

    deinit {
        trace_arena_destroy(arena)
    }

    /// Runs `body` with the arena's protobuf-c allocator, limited to `byteLimit` bytes (0: none),
    /// and forgets every allocation afterwards; nothing allocated may escape `body`.
    func withReset<Result>(byteLimit: Int = 0, _ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws -> Result) rethrows -> Result {
        trace_arena_set_limit(arena, byteLimit)
        defer { trace_arena_reset(arena, Self.retainedCapacity) }
        return try body(trace_arena_allocator(arena))
    }

    /// Zeroed memory for `count` values of `T`, valid until the current `withReset` returns.
    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let size = MemoryLayout<T>.stride * max(count, 1)
        guard let raw = trace_arena_alloc(arena, size) else {
            preconditionFailure("protobuf arena exhausted while encoding")
        }
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// A NUL-terminated copy of `string` in the arena.
    func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        var string = string
        return string.withUTF8 { utf8 in
            let memory = allocate(CChar.self, count: utf8.count + 1)
            if let base = utf8.baseAddress {
                UnsafeMutableRawPointer(memory).copyMemory(from: base, byteCount: utf8.count)
            }
            return memory
        }
    }

    /// A copy of `bytes` in the arena, as protobuf-c's `bytes` field type.
    func binaryData(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        guard !bytes.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        let memory = allocate(UInt8.self, count: bytes.count)
        memory.update(from: bytes, count: bytes.count)
        return ProtobufCBinaryData(len: bytes.count, data: memory)
    }

    /// An array of `count` message pointers filled by `make`.
    func pointerArray<Element>(_ count: Int, _ make: (Int) -> UnsafeMutablePointer<Element>) -> UnsafeMutablePointer<UnsafeMutablePointer<Element>?>? {
        guard count > 0 else { return nil }
        let array = allocate(UnsafeMutablePointer<Element>?.self, count: count)
        for index in 0..<count { array[index] = make(index) }
        return array
    }
}

extension String {
    /// Reads a protobuf-c string; NULL reads as empty, invalid UTF-8 is repaired with U+FFFD.
    init(protobufC pointer: UnsafePointer<CChar>?) {
        guard let pointer, pointer.pointee != 0 else {
            self = ""
            return
        }
        self = String(cString: pointer)
    }
}

extension ProtobufCBinaryData {
    /// The bytes as an array.
    var array: [UInt8] {
        guard len > 0, let data else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: len))
    }
}

/// The C allocator underneath the decoders.
public enum NativeMemory {
    /// Hands the allocator's free pages back to the system (glibc `malloc_trim`), so resident memory
    /// shows what is in use; the memory limiter calls it when over its soft limit.
    public static func releaseFreeMemory() {
        _ = trace_release_free_memory()
    }
}
