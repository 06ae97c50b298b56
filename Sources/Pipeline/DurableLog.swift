import Foundation
import Synchronization
import TraceModel

/// Turns a batch into bytes and back: binary OTLP in the collector, injected so the pipeline's modules
/// stay free of wire formats.
public struct BatchCodec: Sendable {
    public typealias Encode = @Sendable (SpanBatch) -> [UInt8]
    public typealias Decode = @Sendable ([UInt8]) throws -> SpanBatch

    public let encode: Encode
    public let decode: Decode

    public init(encode: @escaping Encode, decode: @escaping Decode) {
        self.encode = encode
        self.decode = decode
    }
}

/// Batches kept on disk, one file per record named by its sequence number, each written whole (a
/// temporary file, then a rename) before `append` returns. Two users: the write-ahead log of a durable
/// pipeline (a batch is written before the receiver acknowledges it and released once the exporters
/// hold it; after a crash what is left runs through the pipeline again, so an acknowledged span is
/// never lost, only possibly delivered twice), and an exporter's disk queue (a record is removed once
/// its batch is delivered or given up).
public final class DurableLog: Sendable {
    public typealias Encode = BatchCodec.Encode
    public typealias Decode = BatchCodec.Decode

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

    /// Forgets one record.
    public func remove(_ sequence: UInt64) {
        guard state.withLock({ $0.sizes.removeValue(forKey: sequence) }) != nil else { return }
        try? FileManager.default.removeItem(at: url(for: sequence))
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

    /// Records an earlier run left, oldest first; unreadable records are set aside as `.corrupt`.
    public func recover() throws -> [(sequence: UInt64, batch: SpanBatch)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        var records: [(sequence: UInt64, batch: SpanBatch)] = []
        var highest: UInt64 = 0
        for name in names {
            let file = directory.appendingPathComponent(name)
            if name.hasSuffix(".tmp") {
                try? FileManager.default.removeItem(at: file)  // never completed, never acknowledged
                continue
            }
            guard name.hasSuffix(".otlp"), let sequence = UInt64(name.dropLast(5)) else { continue }
            highest = max(highest, sequence)
            guard let data = FileManager.default.contents(atPath: file.path), let batch = try? decode(Array(data)) else {
                try? FileManager.default.moveItem(at: file, to: file.appendingPathExtension("corrupt"))
                continue
            }
            records.append((sequence, batch))
            state.withLock { $0.sizes[sequence] = data.count }
        }
        state.withLock { $0.nextSequence = max($0.nextSequence, highest + 1) }
        return records
    }

    private func url(for sequence: UInt64) -> URL {
        directory.appendingPathComponent(String(format: "%020llu.otlp", sequence))
    }
}
