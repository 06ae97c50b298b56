import DequeModule
import JSONText
import Pipeline
import Synchronization

/// The alerts every alerting processor of a collector fired, the most recent kept (bounded), served at
/// `GET /api/alerts`. One per collector: processors get it from `ComponentContext.shared`.
public final class AlertLog: AdminRouteProvider {
    /// Alerts kept for the API by default.
    public static let defaultCapacity = 1000

    private struct State: ~Copyable {
        var recent: Deque<Alert> = []
        var total = 0
    }

    /// The most alerts kept; older ones are forgotten.
    public let capacity: Int
    private let state = Mutex(State())

    /// Keeps at most `capacity` alerts (at least one).
    public init(capacity: Int = AlertLog.defaultCapacity) {
        self.capacity = max(1, capacity)
    }

    /// The collector's log, made on first use.
    public static func shared(in context: ComponentContext) -> AlertLog {
        context.shared.resource(AlertLog.self) { AlertLog() }
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

    /// `GET /api/alerts[?limit=N]`.
    public var adminRoutes: [AdminRoute] {
        [AdminRoute("/api/alerts") { [self] request in
            var limit: Int?
            if let text = request.query["limit"] {
                guard let value = Int(text), value >= 0 else { return .text("limit: expected a whole number\n", status: 400) }
                limit = value
            }
            return .json(json(limit: limit))
        }]
    }
}
