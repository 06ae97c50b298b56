import DequeModule
import NIOCore
import Synchronization
import TraceModel

/// The bounded queue between receivers and the processor chain. Receivers `offer` without waiting and
/// learn at once when it is full (so the sender gets 429/503 and retries: backpressure, never a silent
/// drop); the pipeline task is the only consumer.
///
/// In a durable pipeline an offer that fits reserves its room, and the batch is written to the
/// write-ahead log on the log's own thread; right after the write, on that thread, it is queued with its
/// record number, so the queue's order is the log's. The receiver's answer waits for that future.
public final class BoundedBatchQueue: BatchSink, Sendable {
    /// What the consumer receives.
    public enum Item: Sendable {
        case batch(SpanBatch)
        /// A batch written to the write-ahead log as `record`.
        case recorded(SpanBatch, record: UInt64)
        /// Time has passed: at least every `tickInterval` while batches keep coming (so a consumer that
        /// never finds the queue empty still lets time pass), and when `offerTick` wakes an idle one.
        case tick
    }

    private struct State: ~Copyable {
        var items: Deque<(batch: SpanBatch, record: UInt64?)> = []
        var spans = 0
        /// Room taken by batches being written to the log.
        var reservedBatches = 0
        var reservedSpans = 0
        var tickPending = false
        var lastTick = ContinuousClock.now
        var closed = false
        var waiter: CheckedContinuation<Item?, Never>?
    }

    /// The most batches held at once.
    public let maxBatches: Int
    /// The most spans held at once.
    public let maxSpans: Int
    private let state = Mutex(State())
    /// When set, every accepted batch is written here before its offer completes.
    public let durableLog: DurableLog?
    /// The longest the consumer goes without a `.tick`, busy or idle (idle, `offerTick` brings it).
    public let tickInterval: Duration

    /// Creates a queue holding at most `maxBatches` batches and `maxSpans` spans.
    public init(maxBatches: Int, maxSpans: Int, durableLog: DurableLog? = nil, tickInterval: Duration = .milliseconds(50)) {
        self.maxBatches = maxBatches
        self.maxSpans = maxSpans
        self.durableLog = durableLog
        self.tickInterval = tickInterval
    }

    /// Batches waiting.
    public var count: Int { state.withLock { $0.items.count } }

    /// Spans waiting.
    public var spanCount: Int { state.withLock { $0.spans } }

    public func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome {
        guard let durableLog else { return OfferOutcome(taken: enqueue(batch, record: nil, reserved: false)) }
        let spans = batch.spanCount
        // Refuse before writing anything when there is no room; the log holds only what was accepted.
        let reserved = state.withLock { state in
            guard hasRoom(state, for: spans) else { return false }
            state.reservedBatches += 1
            state.reservedSpans += spans
            return true
        }
        guard reserved else { return .refused }
        let written = durableLog.append(batch, on: eventLoop) { [self] record in
            enqueue(batch, record: record, reserved: true)
        }
        return .pending(written.flatMapErrorThrowing { [self] _ in
            // Not written (the log is not open, or the disk failed): the sender retries.
            unreserve(spans: spans)
            return false
        })
    }

    public var isFull: Bool {
        state.withLock { state in
            state.closed || state.items.count + state.reservedBatches >= maxBatches || state.spans + state.reservedSpans >= maxSpans
        }
    }

    private func hasRoom(_ state: borrowing State, for spans: Int) -> Bool {
        let held = state.spans + state.reservedSpans
        return !state.closed && state.items.count + state.reservedBatches < maxBatches && (held == 0 || held + spans <= maxSpans)
    }

    private func unreserve(spans: Int) {
        state.withLock { state in
            state.reservedBatches -= 1
            state.reservedSpans -= spans
        }
    }

    /// Hands a batch to a waiting consumer or queues it, in one step under the lock, so an offer and the
    /// consumer going to sleep cannot pass each other. A `reserved` batch (already written to the log)
    /// has its room and goes in even past the limits; it is refused only once the queue is closed.
    private func enqueue(_ batch: SpanBatch, record: UInt64?, reserved: Bool) -> Bool {
        let spans = batch.spanCount
        let (taken, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Item?, Never>?) in
            if reserved {
                state.reservedBatches -= 1
                state.reservedSpans -= spans
            }
            guard !state.closed, reserved || hasRoom(state, for: spans) else { return (false, nil) }
            if let waiter = state.waiter {
                // The consumer sleeps only when nothing is queued and no tick is pending.
                state.waiter = nil
                return (true, waiter)
            }
            state.items.append((batch, record))
            state.spans += spans
            return (true, nil)
        }
        waiter?.resume(returning: Self.item(batch, record: record))
        return taken
    }

    /// Asks the consumer to let time pass; several ticks before it looks count as one.
    public func offerTick() {
        let waiter: CheckedContinuation<Item?, Never>? = state.withLock { state in
            guard !state.closed else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                state.lastTick = .now
                return waiter
            }
            state.tickPending = true
            return nil
        }
        waiter?.resume(returning: .tick)
    }

    /// Refuses further offers; the consumer still receives what is queued, then nil.
    public func close() {
        let waiter = state.withLock { state in
            state.closed = true
            let waiter = state.waiter
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next item, waiting when there is none; nil once closed and drained.
    public func next() async -> Item? {
        if let item = state.withLock({ take(&$0) }) { return item }
        return await withCheckedContinuation { continuation in
            let immediate: Item?? = state.withLock { state in
                if let item = take(&state) { return .some(item) }
                if state.closed { return .some(nil) }
                state.waiter = continuation
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    private static func item(_ batch: SpanBatch, record: UInt64?) -> Item {
        record.map { .recorded(batch, record: $0) } ?? .batch(batch)
    }

    private func take(_ state: inout State) -> Item? {
        // A tick goes first when one is pending or due: under sustained load the queue is never empty,
        // the consumer never waits, and the task posting ticks may not get a thread (one core, a
        // cooperative pool of one) — yet time must pass for batch timeouts and sampling decisions.
        if state.tickPending || (!state.items.isEmpty && ContinuousClock.now - state.lastTick >= tickInterval) {
            state.tickPending = false
            state.lastTick = .now
            return .tick
        }
        if let first = state.items.popFirst() {
            state.spans -= first.batch.spanCount
            return Self.item(first.batch, record: first.record)
        }
        return nil
    }
}
