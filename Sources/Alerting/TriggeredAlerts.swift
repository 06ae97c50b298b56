import JSONText
import DequeModule
import ServiceLifecycle
import Synchronization

/// The alerts every `threshold_triggers` processor fired, the most recent kept (bounded), for
/// `GET /api/alerts`; and the processors' delivery services, for the collector to run.
public final class TriggeredAlerts: Sendable {
    /// Alerts kept for the API by default.
    public static let defaultCapacity = 1000

    private struct State: ~Copyable {
        var recent: Deque<Alert> = []
        var deliveries: [AlertDelivery] = []
        var total = 0
    }

    /// The most alerts kept; older ones are forgotten.
    public let capacity: Int
    private let state = Mutex(State())

    /// Keeps at most `capacity` alerts (at least one).
    public init(capacity: Int = TriggeredAlerts.defaultCapacity) {
        self.capacity = max(1, capacity)
    }

    /// Keeps fired alerts, in firing order.
    public func record(_ alerts: [Alert]) {
        state.withLock { state in
            for alert in alerts {
                if state.recent.count == capacity { state.recent.removeFirst() }
                state.recent.append(alert)
            }
            state.total += alerts.count
        }
    }

    /// Registers a processor's delivery service.
    public func add(_ delivery: AlertDelivery) {
        state.withLock { $0.deliveries.append(delivery) }
    }

    /// The delivery services of the processors built so far; the collector runs them.
    public var services: [any Service] { state.withLock { $0.deliveries.map { $0 as any Service } } }

    /// Up to `limit` alerts, most recent first.
    public func recent(limit: Int? = nil) -> [Alert] {
        state.withLock { state in Array(state.recent.reversed().prefix(limit ?? state.recent.count)) }
    }

    /// Alerts fired since start, including those no longer kept.
    public var total: Int { state.withLock { $0.total } }

    /// `{"alerts":[…]}`: up to `limit` alerts, most recent first, each with the webhook payload's fields.
    public func json(limit: Int? = nil) -> [UInt8] {
        JSONValue.object([("alerts", .array(recent(limit: limit).map(\.fields)))]).encoded()
    }
}
