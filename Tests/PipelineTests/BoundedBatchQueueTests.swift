import Testing
import TraceModel
@testable import Pipeline

func makeBatch(spans: Int, traceHigh: UInt64 = 1) -> SpanBatch {
    SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: (0..<spans).map {
        Span(traceID: TraceID(high: traceHigh, low: 1), spanID: SpanID(UInt64($0 + 1)))
    })])])
}

@Suite("bounded batch queue")
struct BoundedBatchQueueTests {
    @Test("refuses past its batch capacity, and accepts again once drained")
    func batchCapacity() async {
        let queue = BoundedBatchQueue(maxBatches: 2, maxSpans: 1000)
        #expect(queue.offer(makeBatch(spans: 1)))
        #expect(queue.offer(makeBatch(spans: 1)))
        #expect(!queue.offer(makeBatch(spans: 1)))
        _ = await queue.next()
        #expect(queue.offer(makeBatch(spans: 1)))
    }

    @Test("refuses past its span capacity")
    func spanCapacity() {
        let queue = BoundedBatchQueue(maxBatches: 100, maxSpans: 10)
        #expect(queue.offer(makeBatch(spans: 8)))
        #expect(!queue.offer(makeBatch(spans: 3)))
        #expect(queue.offer(makeBatch(spans: 2)))
        #expect(queue.spanCount == 10)
    }

    @Test("a pending tick is taken before queued batches, so time passes under sustained load")
    func tickFirst() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        #expect(queue.offer(makeBatch(spans: 1)))
        #expect(queue.offer(makeBatch(spans: 1)))
        queue.offerTick()
        if case .tick? = await queue.next() {} else { Issue.record("expected the tick first") }
        if case .batch? = await queue.next() {} else { Issue.record("expected a batch") }
    }

    @Test("close refuses new offers but the consumer drains what was accepted, in order")
    func closeDrains() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        #expect(queue.offer(makeBatch(spans: 1, traceHigh: 1)))
        #expect(queue.offer(makeBatch(spans: 2, traceHigh: 2)))
        queue.close()
        #expect(!queue.offer(makeBatch(spans: 1)))
        guard case .batch(let first)? = await queue.next(), case .batch(let second)? = await queue.next() else {
            Issue.record("expected two batches")
            return
        }
        #expect(first.spanCount == 1)
        #expect(second.spanCount == 2)
        #expect(await queue.next() == nil)
    }

    @Test("a waiting consumer is woken by an offer and by a tick")
    func wakesConsumer() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        async let item = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        #expect(queue.offer(makeBatch(spans: 3)))
        if case .batch(let batch)? = await item { #expect(batch.spanCount == 3) } else { Issue.record("expected a batch") }
        async let tick = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        queue.offerTick()
        queue.offerTick()
        if case .tick? = await tick {} else { Issue.record("expected a tick") }
    }
}
