import DequeModule
import Synchronization

/// The bounded queue in front of one stage of a pipeline: one task sends (the stage before, or whoever
/// feeds the pipeline) and one task receives. A send waits while the queue is full, so a slow stage holds
/// back the ones before it, down to the pipeline's own queue, whose receivers then refuse; nothing is
/// dropped and at most `capacity` items wait here.
final class StageQueue<Item: Sendable>: Sendable {
    private struct State: ~Copyable {
        var items: Deque<Item> = []
        var receiver: CheckedContinuation<Item, Never>?
        var senders: Deque<(item: Item, continuation: CheckedContinuation<Void, Never>)> = []
    }

    /// The most items waiting at once.
    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Queues `item`, waiting while `capacity` items wait already.
    func send(_ item: Item) async {
        switch state.withLock({ put(item, &$0) }) {
        case .queued:
            return
        case .handed(let receiver):
            receiver.resume(returning: item)
        case .full:
            await withCheckedContinuation { continuation in
                // Checked again under the lock; still full, the item waits with its sender, and the
                // receiver queues it (in order) and lets the sender go once it has made room.
                let outcome = state.withLock { state in
                    let outcome = put(item, &state)
                    if case .full = outcome { state.senders.append((item, continuation)) }
                    return outcome
                }
                switch outcome {
                case .queued:
                    continuation.resume()
                case .handed(let receiver):
                    receiver.resume(returning: item)
                    continuation.resume()
                case .full:
                    break
                }
            }
        }
    }

    private enum PutOutcome {
        case queued
        case handed(CheckedContinuation<Item, Never>)
        case full
    }

    /// Hands `item` to a waiting receiver or queues it when there is room (and no earlier sender waits).
    private func put(_ item: Item, _ state: inout State) -> PutOutcome {
        if let receiver = state.receiver {
            state.receiver = nil
            return .handed(receiver)
        }
        guard state.items.count < capacity, state.senders.isEmpty else { return .full }
        state.items.append(item)
        return .queued
    }

    /// The next item, waiting for one.
    func next() async -> Item {
        if let (item, sender) = state.withLock({ take(&$0) }) {
            sender?.resume()
            return item
        }
        return await withCheckedContinuation { continuation in
            let taken: (Item, CheckedContinuation<Void, Never>?)? = state.withLock { state in
                if let taken = take(&state) { return taken }
                state.receiver = continuation
                return nil
            }
            if let (item, sender) = taken {
                sender?.resume()
                continuation.resume(returning: item)
            }
        }
    }

    /// The first item; when a sender waits, its item joins the queue (room now) and it is returned to resume.
    private func take(_ state: inout State) -> (Item, CheckedContinuation<Void, Never>?)? {
        guard let item = state.items.popFirst() else { return nil }
        if let (waiting, sender) = state.senders.popFirst() {
            state.items.append(waiting)
            return (item, sender)
        }
        return (item, nil)
    }
}
