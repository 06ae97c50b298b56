import NIOConcurrencyHelpers
import NIOCore
import Pipeline
import Synchronization
import TraceModel

/// A sink that records what it takes; `accepting: false` refuses every offer, `full: true` also says
/// so up front (`isFull`), as a pipeline at capacity does.
final class RecordingSink: BatchSink {
    let accepting: Bool
    let full: Bool
    let received = Mutex<[SpanBatch]>([])
    init(accepting: Bool = true, full: Bool = false) {
        self.accepting = accepting
        self.full = full
    }
    var isFull: Bool { full }
    func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome {
        guard accepting else { return .refused }
        received.withLock { $0.append(batch) }
        return .accepted
    }
}

/// A future that was not complete when the test looked.
struct NotCompleted: Error {}

extension EventLoopFuture where Value: Sendable {
    /// The result of a future that has already completed (work done inline on an `EmbeddedEventLoop`);
    /// throws `NotCompleted` when it is still pending.
    func completedValue() throws -> Value {
        let result = NIOLockedValueBox<Result<Value, any Error>?>(nil)
        whenComplete { value in result.withLockedValue { $0 = value } }
        guard let value = result.withLockedValue({ $0 }) else { throw NotCompleted() }
        return try value.get()
    }
}

extension SelfMetrics {
    /// The value of the one series of `name` whose labels include every `labels` pair, read from the
    /// Prometheus text this registry renders (what a scrape sees).
    func value(_ name: String, _ labels: [String: String]) -> Double? {
        let text = String(decoding: render(), as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") {
            let matches = labels.allSatisfy { line.contains("\($0.key)=\"\($0.value)\"") }
            if matches, let number = line.split(separator: " ").last.flatMap({ Double($0) }) { return number }
        }
        return nil
    }
}
