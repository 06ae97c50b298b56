import DequeModule
import Synchronization
import TraceModel

/// The bounded queue between receivers and the processor chain. Receivers `offer` without waiting and
/// learn at once when it is full (so the sender gets 429/503 and retries: backpressure, never a silent
/// drop); the pipeline task is the only consumer.
public final class BoundedBatchQueue: BatchSink, Sendable {
    /// What the consumer receives.
    public enum Item: Sendable {
        case batch(SpanBatch)
        /// Time has passed; coalesced, so at most one is pending.
        case tick
    }

    private struct State: ~Copyable {
        var items: Deque<SpanBatch> = []
        var spans = 0
        var tickPending = false
        var closed = false
        var waiter: CheckedContinuation<Item?, Never>?
    }

    /// The most batches held at once.
    public let maxBatches: Int
    /// The most spans held at once.
    public let maxSpans: Int
    private let state = Mutex(State())
    /// When set, every accepted batch is written here before `offer` returns true.
    public let durableLog: DurableLog?
    /// Keeps log appends and enqueueing in one order across receiver threads.
    private let durableOrder = Mutex(())

    /// Creates a queue holding at most `maxBatches` batches and `maxSpans` spans.
    public init(maxBatches: Int, maxSpans: Int, durableLog: DurableLog? = nil) {
        self.maxBatches = maxBatches
        self.maxSpans = maxSpans
        self.durableLog = durableLog
    }

    /// Batches waiting.
    public var count: Int { state.withLock { $0.items.count } }

    /// Spans waiting.
    public var spanCount: Int { state.withLock { $0.spans } }

    public func offer(_ batch: SpanBatch) -> Bool {
        guard let durableLog else { return enqueue(batch) }
        return durableOrder.withLock { _ in
            // Refuse before writing anything when there is no room; the log holds only what was accepted.
            guard hasRoom(for: batch.spanCount) else { return false }
            var marked = batch
            do {
                marked.durableMark = try durableLog.append(batch)
            } catch {
                return false  // cannot make it durable: the sender retries
            }
            return enqueue(marked, force: true)
        }
    }

    public var isFull: Bool {
        state.withLock { $0.closed || $0.items.count >= maxBatches || $0.spans >= maxSpans }
    }

    private func hasRoom(for spans: Int) -> Bool {
        state.withLock { state in
            !state.closed && state.items.count < maxBatches && (state.spans == 0 || state.spans + spans <= maxSpans)
        }
    }

    /// Adds a batch (past the limits when `force`, for a batch already written to the log).
    private func enqueue(_ batch: SpanBatch, force: Bool = false) -> Bool {
        let spans = batch.spanCount
        let waiter: CheckedContinuation<Item?, Never>? = state.withLock { state in
            guard !state.closed else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            return nil
        }
        if let waiter {
            waiter.resume(returning: .batch(batch))
            return true
        }
        return state.withLock { state in
            guard !state.closed, force || state.items.count < maxBatches,
                  force || state.spans == 0 || state.spans + spans <= maxSpans else { return false }
            state.items.append(batch)
            state.spans += spans
            return true
        }
    }

    /// Asks the consumer to let time pass; several ticks before it looks count as one.
    public func offerTick() {
        let waiter: CheckedContinuation<Item?, Never>? = state.withLock { state in
            guard !state.closed else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
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
        if let item = state.withLock({ Self.take(&$0) }) { return item }
        return await withCheckedContinuation { continuation in
            let immediate: Item?? = state.withLock { state in
                if let item = Self.take(&state) { return .some(item) }
                if state.closed { return .some(nil) }
                state.waiter = continuation
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    private static func take(_ state: inout State) -> Item? {
        // A pending tick goes first: under sustained load the queue is never empty, and time must
        // still pass for batch timeouts and sampling decisions.
        if state.tickPending {
            state.tickPending = false
            return .tick
        }
        if let batch = state.items.popFirst() {
            state.spans -= batch.spanCount
            return .batch(batch)
        }
        return nil
    }
}
