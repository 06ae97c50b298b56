import Foundation
import Logging
import Synchronization
import NIOCore
import NIOPosix
import Testing
import TestSupport
import TraceModel
@testable import Pipeline

/// A test codec: the batch's span count and trace high bits as text (the real one is OTLP protobuf).
let encodeForTest: DurableLog.Encode = { batch in Array("\(batch.spanCount),\(batch.resourceSpans.first?.scopeSpans.first?.spans.first?.traceID.high ?? 0)".utf8) }
let decodeForTest: DurableLog.Decode = { bytes in
    let parts = String(decoding: bytes, as: UTF8.self).split(separator: ",")
    return makeBatch(spans: Int(parts[0])!, traceHigh: UInt64(parts[1])!)
}

@Suite("write-ahead log")
struct DurableLogTests {
    func directory() -> URL {
        scratchDirectory("wal")
    }

    func files(_ folder: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
    }

    @Test("building a log creates nothing; opening creates its folder")
    func buildingTouchesNothing() async throws {
        let folder = directory().appendingPathComponent("nested")
        let log = DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        #expect(!FileManager.default.fileExists(atPath: folder.path))
        #expect(try await log.open().isEmpty)
        #expect(try files(folder) == [])
        await log.close()
    }

    @Test("an accepted batch is on disk before its offer completes; a restart recovers it with its record")
    func survivesRestart() async throws {
        let folder = directory()
        let log = DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        _ = try await log.open()
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000, durableLog: log, tickInterval: .seconds(3600))
        #expect(await queue.offers(makeBatch(spans: 3, traceHigh: 7)))
        #expect(await queue.offers(makeBatch(spans: 4, traceHigh: 8)))
        #expect(try files(folder).count == 2)
        guard case .recorded(_, let record)? = await queue.next() else {
            Issue.record("expected a recorded batch")
            return
        }
        #expect(record == 1)
        await log.close()

        // The process dies here; a new one opens the same folder.
        let reopened = DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        let recovered = try await reopened.open()
        #expect(recovered.map(\.batch.spanCount) == [3, 4])
        #expect(recovered.map(\.sequence) == [1, 2])
        #expect(try await reopened.append(makeBatch(spans: 1)) == 3)  // numbering continues
        await reopened.release(upTo: 1)
        await reopened.remove(2)
        #expect(try files(folder) == ["00000000000000000003.otlp"])
        #expect(reopened.usage.records == 1)
        await reopened.close()
    }

    @Test("a full queue refuses without writing; so does a log not open yet")
    func refusesWithoutWriting() async throws {
        let folder = directory()
        let log = DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        let early = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000, durableLog: log, tickInterval: .seconds(3600))
        #expect(await !early.offers(makeBatch(spans: 1)))
        #expect(early.isFull == false)  // the refused write gave its room back
        _ = try await log.open()
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000, durableLog: log, tickInterval: .seconds(3600))
        #expect(await queue.offers(makeBatch(spans: 1)))
        #expect(await !queue.offers(makeBatch(spans: 1)))
        #expect(try files(folder).count == 1)
        await log.close()
    }

    @Test("batches are queued in the order the log numbered them, however many loops offer at once")
    func queueOrderIsLogOrder() async throws {
        let log = DurableLog(directory: directory(), encode: encodeForTest, decode: decodeForTest)
        _ = try await log.open()
        let queue = BoundedBatchQueue(maxBatches: 1000, maxSpans: 100_000, durableLog: log, tickInterval: .seconds(3600))
        await withTaskGroup(of: Void.self) { group in
            for high in 1...200 {
                group.addTask { _ = await queue.offers(makeBatch(spans: 1, traceHigh: UInt64(high))) }
            }
        }
        queue.close()
        var records: [UInt64] = []
        while case .recorded(_, let record)? = await queue.next() { records.append(record) }
        #expect(records == Array(1...200))
        await log.close()
    }

    /// A runner over `processors` whose exporter records what it gets, with `log` as its write-ahead log.
    func runner(_ processors: [any SpanProcessor], log: DurableLog) -> (PipelineRunner, RecordingExporter) {
        let exporter = RecordingExporter()
        let runner = PipelineRunner(processors: processors.enumerated().map { ProcessorInstance(id: ComponentID("p/\($0.offset)"), processor: $0.element) },
                                    exporters: [ExporterInstance(id: ComponentID("rec"), exporter: exporter, metrics: SelfMetrics())],
                                    durableLog: log, logger: Logger(label: "test"))
        return (runner, exporter)
    }

    /// Appends `batch` to `log` and runs it through `runner` at `now`, as the pipeline does.
    func accept(_ batch: SpanBatch, _ log: DurableLog, _ runner: PipelineRunner, now: UInt64) async throws {
        let record = try await log.append(batch)
        await runner.process(batch, record: record, now: now)
        await runner.drain()
    }

    @Test("the runner releases records once the exporters have their spans, not while a processor holds them")
    func runnerReleases() async throws {
        let folder = directory()
        let log = DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        _ = try await log.open()
        let (runner, exporter) = runner([HoldUntilTick()], log: log)
        try await runner.start()
        for spans in 1...3 { try await accept(makeBatch(spans: spans), log, runner, now: 1) }
        #expect(log.usage.records == 3)  // held by the processor: still needed
        await runner.tick(now: 2)
        await runner.drain()
        #expect(await exporter.batches.count == 3)
        #expect(log.usage.records == 0)
        #expect(try files(folder).isEmpty)
        await log.close()
    }

    @Test("a processor that holds spans across batches keeps their records, knowing nothing of the log")
    func processorHoldingAcrossBatches() async throws {
        let log = DurableLog(directory: directory(), encode: encodeForTest, decode: decodeForTest)
        _ = try await log.open()
        let (runner, exporter) = runner([Rename("-a"), GroupOf(spans: 5), Rename("-b")], log: log)
        try await runner.start()
        try await accept(makeBatch(spans: 2), log, runner, now: 10)  // record 1: held
        try await accept(makeBatch(spans: 2), log, runner, now: 20)  // record 2: held
        #expect(log.usage.records == 2)
        try await accept(makeBatch(spans: 2), log, runner, now: 30)  // record 3: 6 spans, all leave
        #expect(await exporter.batches.map(\.spanCount) == [6])
        #expect(log.usage.records == 0)
        try await accept(makeBatch(spans: 4), log, runner, now: 40)  // record 4: held alone
        #expect(log.usage.records == 1)
        await runner.shutdown(now: 50)
        #expect(log.usage.records == 0)
        await log.close()
    }

    @Test("spans one processor passes on at a tick keep their records while a later one holds them")
    func holdersInARow() async throws {
        let log = DurableLog(directory: directory(), encode: encodeForTest, decode: decodeForTest)
        _ = try await log.open()
        let (runner, exporter) = runner([HoldUntilTick(), GroupOf(spans: 5)], log: log)
        try await runner.start()
        try await accept(makeBatch(spans: 2), log, runner, now: 10)  // record 1
        try await accept(makeBatch(spans: 1), log, runner, now: 11)  // record 2
        // The first processor passes 3 spans (records 1 and 2) on; the second holds them from now on.
        await runner.tick(now: 20)
        await runner.drain()
        #expect(await exporter.batches.isEmpty)
        #expect(log.usage.records == 2)
        try await accept(makeBatch(spans: 2), log, runner, now: 30)  // record 3: held by the first
        #expect(log.usage.records == 3)
        await runner.tick(now: 40)  // 5 spans in the second: all leave
        await runner.drain()
        #expect(await exporter.batches.map(\.spanCount) == [5])
        #expect(log.usage.records == 0)
        await log.close()
    }
}

/// Holds spans until it has `spans` of them, then passes them all on as one batch; it says when the
/// first span it holds came, and nothing else about durability.
final class GroupOf: SpanProcessor {
    let spans: Int
    private let held = Mutex<(batch: SpanBatch, count: Int, since: UInt64?)>((SpanBatch(), 0, nil))
    init(spans: Int) { self.spans = spans }

    func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        held.withLock { held in
            held.batch.append(contentsOf: batch)
            held.count += batch.spanCount
            held.since = held.since ?? now
            guard held.count >= spans else { return [] }
            defer { held = (SpanBatch(), 0, nil) }
            return [held.batch]
        }
    }

    func flush() -> [SpanBatch] {
        held.withLock { held in
            defer { held = (SpanBatch(), 0, nil) }
            return held.count > 0 ? [held.batch] : []
        }
    }

    var oldestHeldArrival: UInt64? { held.withLock { $0.since } }
}
