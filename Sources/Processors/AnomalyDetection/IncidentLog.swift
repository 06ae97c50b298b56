import Alerting
import DequeModule
import JSONText
import Pipeline
import Synchronization

/// Anomaly alerts grouped into incidents, served at `GET /api/incidents`: alerts that fire within the window
/// of each other on agents connected by a call (either direction, along the edges the caller gives: the
/// service graph's and the detector's own), or about calls to the same peer, are one incident. Each incident
/// names a `probable_cause`: the most downstream node of the incident that every anomalous agent's calls
/// reach (when a shared LLM gateway slows, every caller goes anomalous and the gateway is the node they all
/// reach). The sinks hear of an incident once, `groupWait` after it opens, then with the alerts that joined at
/// most every `groupInterval` (`notifications(now:owner:)`). One per collector, shared by the
/// `anomaly_detection` processors.
public final class IncidentLog: AdminRouteProvider {
    /// Incidents kept for the API.
    public static let capacity = 200

    /// One incident.
    public struct Incident: Sendable {
        /// Numbered from 1 in opening order.
        public var id: Int
        /// Its alerts, in firing order (at most 100 kept).
        public var alerts: [Alert]
        /// The anomalous agents, and the peers their alerts are about.
        public var agents: [String]
        public var peers: [String]
        /// First and last alert, Unix nanoseconds.
        public var start: UInt64
        public var lastUpdate: UInt64
        /// The node every anomalous agent's calls reach, most downstream first; nil when none.
        public var probableCause: String?
        /// Alerts counted, including those no longer kept.
        public var alertCount: Int
        /// The processor whose sinks get its notifications: the one whose alert opened it.
        public var owner: String
        /// When its last notification was made; nil before the first.
        public var notifiedAt: UInt64?
        /// Alerts in no notification yet (at most 100), and incidents merged into it since the last one.
        var pending: [Alert] = []
        var pendingMerged: [Int] = []
    }

    private struct State: ~Copyable {
        var incidents: Deque<Incident> = []
        var nextID = 1
    }

    /// Alerts closer than this (on connected agents) join one incident.
    public let window: UInt64
    /// An incident's first notification waits this long after its first alert, so the alerts that come with
    /// it (and incidents that merge into it) are in it.
    public let groupWait: UInt64
    /// Alerts that join an incident after its first notification go out together, at most this often.
    public let groupInterval: UInt64
    private let state = Mutex(State())

    /// An empty log grouping alerts within `window`, notifying `groupWait` after an incident opens and then
    /// at most every `groupInterval`.
    public init(window: Duration = .seconds(30), groupWait: Duration = .seconds(5), groupInterval: Duration = .seconds(60)) {
        self.window = UInt64(clamping: max(window.nanoseconds, 0))
        self.groupWait = UInt64(clamping: max(groupWait.nanoseconds, 0))
        self.groupInterval = UInt64(clamping: max(groupInterval.nanoseconds, 0))
    }

    /// The collector's log, made on first use (the first processor's settings win).
    public static func shared(in context: ComponentContext, window: Duration, groupWait: Duration = .seconds(5),
                              groupInterval: Duration = .seconds(60)) -> IncidentLog {
        context.shared.resource(IncidentLog.self) { IncidentLog(window: window, groupWait: groupWait, groupInterval: groupInterval) }
    }

    /// Files `alerts` into incidents along `edges` (caller, callee); `owner` (the processor) sends the
    /// notifications of the incidents it opens (`notifications(now:owner:)`).
    public func record(_ alerts: [Alert], edges: [(String, String)], owner: String = "") {
        var neighbours: [String: Set<String>] = [:]
        for (from, to) in edges {
            neighbours[from, default: []].insert(to)
            neighbours[to, default: []].insert(from)
        }
        var downstream: [String: Set<String>] = [:]
        for (from, to) in edges { downstream[from, default: []].insert(to) }
        state.withLock { state in
            for alert in alerts {
                let peer = Self.peer(of: alert)
                var linked = neighbours[alert.agent, default: []]
                linked.insert(alert.agent)
                // Open incidents (recent enough) that the alert is linked to, oldest first: one of their agents is
                // the alert's agent or calls it or is called by it, or the alert is about a peer theirs are about
                // (a shared callee), or their alerts are about the alert's agent.
                let matching = state.incidents.indices.filter { index in
                    let incident = state.incidents[index]
                    guard alert.time &- incident.lastUpdate <= window || incident.lastUpdate > alert.time else { return false }
                    return !linked.isDisjoint(with: incident.agents) || incident.peers.contains(alert.agent)
                        || peer.map { incident.peers.contains($0) || incident.agents.contains($0) } ?? false
                }
                // Merge every matching incident into one: the lowest-numbered that sinks have heard of, else the
                // lowest-numbered. Its number and owner stay; the others' alerts not yet notified go out with its next
                // notification, which names the incidents merged into it.
                let ids = matching.map { state.incidents[$0].id }
                if let target = matching.min(by: { a, b in
                    let (x, y) = (state.incidents[a], state.incidents[b])
                    return (x.notifiedAt == nil ? 1 : 0, x.id) < (y.notifiedAt == nil ? 1 : 0, y.id)
                }) {
                    var incident = state.incidents[target]
                    for index in matching where index != target {
                        let merged = state.incidents[index]
                        incident.alerts = (merged.alerts + incident.alerts).sorted { $0.time < $1.time }
                        incident.pending = (merged.pending + incident.pending).sorted { $0.time < $1.time }
                        incident.alertCount += merged.alertCount
                        incident.start = min(incident.start, merged.start)
                        if merged.notifiedAt != nil { incident.pendingMerged.append(merged.id) }
                        incident.pendingMerged += merged.pendingMerged
                        for agent in merged.agents where !incident.agents.contains(agent) { incident.agents.append(agent) }
                        for node in merged.peers where !incident.peers.contains(node) { incident.peers.append(node) }
                    }
                    state.incidents.removeAll { ids.contains($0.id) && $0.id != incident.id }
                    incident.alerts.append(alert)
                    if incident.alerts.count > 100 { incident.alerts.removeFirst(incident.alerts.count - 100) }
                    incident.pending.append(alert)
                    if incident.pending.count > 100 { incident.pending.removeFirst(incident.pending.count - 100) }
                    incident.alertCount += 1
                    incident.lastUpdate = max(incident.lastUpdate, alert.time)
                    if !incident.agents.contains(alert.agent) { incident.agents.append(alert.agent) }
                    if let peer, !incident.peers.contains(peer) { incident.peers.append(peer) }
                    incident.probableCause = Self.probableCause(incident, downstream: downstream)
                    // Keep the newest last.
                    state.incidents.removeAll { $0.id == incident.id }
                    state.incidents.append(incident)
                } else {
                    var incident = Incident(id: state.nextID, alerts: [alert], agents: [alert.agent], peers: peer.map { [$0] } ?? [],
                                            start: alert.time, lastUpdate: alert.time, probableCause: nil, alertCount: 1, owner: owner,
                                            pending: [alert])
                    incident.probableCause = Self.probableCause(incident, downstream: downstream)
                    state.nextID += 1
                    if state.incidents.count == Self.capacity { state.incidents.removeFirst() }
                    state.incidents.append(incident)
                }
            }
        }
    }

    /// The notifications due at `now` for the incidents `owner` opened: one per incident, `groupWait` after its
    /// first alert, with every alert so far (`opened`); then, at most every `groupInterval`, one with the
    /// alerts that joined since (`updated`). `all`: every pending one at once (at shutdown, the end of a replay).
    public func notifications(now: UInt64, owner: String = "", all: Bool = false) -> [Alert] {
        state.withLock { state in
            var due: [Alert] = []
            for index in state.incidents.indices where state.incidents[index].owner == owner && !state.incidents[index].pending.isEmpty {
                let incident = state.incidents[index]
                let ready = incident.notifiedAt.map { now >= $0 &+ groupInterval } ?? (now >= incident.start &+ groupWait)
                guard ready || all else { continue }
                let details = Alert.Incident(id: incident.id, status: incident.notifiedAt == nil ? "opened" : "updated",
                                             agents: incident.agents, probableCause: incident.probableCause, start: incident.start,
                                             lastUpdate: incident.lastUpdate, alertCount: incident.alertCount,
                                             merged: incident.pendingMerged, alerts: incident.pending)
                if let notification = Alert.incidentNotification(details) { due.append(notification) }
                state.incidents[index].pending = []
                state.incidents[index].pendingMerged = []
                state.incidents[index].notifiedAt = now
            }
            return due.sorted { $0.incident?.id ?? 0 < $1.incident?.id ?? 0 }
        }
    }

    /// The peer an alert is about (latency or errors of calls to it), if any.
    static func peer(of alert: Alert) -> String? {
        guard let anomaly = alert.anomaly else { return nil }
        return anomaly.labels.first { $0.0 == "peer" }?.1
    }

    /// The node that every anomalous agent is or reaches (following calls downstream), the most downstream of
    /// those: none of the other such nodes is reached from it. Candidates are the incident's agents, and the
    /// peers that alerts of at least two agents are about (one slow caller of a shared service more likely
    /// has a problem of its own).
    static func probableCause(_ incident: Incident, downstream: [String: Set<String>]) -> String? {
        func reach(_ start: String) -> Set<String> {
            var seen: Set<String> = [start]
            var frontier = [start]
            while let node = frontier.popLast() {
                for next in downstream[node, default: []] where seen.insert(next).inserted { frontier.append(next) }
            }
            return seen
        }
        var callers: [String: Set<String>] = [:]
        for alert in incident.alerts {
            if let peer = peer(of: alert) { callers[peer, default: []].insert(alert.agent) }
        }
        let implicated = incident.peers.filter { (callers[$0]?.count ?? 0) >= 2 || incident.agents.contains($0) }
        let reaches = incident.agents.map(reach)
        let candidates = (incident.agents + implicated.filter { !incident.agents.contains($0) })
            .filter { candidate in reaches.allSatisfy { $0.contains(candidate) } }
        let mostDownstream = candidates.filter { candidate in
            let below = reach(candidate)
            return !candidates.contains { $0 != candidate && below.contains($0) }
        }
        return mostDownstream.sorted().first
    }

    /// Up to `limit` incidents, newest first.
    public func recent(limit: Int? = nil) -> [Incident] {
        state.withLock { state in Array(state.incidents.reversed().prefix(limit ?? state.incidents.count)) }
    }

    /// `{"incidents":[…]}`, newest first.
    public func json(limit: Int? = nil) -> [UInt8] {
        JSONValue.object([("incidents", .array(recent(limit: limit).map { incident in
            .object([
                ("id", .integer(Int64(incident.id))),
                ("start", .string(RFC3339.format(unixNanos: incident.start))),
                ("start_unix_nano", .integer(Int64(clamping: incident.start))),
                ("last_update", .string(RFC3339.format(unixNanos: incident.lastUpdate))),
                ("last_update_unix_nano", .integer(Int64(clamping: incident.lastUpdate))),
                ("agents", .array(incident.agents.map(JSONValue.string))),
                ("peers", .array(incident.peers.map(JSONValue.string))),
                ("probable_cause", incident.probableCause.map(JSONValue.string) ?? .null),
                ("alert_count", .integer(Int64(incident.alertCount))),
                ("alerts", .array(incident.alerts.map(\.fields))),
            ])
        }))]).encoded()
    }

    /// `GET /api/incidents[?limit=N]`.
    public var adminRoutes: [AdminRoute] {
        [AdminRoute("/api/incidents") { [self] request in
            var limit: Int?
            if let text = request.query["limit"] {
                guard let value = Int(text), value >= 0 else { return .text("limit: expected a whole number\n", status: 400) }
                limit = value
            }
            return .json(json(limit: limit))
        }]
    }
}
