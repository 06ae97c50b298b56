import NIOCore
import NIOHTTP1
import Pipeline
import Prometheus
import Receivers

/// One route as the admin API serves it: the component that contributed it and how a query names that
/// component (`processor=service_graph/b`).
struct AdminRouteEntry: Sendable {
    /// `processor` or `exporter`; nil for a resource the components share (one instance per collector).
    var kind: String?
    /// The component's configured name.
    var id: String
    var route: AdminRoute
}

/// The admin API: `GET /` and `/ui/…` (the live view, `LiveView`), `GET /api/self-metrics` (the
/// `agenttrace_*` families of `/metrics` alone), `GET /healthz` (the process is up), `GET /readyz` (every listener bound and every
/// exporter started; 503 before), `GET /metrics` (Prometheus text format 0.0.4), and the routes the
/// components contribute (`AdminRouteProvider`: the service graph, `/api/alerts`, …).
final class AdminResponder: HTTP1Responder {
    private let metrics: SelfMetrics
    /// The contributed routes by path, in configuration order.
    private let routes: [String: [AdminRouteEntry]]
    private let isReady: @Sendable () -> Bool
    private let tokens: BearerTokens?
    private let unauthorized: Counter

    /// `isReady` decides `/readyz`; `tokens`, when set, guard everything but `/healthz` and `/readyz`.
    init(metrics: SelfMetrics, routes: [AdminRouteEntry] = [], tokens: BearerTokens? = nil, isReady: @escaping @Sendable () -> Bool) {
        self.metrics = metrics
        self.routes = Dictionary(grouping: routes, by: \.route.path)
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
        let request = AdminRequest(target: head.uri)
        // A browser cannot add a header to the page it opens or to the <script> it loads: the live view
        // also takes the token as RFC 6750 §2.3's `access_token` query parameter (its own paths only).
        let viewToken = LiveView.serves(request.path) ? request.query["access_token"] : nil
        // Probes carry no credentials, and the two answers reveal nothing.
        if let tokens, request.path != "/healthz", request.path != "/readyz",
           !tokens.allows(authorization: head.headers.first(name: "authorization"))
            && !(viewToken.map { tokens.allows(authorization: "Bearer " + $0) } ?? false) {
            unauthorized.increment()
            return text(.unauthorized, "missing or invalid bearer token\n", extra: ["www-authenticate": #"Bearer realm="agenttrace-admin""#])
        }
        var response: HTTP1Response
        switch request.path {
        case "/healthz":
            response = text(.ok, "ok\n")
        case "/readyz":
            response = isReady() ? text(.ok, "ready\n") : text(.serviceUnavailable, "starting\n")
        case "/metrics":
            response = HTTP1Response(status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"],
                                     body: ByteBuffer(bytes: metrics.render()))
        case "/api/self-metrics":
            // the `agenttrace_*` families only: what the live view's Collector tab polls, small at any graph size
            response = HTTP1Response(status: .ok, headers: ["content-type": "text/plain; version=0.0.4; charset=utf-8"],
                                     body: ByteBuffer(bytes: metrics.renderOwn()))
        case _ where LiveView.serves(request.path):
            response = liveView(request, token: tokens == nil ? nil : viewToken)
        default:
            guard let answer = contributed(request) else { return nil }
            response = answer
        }
        if head.method == .HEAD { response.body = nil }
        return response
    }

    /// A route found, or the answer saying none serves the request.
    enum RouteChoice {
        case success(AdminRoute)
        case failure(HTTP1Response)
    }

    /// The route that answers `request`, or the answer saying none does.
    private func route(for request: AdminRequest) -> RouteChoice {
        guard let candidates = routes[request.path] ?? subpathRoutes(request.path) else {
            let known = (["/", "/healthz", "/readyz", "/metrics", "/api/self-metrics"] + routes.keys.sorted()).joined(separator: ", ")
            return .failure(text(.notFound, "not found: \(request.path); this collector serves \(known)\n"))
        }
        var chosen = candidates[0]
        if let named = candidates.first(where: { entry in entry.kind.map { request.query[$0] == entry.id } ?? false }) {
            chosen = named
        } else if let kind = candidates.compactMap(\.kind).first, let asked = request.query[kind] {
            let served = candidates.map(\.id).joined(separator: ", ")
            return .failure(text(.notFound, "no \(kind) \(asked) serves \(request.path); these do: \(served)\n"))
        }
        return .success(chosen.route)
    }

    /// A component's route; `?processor=ID` or `?exporter=ID` picks among several instances of one path.
    /// Nil for a route that answers asynchronously: `respond(to:body:eventLoop:)` then awaits it.
    private func contributed(_ request: AdminRequest) -> HTTP1Response? {
        switch route(for: request) {
        case .failure(let answer): return answer
        case .success(let route):
            guard route.respondAsync == nil else { return nil }
            return response(route.respond(request))
        }
    }

    private func response(_ answer: AdminResponse) -> HTTP1Response {
        var headers: HTTPHeaders = ["content-type": answer.contentType]
        if answer.contentType.hasPrefix("application/json") { headers.add(name: "access-control-allow-origin", value: "*") }
        return HTTP1Response(status: HTTPResponseStatus(statusCode: answer.status), headers: headers, body: ByteBuffer(bytes: answer.body))
    }

    /// The live view's page or one of its files; `token` (already checked) is carried into the page's asset addresses.
    private func liveView(_ request: AdminRequest, token: String?) -> HTTP1Response {
        guard let asset = LiveView.asset(request.path, accessToken: token) else {
            return text(.notFound, "not found: \(request.path); the live view serves / and /ui/\(LiveView.assets.keys.sorted().joined(separator: ", /ui/"))\n")
        }
        var headers: HTTPHeaders = ["content-type": asset.contentType]
        headers.add(contentsOf: LiveView.securityHeaders)
        return HTTP1Response(status: .ok, headers: headers, body: ByteBuffer(bytes: asset.body))
    }

    /// The routes of the longest prefix (`/api/traces/`) that serves subpaths and `path` lies under.
    private func subpathRoutes(_ path: String) -> [AdminRouteEntry]? {
        routes.lazy.filter { path.hasPrefix($0.key) && path.count > $0.key.count && $0.value[0].route.matchesSubpaths }
            .max { $0.key.count < $1.key.count }?.value
    }

    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response {
        text(.payloadTooLarge, "request too large\n")
    }

    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> EventLoopFuture<HTTP1Response> {
        // Only asynchronous routes get here (every other request is answered from its head): the route runs
        // as a task, off the event loop, and the promise completes on the connection's loop.
        let request = AdminRequest(target: head.uri)
        guard case .success(let route) = route(for: request), let respondAsync = route.respondAsync else {
            return eventLoop.makeSucceededFuture(text(.notFound, "not found\n"))
        }
        let promise = eventLoop.makePromise(of: HTTP1Response.self)
        let isHead = head.method == .HEAD
        Task {
            var answer = response(await respondAsync(request))
            if isHead { answer.body = nil }
            promise.succeed(answer)
        }
        return promise.futureResult
    }

    private func text(_ status: HTTPResponseStatus, _ body: String, extra: HTTPHeaders = [:]) -> HTTP1Response {
        var headers: HTTPHeaders = ["content-type": "text/plain; charset=utf-8"]
        headers.add(contentsOf: extra)
        return HTTP1Response(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}
