import Foundation
import Synchronization
import TraceModel

/// A write-ahead log of accepted batches, for pipelines whose exporters keep a disk queue: a batch is
/// written here before the receiver acknowledges it, and forgotten once the exporters have taken it
/// (into their own disk queues). After a crash, what is left is replayed through the pipeline, so an
/// acknowledged span is never lost — it may be delivered twice (at least once).
public final class DurableLog: Sendable {
    /// Encodes and decodes one batch (OTLP protobuf, injected so this module stays free of wire formats).
    public typealias Encode = @Sendable (SpanBatch) -> [UInt8]
    public typealias Decode = @Sendable ([UInt8]) throws -> SpanBatch

    private struct State {
        var nextSequence: UInt64 = 1
        var released: UInt64 = 0
        /// Sequence -> bytes on disk.
        var sizes: [UInt64: Int] = [:]
    }

    public let directory: URL
    private let encode: Encode
    private let decode: Decode
    private let state = Mutex(State())

    /// Opens (creating) the log's folder.
    public init(directory: URL, encode: @escaping Encode, decode: @escaping Decode) throws {
        self.directory = directory
        self.encode = encode
        self.decode = decode
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Records on disk and their bytes.
    public var usage: (records: Int, bytes: Int) {
        state.withLock { ($0.sizes.count, $0.sizes.values.reduce(0, +)) }
    }

    /// Writes `batch` as the next record and returns its sequence number. The caller keeps appends in
    /// the order it hands batches to the pipeline.
    public func append(_ batch: SpanBatch) throws -> UInt64 {
        let sequence = state.withLock { state in
            defer { state.nextSequence += 1 }
            return state.nextSequence
        }
        let bytes = encode(batch)
        let file = url(for: sequence)
        let temporary = file.appendingPathExtension("tmp")
        try Data(bytes).write(to: temporary)
        try FileManager.default.moveItem(at: temporary, to: file)
        state.withLock { $0.sizes[sequence] = bytes.count }
        return sequence
    }

    /// Forgets every record up to and including `mark`.
    public func release(upTo mark: UInt64) {
        let due: [UInt64] = state.withLock { state in
            guard mark > state.released else { return [] }
            let due = state.sizes.keys.filter { $0 <= mark }
            for sequence in due { state.sizes[sequence] = nil }
            state.released = mark
            return due
        }
        for sequence in due { try? FileManager.default.removeItem(at: url(for: sequence)) }
    }

    /// Records an earlier run left, oldest first, each batch marked with its sequence; unreadable
    /// records are set aside as `.corrupt`.
    public func recover() throws -> [SpanBatch] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        var batches: [SpanBatch] = []
        var highest: UInt64 = 0
        for name in names {
            let file = directory.appendingPathComponent(name)
            if name.hasSuffix(".tmp") {
                try? FileManager.default.removeItem(at: file)  // never completed, never acknowledged
                continue
            }
            guard name.hasSuffix(".otlp"), let sequence = UInt64(name.dropLast(5)) else { continue }
            highest = max(highest, sequence)
            guard let data = FileManager.default.contents(atPath: file.path), var batch = try? decode(Array(data)) else {
                try? FileManager.default.moveItem(at: file, to: file.appendingPathExtension("corrupt"))
                continue
            }
            batch.durableMark = sequence
            batches.append(batch)
            state.withLock { $0.sizes[sequence] = data.count }
        }
        state.withLock { $0.nextSequence = max($0.nextSequence, highest + 1) }
        return batches
    }

    private func url(for sequence: UInt64) -> URL {
        directory.appendingPathComponent(String(format: "%020llu.otlp", sequence))
    }
}
