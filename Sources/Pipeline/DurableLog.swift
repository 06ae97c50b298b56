import Foundation
import NIOCore
import NIOPosix
import Synchronization
import TraceModel

/// Turns a batch into bytes and back: binary OTLP in the collector, injected so the pipeline's modules
/// stay free of wire formats.
public struct BatchCodec: Sendable {
    public typealias Encode = @Sendable (SpanBatch) -> [UInt8]
    public typealias Decode = @Sendable ([UInt8]) throws -> SpanBatch

    public let encode: Encode
    public let decode: Decode
    /// The spans a selection picks, as kept under their trace's id (tail sampling), from the request
    /// they arrived in.
    public typealias EncodeHeld = @Sendable (SpanSelection, ReceivedRequest) -> [UInt8]
    /// The spans of one trace as kept under its id (tail sampling): one resource spans without its
    /// resource and without each span's trace id, which `decode` then gives as the empty resource and
    /// the zero id for the keeper to put theirs back, and without what decodes the same when left out.
    /// Nil when the format has no such form (then `encode` is used).
    public let encodeHeld: EncodeHeld?

    public init(encode: @escaping Encode, decode: @escaping Decode, encodeHeld: EncodeHeld? = nil) {
        self.encode = encode
        self.decode = decode
        self.encodeHeld = encodeHeld
    }
}

/// Batches kept on disk, one file per record named by its sequence number, each written whole (a
/// temporary file, then a rename) before `append` completes. Two users: the write-ahead log of a durable
/// pipeline (a batch is written before the receiver acknowledges it and released once the exporters
/// hold it, as `DurableLedger` says; after a crash what is left runs through the pipeline again, so an
/// acknowledged span is never lost, only possibly delivered twice), and an exporter's disk queue (a
/// record is removed once its batch is delivered or given up).
///
/// Every file operation runs on the log's own thread (a one-thread `NIOThreadPool` it owns), never on
/// an event loop or Swift's cooperative pool: callers get a future or await. One thread also keeps
/// appends in the order they were asked for. Building a log touches nothing; `open()` creates the folder
/// and starts the thread, `close()` stops it.
public final class DurableLog: Sendable {
    public typealias Encode = BatchCodec.Encode
    public typealias Decode = BatchCodec.Decode

    private struct State {
        var nextSequence: UInt64 = 1
        var released: UInt64 = 0
        /// Sequence -> bytes on disk.
        var sizes: [UInt64: Int] = [:]
    }

    private enum Phase {
        case built, open, closed
    }

    public let directory: URL
    private let encode: Encode
    private let decode: Decode
    private let state = Mutex(State())
    private let phase = Mutex(Phase.built)
    /// The one thread every file operation runs on.
    private let io = NIOThreadPool(numberOfThreads: 1)

    /// A log kept in `directory`; nothing is created until `open()`.
    public init(directory: URL, encode: @escaping Encode, decode: @escaping Decode) {
        self.directory = directory
        self.encode = encode
        self.decode = decode
    }

    deinit {
        // A log dropped without `close()` still stops its thread.
        if phase.withLock({ $0 }) == .open { io.shutdownGracefully { _ in } }
    }

    /// Creates the folder when missing, starts the log's thread and returns the records an earlier run
    /// left, oldest first; unreadable records are set aside as `.corrupt`. Appends asked for meanwhile
    /// wait behind it, so numbering continues after the records found.
    public func open() async throws -> [(sequence: UInt64, batch: SpanBatch)] {
        let start = phase.withLock { phase in
            guard phase == .built else { return false }
            phase = .open
            return true
        }
        if start { io.start() }
        return try await io.runIfActive { [self] in
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            return try recoverOnThread()
        }
    }

    /// Stops the log's thread once what was asked of it is done; later calls fail.
    public func close() async {
        let stop = phase.withLock { phase in
            defer { phase = .closed }
            return phase == .open
        }
        if stop { try? await io.shutdownGracefully() }
    }

    /// Records on disk and their bytes.
    public var usage: (records: Int, bytes: Int) {
        state.withLock { ($0.sizes.count, $0.sizes.values.reduce(0, +)) }
    }

    /// Writes `batch` as the next record, on the log's thread; the future (on `eventLoop`) completes with
    /// `written(sequence)`, which runs on that thread right after the record is on disk, so callers see
    /// records in the order they were written. Fails when the log is not open or the write fails.
    public func append(_ batch: SpanBatch, on eventLoop: any EventLoop,
                       written: @escaping @Sendable (UInt64) -> Bool) -> EventLoopFuture<Bool> {
        io.runIfActive(eventLoop: eventLoop) { [self] in written(try appendOnThread(batch)) }
    }

    /// Writes `batch` as the next record and returns its sequence number.
    public func append(_ batch: SpanBatch) async throws -> UInt64 {
        try await io.runIfActive { [self] in try appendOnThread(batch) }
    }

    /// Forgets one record.
    public func remove(_ sequence: UInt64) async {
        guard state.withLock({ $0.sizes.removeValue(forKey: sequence) }) != nil else { return }
        let file = url(for: sequence)
        _ = try? await io.runIfActive { try? FileManager.default.removeItem(at: file) }
    }

    /// Forgets every record up to and including `mark`.
    public func release(upTo mark: UInt64) async {
        let due: [UInt64] = state.withLock { state in
            guard mark > state.released else { return [] }
            let due = state.sizes.keys.filter { $0 <= mark }
            for sequence in due { state.sizes[sequence] = nil }
            state.released = mark
            return due
        }
        guard !due.isEmpty else { return }
        let files = due.map(url(for:))
        _ = try? await io.runIfActive {
            for file in files { try? FileManager.default.removeItem(at: file) }
        }
    }

    /// On the log's thread.
    private func appendOnThread(_ batch: SpanBatch) throws -> UInt64 {
        let sequence = state.withLock { $0.nextSequence }
        let bytes = encode(batch)
        let file = url(for: sequence)
        let temporary = file.appendingPathExtension("tmp")
        try Data(bytes).write(to: temporary)
        try FileManager.default.moveItem(at: temporary, to: file)
        state.withLock {
            $0.sizes[sequence] = bytes.count
            $0.nextSequence = sequence + 1
        }
        return sequence
    }

    /// On the log's thread.
    private func recoverOnThread() throws -> [(sequence: UInt64, batch: SpanBatch)] {
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
