import DequeModule
import Synchronization

/// A bounded first-in first-out queue of alerts for one sink, with one consumer that waits for the next.
/// `offer` never waits: when full it refuses, and the caller counts the drop.
final class AlertQueue: Sendable {
    private struct State: ~Copyable {
        var items: Deque<Alert> = []
        var waiter: CheckedContinuation<Alert?, Never>?
        var closed = false
    }

    /// The most alerts held.
    let capacity: Int
    private let state = Mutex(State())

    /// An empty queue holding at most `capacity` alerts.
    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Adds an alert; false when the queue is full or closed.
    func offer(_ alert: Alert) -> Bool {
        let (accepted, waiter): (Bool, CheckedContinuation<Alert?, Never>?) = state.withLock { state in
            guard !state.closed else { return (false, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            guard state.items.count < capacity else { return (false, nil) }
            state.items.append(alert)
            return (true, nil)
        }
        waiter?.resume(returning: alert)
        return accepted
    }

    /// The next alert, waiting for one; after `close`, what is left and then nil.
    func next() async -> Alert? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Alert?, Never>) in
            let ready: Alert?? = state.withLock { state in
                if let first = state.items.popFirst() { return .some(first) }
                if state.closed { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Refuses new alerts and wakes the consumer; what is queued can still be taken.
    func close() {
        let waiter = state.withLock { state in
            state.closed = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Takes everything queued (at shutdown, past the drain deadline).
    func removeAll() -> Int {
        state.withLock { state in
            defer { state.items.removeAll() }
            return state.items.count
        }
    }

    /// Alerts waiting.
    var count: Int { state.withLock { $0.items.count } }
}
