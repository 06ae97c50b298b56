import Logging
import NIOCore
import Synchronization
import Testing
import TraceModel
@testable import Pipeline

/// Holds every batch until a tick, then releases them: enough to check how the runner chains time.
final class HoldUntilTick: SpanProcessor {
    private let held = Mutex<(batches: [SpanBatch], since: UInt64?)>(([], nil))
    func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        held.withLock {
            $0.batches.append(batch)
            $0.since = $0.since ?? now
        }
        return []
    }
    func tick(now: UInt64) -> [SpanBatch] { held.withLock { let all = $0.batches; $0 = ([], nil); return all } }
    func flush() -> [SpanBatch] { tick(now: 0) }
    var oldestHeldArrival: UInt64? { held.withLock { $0.since } }
}

/// Renames every span, to see processors run in order.
final class Rename: SpanProcessor {
    let suffix: String
    init(_ suffix: String) { self.suffix = suffix }
    var oldestHeldArrival: UInt64? { nil }
    func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        var batch = batch
        for r in batch.resourceSpans.indices {
            for s in batch.resourceSpans[r].scopeSpans.indices {
                for i in batch.resourceSpans[r].scopeSpans[s].spans.indices { batch.resourceSpans[r].scopeSpans[s].spans[i].name += suffix }
            }
        }
        return [batch]
    }
}

actor RecordingExporter: SpanExporter {
    var batches: [SpanBatch] = []
    var started = false
    var stopped = false
    var starts = 0
    var shutdowns = 0
    /// Batches that arrived after shutdown (lost in a real exporter).
    var lateBatches = 0
    let failing: Bool
    init(failing: Bool = false) { self.failing = failing }
    func start() {
        started = true
        starts += 1
    }
    func export(_ batch: SpanBatch) throws {
        if failing { throw CancellationError() }
        if stopped { lateBatches += 1 }
        batches.append(batch)
    }
    func shutdown() {
        stopped = true
        shutdowns += 1
    }
}

@Suite("pipeline runner")
struct PipelineRunnerTests {
    @Test("processors run in order; ticks release held batches through the rest of the chain")
    func ordering() async throws {
        let metrics = SelfMetrics()
        let exporter = RecordingExporter()
        let runner = PipelineRunner(
            processors: [ProcessorInstance(id: ComponentID("a"), processor: Rename("-a")),
                         ProcessorInstance(id: ComponentID("hold"), processor: HoldUntilTick()),
                         ProcessorInstance(id: ComponentID("b"), processor: Rename("-b"))],
            exporters: [ExporterInstance(id: ComponentID("rec"), exporter: exporter, metrics: metrics)],
            logger: Logger(label: "test"))
        try await runner.start()
        var batch = makeBatch(spans: 1)
        batch.resourceSpans[0].scopeSpans[0].spans[0].name = "op"
        await runner.process(batch, now: 1)
        await runner.drain()
        #expect(await exporter.batches.isEmpty)
        await runner.tick(now: 2)
        await runner.drain()
        let exported = await exporter.batches
        #expect(exported.count == 1)
        #expect(exported.first?.resourceSpans[0].scopeSpans[0].spans[0].name == "op-a-b")
        await runner.shutdown(now: 3)
        #expect(await exporter.stopped)
    }

    @Test("a failing exporter does not stop the others; spans are counted per exporter")
    func failures() async throws {
        let metrics = SelfMetrics()
        let good = ExporterInstance(id: ComponentID("good"), exporter: RecordingExporter(), metrics: metrics)
        let bad = ExporterInstance(id: ComponentID("bad"), exporter: RecordingExporter(failing: true), metrics: metrics)
        let runner = PipelineRunner(processors: [], exporters: [good, bad], logger: Logger(label: "test"))
        try await runner.start()
        await runner.process(makeBatch(spans: 4), now: 1)
        await runner.drain()
        #expect(good.tally.sent.load(ordering: .relaxed) == 4)
        #expect(bad.tally.failed.load(ordering: .relaxed) == 4)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_exporter_send_failed_spans_total{exporter=\"bad\"} 4"))
        #expect(text.contains("agenttrace_exporter_sent_spans_total{exporter=\"good\"} 4"))
    }

    @Test("an exporter several pipelines share starts once and shuts down once, after the last of them drained")
    func sharedExporter() async throws {
        // The OpenTelemetry Collector's architecture: "multiple pipelines can include the same exporter".
        let metrics = SelfMetrics()
        let exporter = RecordingExporter()
        let shared = ExporterInstance(id: ComponentID("file"), exporter: exporter, metrics: metrics, pipelines: 2)
        let first = PipelineRunner(processors: [], exporters: [shared], logger: Logger(label: "test"))
        let second = PipelineRunner(processors: [ProcessorInstance(id: ComponentID("hold"), processor: HoldUntilTick())],
                                    exporters: [shared], logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await first.start() }
            group.addTask { try await second.start() }
            try await group.waitForAll()
        }
        #expect(await exporter.starts == 1)
        await first.process(makeBatch(spans: 2), now: 1)
        await second.process(makeBatch(spans: 3), now: 1)   // held until the second pipeline drains
        await first.shutdown(now: 2)
        #expect(await exporter.shutdowns == 0)
        await second.shutdown(now: 2)
        #expect(await exporter.shutdowns == 1)
        #expect(await exporter.lateBatches == 0)
        #expect(await exporter.batches.map(\.spanCount) == [2, 3])
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_exporter_sent_spans_total{exporter=\"file\"} 5"))
    }

    @Test("stages work on different batches at once, each processor seeing every batch in order")
    func stagesOverlap() async throws {
        // The second processor, given the first batch, waits until the first processor has been given the
        // second batch: a runner that ran the whole chain for one batch before the next never gets there.
        let exporter = RecordingExporter()
        let overlap = Overlap()
        let runner = PipelineRunner(
            processors: [ProcessorInstance(id: ComponentID("first"), processor: overlap.first),
                         ProcessorInstance(id: ComponentID("second"), processor: overlap.second)],
            exporters: [ExporterInstance(id: ComponentID("rec"), exporter: exporter, metrics: SelfMetrics())],
            stages: 2, logger: Logger(label: "test"))
        #expect(runner.stageProcessors == [0..<1, 1..<2])
        try await runner.start()
        for spans in 1...5 { await runner.process(makeBatch(spans: spans), now: UInt64(spans)) }
        await runner.shutdown(now: 10)
        #expect(overlap.secondWaitedFor)
        #expect(overlap.first.seen.withLock { $0 } == [1, 2, 3, 4, 5])
        #expect(overlap.second.seen.withLock { $0 } == [1, 2, 3, 4, 5])
        #expect(await exporter.batches.map(\.spanCount) == [1, 2, 3, 4, 5])
    }

    @Test("the chain is cut into as many stages as asked (at most processors plus one), evenly, in order")
    func stageCuts() {
        func cuts(_ processors: Int, _ stages: Int) -> [Range<Int>] {
            PipelineRunner(processors: (0..<processors).map { ProcessorInstance(id: ComponentID("p/\($0)"), processor: Rename("")) },
                           exporters: [], stages: stages, logger: Logger(label: "test")).stageProcessors
        }
        // The default chain's six processors on two cores: three, then three and the exporters.
        #expect(cuts(6, 2) == [0..<3, 3..<6])
        #expect(cuts(6, 1) == [0..<6])
        #expect(cuts(2, 8) == [0..<1, 1..<2, 2..<2])  // the last stage only exports
        #expect(cuts(0, 4) == [0..<0])
        #expect(cuts(5, 3) == [0..<2, 2..<4, 4..<5])
        // By default, one stage per core the process may use (its CPU affinity).
        let byDefault = PipelineRunner(processors: (0..<6).map { ProcessorInstance(id: ComponentID("p/\($0)"), processor: Rename("")) },
                                       exporters: [], logger: Logger(label: "test"))
        #expect(byDefault.stageProcessors.count == min(System.coreCount, 7))
    }
}

/// Two processors that record the batches they see (by span count); the second, on its first batch,
/// spins until the first has seen a second batch (up to 10 s).
final class Overlap: Sendable {
    final class Recorder: SpanProcessor {
        let seen = Mutex<[Int]>([])
        let onProcess: @Sendable (Int) -> Void
        init(onProcess: @escaping @Sendable (Int) -> Void) { self.onProcess = onProcess }
        var oldestHeldArrival: UInt64? { nil }
        func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
            let count = seen.withLock { seen in
                seen.append(batch.spanCount)
                return seen.count
            }
            onProcess(count)
            return [batch]
        }
    }

    let first: Recorder
    let second: Recorder
    private let waited = Flag()
    /// True once the second processor, on its first batch, saw the first processor given a second batch.
    var secondWaitedFor: Bool { waited.isSet }

    init() {
        let firstRecorder = Recorder { _ in }
        first = firstRecorder
        let waited = waited
        second = Recorder { count in
            guard count == 1 else { return }
            let deadline = ContinuousClock.now + .seconds(10)
            while firstRecorder.seen.withLock({ $0.count }) < 2, ContinuousClock.now < deadline {}
            if firstRecorder.seen.withLock({ $0.count }) >= 2 { waited.set() }
        }
    }
}
