import Foundation
import Logging
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

    @Test("an accepted batch is on disk before offer returns; a restart recovers it with its mark")
    func survivesRestart() throws {
        let folder = directory()
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000,
                                      durableLog: try DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest))
        #expect(queue.offer(makeBatch(spans: 3, traceHigh: 7)))
        #expect(queue.offer(makeBatch(spans: 4, traceHigh: 8)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).count == 2)

        // The process dies here; a new one opens the same folder.
        let reopened = try DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        let recovered = try reopened.recover()
        #expect(recovered.map(\.batch.spanCount) == [3, 4])
        #expect(recovered.map(\.sequence) == [1, 2])
        #expect(try reopened.append(makeBatch(spans: 1)) == 3)  // numbering continues
        reopened.release(upTo: 1)
        reopened.remove(2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["00000000000000000003.otlp"])
        #expect(reopened.usage.records == 1)
    }

    @Test("a full queue refuses without writing")
    func refusesWithoutWriting() throws {
        let folder = directory()
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000,
                                      durableLog: try DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest))
        #expect(queue.offer(makeBatch(spans: 1)))
        #expect(!queue.offer(makeBatch(spans: 1)))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).count == 1)
    }

    @Test("the runner releases records once the exporters have a batch, merged marks included")
    func runnerReleases() async throws {
        let folder = directory()
        let log = try DurableLog(directory: folder, encode: encodeForTest, decode: decodeForTest)
        let exporter = RecordingExporter()
        let runner = PipelineRunner(processors: [ProcessorInstance(id: ComponentID("hold"), processor: HoldUntilTick())],
                                    exporters: [ExporterInstance(id: ComponentID("rec"), exporter: exporter, metrics: SelfMetrics())],
                                    durableLog: log, logger: Logger(label: "test"))
        try await runner.start()
        for spans in 1...3 {
            var batch = makeBatch(spans: spans)
            batch.durableMark = try log.append(batch)
            await runner.process(batch, now: 1)
        }
        #expect(log.usage.records == 3)  // held by the processor: still needed
        await runner.tick(now: 2)
        #expect(log.usage.records == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).isEmpty)
    }

    @Test("merging keeps the highest mark; splitting gives it to the last part only")
    func marks() {
        var first = makeBatch(spans: 2)
        first.durableMark = 4
        var second = makeBatch(spans: 3)
        second.durableMark = 9
        first.append(contentsOf: second)
        #expect(first.durableMark == 9)
        #expect(first.split(maxSpans: 2).map(\.durableMark) == [0, 0, 9])
    }
}
