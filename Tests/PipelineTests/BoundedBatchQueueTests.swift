import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing
import TraceModel
@testable import Pipeline

extension BatchSink {
    /// Offers to a sink that answers at once (not a durable one): true when taken.
    func offersNow(_ batch: SpanBatch) -> Bool {
        switch offer(batch, on: EmbeddedEventLoop()) {
        case .accepted: return true
        case .refused: return false
        case .pending:
            Issue.record("the sink should answer at once")
            return false
        }
    }

    /// Offers and waits for the answer, durable or not.
    func offers(_ batch: SpanBatch) async -> Bool {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        return (try? await offer(batch, on: loop).future(on: loop).get()) ?? false
    }
}

/// The value of a future already completed (on an `EmbeddedEventLoop`); nil while it is pending.
func answer<Value: Sendable>(_ future: EventLoopFuture<Value>) -> Value? {
    let result = Mutex<Value?>(nil)
    future.whenSuccess { value in result.withLock { $0 = value } }
    return result.withLock { $0 }
}

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
        #expect(queue.offersNow(makeBatch(spans: 1)))
        #expect(queue.offersNow(makeBatch(spans: 1)))
        #expect(!queue.offersNow(makeBatch(spans: 1)))
        _ = await queue.next()
        #expect(queue.offersNow(makeBatch(spans: 1)))
    }

    @Test("refuses past its span capacity")
    func spanCapacity() {
        let queue = BoundedBatchQueue(maxBatches: 100, maxSpans: 10)
        #expect(queue.offersNow(makeBatch(spans: 8)))
        #expect(!queue.offersNow(makeBatch(spans: 3)))
        #expect(queue.offersNow(makeBatch(spans: 2)))
        #expect(queue.spanCount == 10)
    }

    @Test("a pending tick is taken before queued batches, so time passes under sustained load")
    func tickFirst() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        #expect(queue.offersNow(makeBatch(spans: 1)))
        #expect(queue.offersNow(makeBatch(spans: 1)))
        queue.offerTick()
        if case .tick? = await queue.next() {} else { Issue.record("expected the tick first") }
        if case .batch? = await queue.next() {} else { Issue.record("expected a batch") }
    }

    @Test("close refuses new offers but the consumer drains what was accepted, in order")
    func closeDrains() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        #expect(queue.offersNow(makeBatch(spans: 1, traceHigh: 1)))
        #expect(queue.offersNow(makeBatch(spans: 2, traceHigh: 2)))
        queue.close()
        #expect(!queue.offersNow(makeBatch(spans: 1)))
        guard case .batch(let first)? = await queue.next(), case .batch(let second)? = await queue.next() else {
            Issue.record("expected two batches")
            return
        }
        #expect(first.spanCount == 1)
        #expect(second.spanCount == 2)
        #expect(await queue.next() == nil)
    }

    @Test("a full queue holds requests for room: each batch taken lets the longest-waiting one in")
    func waitForRoomInOrder() async {
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000, waitWhenFull: .seconds(2))
        let loop = EmbeddedEventLoop()
        let deadline = loop.now + .seconds(2)
        #expect(queue.offersNow(makeBatch(spans: 1)))
        let first = queue.waitForRoom(bytes: 100, until: deadline, on: loop)
        let second = queue.waitForRoom(bytes: 100, until: deadline, on: loop)
        #expect(queue.waitingRequests == 2)
        #expect(answer(first) == nil)
        _ = await queue.next()
        loop.run()
        #expect(answer(first) == true)
        #expect(answer(second) == nil)
        #expect(queue.offersNow(makeBatch(spans: 1)))
        _ = await queue.next()
        loop.run()
        #expect(answer(second) == true)
        #expect(queue.waitingRequests == 0)
        // With room, the answer is at once.
        #expect(answer(queue.waitForRoom(bytes: 100, until: deadline, on: loop)) == true)
    }

    @Test("a batch handed straight to a sleeping consumer takes no room: the next waiting request comes in")
    func waitForRoomPastSleepingConsumer() async {
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000, waitWhenFull: .seconds(2))
        let loop = EmbeddedEventLoop()
        #expect(queue.offersNow(makeBatch(spans: 1)))
        let first = queue.waitForRoom(bytes: 1, until: loop.now + .seconds(2), on: loop)
        let second = queue.waitForRoom(bytes: 1, until: loop.now + .seconds(2), on: loop)
        _ = await queue.next()
        #expect(answer(first) == true)
        async let sleeping = queue.next()
        // Let the consumer fall asleep on the empty queue: the first request's batch then goes straight to it.
        try? await Task.sleep(for: .milliseconds(100))
        #expect(queue.offersNow(makeBatch(spans: 1, traceHigh: 7)))
        _ = await sleeping
        #expect(queue.count == 0)
        #expect(answer(second) == true)
    }

    @Test("a request waiting for room is refused at its deadline, when the queue closes, or past the bytes allowed to wait")
    func waitForRoomRefusals() {
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000, waitWhenFull: .seconds(2), maxWaitingBytes: 1000)
        let loop = EmbeddedEventLoop()
        #expect(queue.offersNow(makeBatch(spans: 1)))
        let expiring = queue.waitForRoom(bytes: 600, until: loop.now + .seconds(2), on: loop)
        #expect(answer(queue.waitForRoom(bytes: 600, until: loop.now + .seconds(5), on: loop)) == false)
        loop.advanceTime(by: .milliseconds(1999))
        #expect(answer(expiring) == nil)
        loop.advanceTime(by: .milliseconds(1))
        #expect(answer(expiring) == false)
        #expect(queue.waitingRequests == 0)
        let closing = queue.waitForRoom(bytes: 900, until: loop.now + .seconds(2), on: loop)
        #expect(answer(closing) == nil)
        queue.close()
        #expect(answer(closing) == false)
        // A queue that does not hold requests refuses at once.
        let refusing = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000)
        #expect(refusing.offersNow(makeBatch(spans: 1)))
        #expect(answer(refusing.waitForRoom(bytes: 1, until: loop.now + .seconds(2), on: loop)) == false)
    }

    @Test("a waiting consumer is woken by an offer and by a tick")
    func wakesConsumer() async {
        let queue = BoundedBatchQueue(maxBatches: 10, maxSpans: 1000)
        async let item = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        #expect(queue.offersNow(makeBatch(spans: 3)))
        if case .batch(let batch)? = await item { #expect(batch.spanCount == 3) } else { Issue.record("expected a batch") }
        async let tick = queue.next()
        try? await Task.sleep(for: .milliseconds(20))
        queue.offerTick()
        queue.offerTick()
        if case .tick? = await tick {} else { Issue.record("expected a tick") }
    }

    @Test("a consumer that never finds the queue empty still gets a tick every tickInterval, with no offerTick")
    func ticksUnderSustainedLoad() async {
        // On one core the task posting ticks may never get a thread while the consumer is busy: the queue
        // itself must put ticks between batches.
        let queue = BoundedBatchQueue(maxBatches: 1000, maxSpans: 100_000, tickInterval: .milliseconds(20))
        for _ in 0..<1000 { #expect(queue.offersNow(makeBatch(spans: 1))) }
        let started = ContinuousClock.now
        var ticks = 0
        var batches = 0
        while ContinuousClock.now - started < .milliseconds(300), let item = await queue.next() {
            switch item {
            case .tick: ticks += 1
            case .batch, .recorded:
                batches += 1
                usleep(2_000)  // the processors' work: the consumer is busy, never waiting
            }
        }
        #expect(batches > 50)
        #expect(queue.count > 0, "the queue never ran dry")
        // 300 ms of work at one tick per 20 ms: about 15; far fewer would mean time stood still.
        #expect(ticks >= 5 && ticks <= 16, "\(ticks) ticks in 300 ms")
    }

    @Test("an offer racing the consumer going to sleep is never left unseen: every batch arrives, in order")
    func noLostWakeUp() async {
        // A small queue keeps the consumer going to sleep and the producer meeting a full queue, so offers
        // keep landing just as the consumer looks. A wake-up lost between "no waiter" and "append" would
        // leave a batch queued behind a sleeping consumer (the next offer would then overtake it).
        let queue = BoundedBatchQueue(maxBatches: 2, maxSpans: 1000)
        let total: UInt64 = 20_000
        let producer = Task.detached {
            for id in 1...total {
                while !queue.offersNow(makeBatch(spans: 1, traceHigh: id)) {
                    if Task.isCancelled { return }
                    await Task.yield()
                }
            }
        }
        // Only a bound on a failing run (the consumer would sleep for ever): closing wakes it with nil.
        let watchdog = Task.detached {
            try await Task.sleep(for: .seconds(60))
            queue.close()
        }
        var expected: UInt64 = 1
        var outOfOrder = 0
        while expected <= total, let item = await queue.next() {
            guard case .batch(let batch) = item else { continue }
            if batch.resourceSpans[0].scopeSpans[0].spans[0].traceID.high != expected { outOfOrder += 1 }
            expected += 1
        }
        watchdog.cancel()
        producer.cancel()
        await producer.value
        #expect(expected == total + 1)
        #expect(outOfOrder == 0)
    }
}
