import DequeModule
import NIOCore
import Synchronization
import TraceModel

/// The bounded queue between receivers and the processor chain. Receivers `offer` without waiting and
/// learn at once when it is full; they then hold the request for up to `waitWhenFull` (`waitForRoom`:
/// each batch the consumer takes lets the longest-waiting request in), and past it the sender gets 503 /
/// UNAVAILABLE and retries: backpressure, never a silent drop. The pipeline task is the only consumer.
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
        /// Requests waiting for room, longest-waiting first, and the bytes they hold.
        var roomWaiters: Deque<RoomWaiter> = []
        var waitingBytes = 0
        var nextWaiterID: UInt64 = 0
    }

    private struct RoomWaiter {
        let id: UInt64
        let bytes: Int
        let promise: EventLoopPromise<Bool>
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
    /// How long a receiver holds a request while the queue is full (`service.queue.wait_when_full`).
    public let waitWhenFull: Duration
    /// The most request bytes held waiting for room at once; past it a full queue refuses at once.
    public let maxWaitingBytes: Int

    /// Creates a queue holding at most `maxBatches` batches and `maxSpans` spans.
    public init(maxBatches: Int, maxSpans: Int, durableLog: DurableLog? = nil, tickInterval: Duration = .milliseconds(50),
                waitWhenFull: Duration = .zero, maxWaitingBytes: Int = 64 << 20) {
        self.maxBatches = maxBatches
        self.maxSpans = maxSpans
        self.durableLog = durableLog
        self.tickInterval = tickInterval
        self.waitWhenFull = waitWhenFull
        self.maxWaitingBytes = maxWaitingBytes
    }

    /// Requests waiting for room.
    public var waitingRequests: Int { state.withLock { $0.roomWaiters.count } }

    public func waitForRoom(bytes: Int, until deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        let promise = eventLoop.makePromise(of: Bool.self)
        let registered: UInt64?? = state.withLock { state in
            if hasRoom(state, for: 1) { return .some(nil) }
            guard !state.closed, waitWhenFull > .zero, state.waitingBytes + bytes <= maxWaitingBytes else { return .none }
            state.nextWaiterID &+= 1
            state.roomWaiters.append(RoomWaiter(id: state.nextWaiterID, bytes: bytes, promise: promise))
            state.waitingBytes += bytes
            return .some(state.nextWaiterID)
        }
        switch registered {
        case .none:
            promise.succeed(false)
        case .some(.none):
            promise.succeed(true)
        case .some(.some(let id)):
            let timeout = eventLoop.scheduleTask(deadline: deadline) { [self] in
                let expired = state.withLock { state -> RoomWaiter? in
                    guard let index = state.roomWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                    state.waitingBytes -= state.roomWaiters[index].bytes
                    return state.roomWaiters.remove(at: index)
                }
                expired?.promise.succeed(false)
            }
            promise.futureResult.whenComplete { _ in timeout.cancel() }
        }
        return promise.futureResult
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
        let admitted = state.withLock { state in
            state.reservedBatches -= 1
            state.reservedSpans -= spans
            return admit(&state)
        }
        admitted?.promise.succeed(true)
    }

    /// Hands a batch to a waiting consumer or queues it, in one step under the lock, so an offer and the
    /// consumer going to sleep cannot pass each other. A `reserved` batch (already written to the log)
    /// has its room and goes in even past the limits; it is refused only once the queue is closed.
    private func enqueue(_ batch: SpanBatch, record: UInt64?, reserved: Bool) -> Bool {
        let spans = batch.spanCount
        let (taken, waiter, admitted) = state.withLock { state -> (Bool, CheckedContinuation<Item?, Never>?, RoomWaiter?) in
            if reserved {
                state.reservedBatches -= 1
                state.reservedSpans -= spans
            }
            guard !state.closed, reserved || hasRoom(state, for: spans) else { return (false, nil, nil) }
            if let waiter = state.waiter {
                // The consumer sleeps only when nothing is queued and no tick is pending. Handed over
                // directly, the batch takes no room, so the longest-waiting request may come in too.
                state.waiter = nil
                return (true, waiter, admit(&state))
            }
            state.items.append((batch, record))
            state.spans += spans
            return (true, nil, nil)
        }
        admitted?.promise.succeed(true)
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

    /// Refuses further offers (and every request waiting for room); the consumer still receives what is
    /// queued, then nil.
    public func close() {
        let (waiter, roomWaiters) = state.withLock { state in
            state.closed = true
            let waiter = state.waiter
            state.waiter = nil
            let roomWaiters = state.roomWaiters
            state.roomWaiters = []
            state.waitingBytes = 0
            return (waiter, roomWaiters)
        }
        waiter?.resume(returning: nil)
        for roomWaiter in roomWaiters { roomWaiter.promise.succeed(false) }
    }

    /// The next item, waiting when there is none; nil once closed and drained.
    public func next() async -> Item? {
        let (item, admitted) = state.withLock { state in
            let item = take(&state)
            return (item, item == nil ? nil : admit(&state))
        }
        admitted?.promise.succeed(true)
        if let item { return item }
        return await withCheckedContinuation { continuation in
            let (immediate, admitted): (Item??, RoomWaiter?) = state.withLock { state in
                if let item = take(&state) { return (.some(item), admit(&state)) }
                if state.closed { return (.some(nil), nil) }
                state.waiter = continuation
                return (.none, nil)
            }
            admitted?.promise.succeed(true)
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    /// The longest-waiting request, when a batch has just left and there is room for another.
    private func admit(_ state: inout State) -> RoomWaiter? {
        guard !state.roomWaiters.isEmpty, hasRoom(state, for: 1), let first = state.roomWaiters.popFirst() else { return nil }
        state.waitingBytes -= first.bytes
        return first
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
