import NIOCore
import NIOHTTP1
import Pipeline
import Processors
import Foundation
import Prometheus
import Receivers
import ServiceGraph

/// The admin API: `GET /healthz` (the process is up), `GET /readyz` (every listener bound and every
/// exporter started; 503 before), `GET /metrics` (Prometheus text format 0.0.4), the service graph
/// (`/api/service-graph` and friends) and `GET /api/alerts` (recent alerts, most recent first).
final class AdminResponder: HTTP1Responder {
    private let metrics: SelfMetrics
    private let serviceGraphs: ServiceGraphs
    private let alerts: TriggeredAlerts
    private let isReady: @Sendable () -> Bool
    private let tokens: BearerTokens?
    private let unauthorized: Counter

    /// `isReady` decides `/readyz`; `tokens`, when set, guard everything but `/healthz` and `/readyz`.
    init(metrics: SelfMetrics, serviceGraphs: ServiceGraphs, alerts: TriggeredAlerts = TriggeredAlerts(),
         tokens: BearerTokens? = nil, isReady: @escaping @Sendable () -> Bool) {
        self.metrics = metrics
        self.serviceGraphs = serviceGraphs
        self.alerts = alerts
        self.tokens = tokens
        self.isReady = isReady
        unauthorized = metrics.counter("agenttrace_admin_unauthorized_requests_total",
                                       help: "Admin API requests refused with 401 for a missing or invalid bearer token.")
    }

    var maxBodySize: Int { 64 << 10 }

    func respond(toHead head: HTTPRequestHead) -> HTTP1Response? {
        guard head.method == .GET || head.method == .HEAD else {
            return text(.methodNotAllowed, "only GET is served\n", extra: ["allow": "GET, HEAD"])
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        // Probes carry no credentials, and the two answers reveal nothing.
        if let tokens, path != "/healthz", path != "/readyz", !tokens.allows(authorization: head.headers.first(name: "authorization")) {
            unauthorized.increment()
            return text(.unauthorized, "missing or invalid bearer token\n", extra: ["www-authenticate": #"Bearer realm="agenttrace-admin""#])
        }
        switch path {
        case "/healthz":
            return text(.ok, "ok\n")
        case "/readyz":
            return isReady() ? text(.ok, "ready\n") : text(.serviceUnavailable, "starting\n")
        case "/metrics":
            var response = HTTP1Response(status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"],
                                         body: ByteBuffer(bytes: metrics.render()))
            if head.method == .HEAD { response.body = nil }
            return response
        case "/api/service-graph", "/api/graph/data":
            guard let graph = serviceGraphs.first else { return noGraph() }
            let query = Self.query(head.uri)
            var since: UInt64?
            if let window = query["window"] {
                guard let duration = Duration(configText: window) else { return text(.badRequest, "window: expected a duration such as 15m\n") }
                // Per-minute history covers the last hour; a longer window reads the totals.
                if duration <= .seconds(3600) { since = wallClockNanos() &- UInt64(clamping: duration.nanoseconds) }
            }
            return HTTP1Response(status: .ok, headers: ["content-type": "application/json", "access-control-allow-origin": "*"],
                                 body: ByteBuffer(bytes: GraphJSON.encodeNodeGraph(graph.snapshot(since: since, service: query["service"]))))
        case "/api/graph/fields":
            return json(GraphJSON.fields(nodeDetails: serviceGraphs.first?.nodeDetailKeys ?? []))
        case "/api/alerts":
            // `{"alerts":[…]}`, most recent first; `?limit=N` for fewer.
            var limit: Int?
            if let limitText = Self.query(head.uri)["limit"] {
                guard let value = Int(limitText), value >= 0 else { return text(.badRequest, "limit: expected a whole number\n") }
                limit = value
            }
            return HTTP1Response(status: .ok, headers: ["content-type": "application/json", "access-control-allow-origin": "*"],
                                 body: ByteBuffer(bytes: alerts.json(limit: limit)))
        case "/api/health":
            return serviceGraphs.first == nil ? noGraph() : text(.ok, "API is working well!\n")
        case "/api/dependencies":
            guard let graph = serviceGraphs.first else { return noGraph() }
            let query = Self.query(head.uri)
            let endMilliseconds: UInt64
            if let text = query["endTs"] {
                guard let value = UInt64(text) else {
                    return json(GraphJSON.dependenciesError("unable to parse param 'endTs': \(text)"), status: .badRequest)
                }
                endMilliseconds = value
            } else {
                endMilliseconds = wallClockNanos() / 1_000_000
            }
            var lookbackMilliseconds: UInt64?
            if let text = query["lookback"] {
                guard let value = UInt64(text) else {
                    return json(GraphJSON.dependenciesError("unable to parse param 'lookback': \(text)"), status: .badRequest)
                }
                lookbackMilliseconds = value
            }
            let since = lookbackMilliseconds.map { endMilliseconds > $0 ? (endMilliseconds - $0) * 1_000_000 : 0 }
            return json(GraphJSON.dependencies(graph.snapshot(since: since, until: endMilliseconds &* 1_000_000)))
        default:
            return text(.notFound, "not found: try /healthz, /readyz, /metrics, /api/service-graph or /api/alerts\n")
        }
    }

    private func noGraph() -> HTTP1Response {
        text(.notFound, "no pipeline has a service_graph processor\n")
    }

    private func json(_ object: Any, status: HTTPResponseStatus = .ok) -> HTTP1Response {
        HTTP1Response(status: status, headers: ["content-type": "application/json", "access-control-allow-origin": "*"],
                      body: ByteBuffer(bytes: GraphJSON.encode(object)))
    }

    /// Query parameters, percent-decoded.
    static func query(_ uri: String) -> [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if parts.count == 2 { result[parts[0]] = parts[1] } else if parts.count == 1 { result[parts[0]] = "" }
        }
        return result
    }

    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response {
        text(.payloadTooLarge, "request too large\n")
    }

    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> EventLoopFuture<HTTP1Response> {
        // Every request is answered from its head.
        eventLoop.makeSucceededFuture(text(.notFound, "not found\n"))
    }

    private func text(_ status: HTTPResponseStatus, _ body: String, extra: HTTPHeaders = [:]) -> HTTP1Response {
        var headers: HTTPHeaders = ["content-type": "text/plain; charset=utf-8"]
        headers.add(contentsOf: extra)
        return HTTP1Response(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}
