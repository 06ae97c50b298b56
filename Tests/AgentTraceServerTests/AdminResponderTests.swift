import HTTP1TestSupport
import Pipeline
import Receivers
import Testing
@testable import AgentTraceServer

/// The admin API's responder behind the same HTTP/1 handlers the listener uses, in an `EmbeddedChannel`.
@Suite("AdminResponder in an EmbeddedChannel")
struct AdminResponderTests {
    /// A route that answers with the id it was built for, so a test sees which instance served it.
    func route(_ path: String, answering id: String) -> AdminRoute {
        AdminRoute(path) { request in
            AdminResponse(contentType: "application/json", body: Array(#"{"id":"\#(id)","query":"\#(request.query["window"] ?? "")"}"#.utf8))
        }
    }

    func connection(tokens: [String]? = nil, ready: Bool = true) throws -> HTTP1Connection {
        let routes = [
            AdminRouteEntry(kind: "processor", id: "service_graph/a", route: route("/api/service-graph", answering: "a")),
            AdminRouteEntry(kind: "processor", id: "service_graph/b", route: route("/api/service-graph", answering: "b")),
        ]
        let responder = AdminResponder(metrics: SelfMetrics(), routes: routes,
                                       tokens: tokens.map { BearerTokens(BearerAuthConfiguration(tokens: $0)) }, isReady: { ready })
        return try HTTP1Connection(responder: responder)
    }

    func body(_ response: ParsedResponse?) -> String { String(decoding: response?.body ?? [], as: UTF8.self) }

    @Test("probes: /healthz is 200 always, /readyz 503 until ready, /metrics in Prometheus text format 0.0.4")
    func probes() throws {
        let starting = try connection(ready: false)
        #expect(try starting.send(HTTP1Connection.get("/healthz")).map(\.status) == [200])
        #expect(try starting.send(HTTP1Connection.get("/readyz")).map(\.status) == [503])
        let ready = try connection()
        #expect(try ready.send(HTTP1Connection.get("/readyz")).map(\.status) == [200])
        let metrics = try ready.send(HTTP1Connection.get("/metrics"))
        #expect(metrics.first?.status == 200)
        #expect(metrics.first?.header("content-type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(body(metrics.first).contains("# TYPE agenttrace_admin_unauthorized_requests_total counter"))
    }

    @Test("without ?processor= the first instance answers; ?processor=ID picks one; an unknown ID is a 404 naming those that serve")
    func instances() throws {
        let admin = try connection()
        let first = try admin.send(HTTP1Connection.get("/api/service-graph?window=5m"))
        #expect(first.first?.status == 200)
        #expect(body(first.first) == #"{"id":"a","query":"5m"}"#)
        #expect(first.first?.header("access-control-allow-origin") == "*")
        #expect(body(try admin.send(HTTP1Connection.get("/api/service-graph?processor=service_graph/b")).first) == #"{"id":"b","query":""}"#)
        let unknown = try admin.send(HTTP1Connection.get("/api/service-graph?processor=service_graph/c"))
        #expect(unknown.first?.status == 404)
        #expect(body(unknown.first).contains("service_graph/a, service_graph/b"))
        let missing = try admin.send(HTTP1Connection.get("/api/nothing"))
        #expect(missing.first?.status == 404)
        #expect(body(missing.first).contains("/api/service-graph"))
        #expect(admin.channel.isActive)  // errors answered, the kept-alive connection stays
    }

    @Test("a subpath route answers every path under its prefix; the longest prefix wins and an exact path comes first")
    func subpaths() throws {
        func answering(_ id: String) -> AdminRoute {
            AdminRoute(subpathsOf: id == "traces" ? "/api/traces/" : "/api/traces/special/") { request in
                .text("\(id) \(request.path)")
            }
        }
        let routes = [
            AdminRouteEntry(kind: "exporter", id: "memory", route: answering("traces")),
            AdminRouteEntry(kind: "exporter", id: "memory", route: answering("special")),
            AdminRouteEntry(kind: "exporter", id: "memory", route: route("/api/traces", answering: "exact")),
            AdminRouteEntry(kind: "exporter", id: "memory", route: route("/api/traces/exact", answering: "exact")),
        ]
        let admin = try HTTP1Connection(responder: AdminResponder(metrics: SelfMetrics(), routes: routes, isReady: { true }))
        #expect(body(try admin.send(HTTP1Connection.get("/api/traces/abc")).first) == "traces /api/traces/abc")
        #expect(body(try admin.send(HTTP1Connection.get("/api/traces/special/x")).first) == "special /api/traces/special/x")
        #expect(body(try admin.send(HTTP1Connection.get("/api/traces/exact")).first) == #"{"id":"exact","query":""}"#)
        #expect(body(try admin.send(HTTP1Connection.get("/api/traces?window=1")).first) == #"{"id":"exact","query":"1"}"#)
        #expect(try admin.send(HTTP1Connection.get("/api/tracesabc")).first?.status == 404)
    }

    @Test("RFC 9110: HEAD has the GET headers and no body; another method is 405 with Allow")
    func methods() throws {
        let admin = try connection()
        let head = try admin.send(HTTP1Connection.get("/healthz", method: "HEAD"))
        #expect(head.first?.status == 200)
        #expect(head.first?.body == [])
        let post = try admin.send(HTTP1Connection.get("/healthz", method: "DELETE"))
        #expect(post.first?.status == 405)
        #expect(post.first?.header("allow") == "GET, HEAD")
    }

    @Test("RFC 6750: with tokens, everything but the probes needs the bearer token; a refusal is 401 with WWW-Authenticate")
    func bearerTokens() throws {
        let admin = try connection(tokens: ["s3cret"])
        #expect(try admin.send(HTTP1Connection.get("/healthz")).map(\.status) == [200])
        #expect(try admin.send(HTTP1Connection.get("/readyz")).map(\.status) == [200])
        let refused = try admin.send(HTTP1Connection.get("/metrics"))
        #expect(refused.first?.status == 401)
        #expect(refused.first?.header("www-authenticate")?.hasPrefix("Bearer") == true)
        #expect(try admin.send(HTTP1Connection.get("/api/service-graph", headers: ["authorization: Bearer wrong"])).map(\.status) == [401])
        let allowed = try admin.send(HTTP1Connection.get("/metrics", headers: ["authorization: bearer s3cret"]))
        #expect(allowed.first?.status == 200)
        #expect(body(allowed.first).contains("agenttrace_admin_unauthorized_requests_total 2"))
    }

    @Test("the live view: / is HTML, /ui/app.js JavaScript, /ui/app.css CSS, each with a policy forbidding inline script; an unknown asset is 404")
    func liveViewAssets() throws {
        let admin = try connection()
        let page = try admin.send(HTTP1Connection.get("/")).first
        #expect(page?.status == 200)
        #expect(page?.header("content-type") == "text/html; charset=utf-8")
        #expect(body(page).contains(#"<script src="ui/app.js" defer></script>"#))
        #expect(!body(page).contains("{{asset-query}}"))
        for (path, type) in [("/ui/app.js", "text/javascript; charset=utf-8"), ("/ui/app.css", "text/css; charset=utf-8")] {
            let asset = try admin.send(HTTP1Connection.get(path)).first
            #expect(asset?.status == 200)
            #expect(asset?.header("content-type") == type)
            #expect(asset?.header("x-content-type-options") == "nosniff")
            // CSP Level 3: a script-src without 'unsafe-inline' blocks inline <script> and on* handler attributes
            let policy = asset?.header("content-security-policy") ?? ""
            #expect(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"))
            #expect((asset?.body.count ?? 0) > 1000)
        }
        #expect(body(try admin.send(HTTP1Connection.get("/ui/app.js")).first).contains("textContent"))
        let head = try admin.send(HTTP1Connection.get("/", method: "HEAD")).first
        #expect(head?.status == 200 && head?.body == [] && head?.header("content-type") == "text/html; charset=utf-8")
        for missing in ["/ui/", "/ui/nothing.js", "/ui/../metrics", "/ui/app.js/x"] {
            let answer = try admin.send(HTTP1Connection.get(missing)).first
            #expect(answer?.status == 404, "\(missing)")
            #expect(answer?.header("content-type") == "text/plain; charset=utf-8")
        }
        #expect(try admin.send(HTTP1Connection.get("/", method: "POST")).map(\.status) == [405])
    }

    @Test("RFC 6750: with tokens, the live view needs the bearer token or its access_token query parameter, which the page carries to its assets and no other route accepts")
    func liveViewTokens() throws {
        let admin = try connection(tokens: ["s3cret/+"])
        for path in ["/", "/ui/app.js", "/ui/app.css", "/?access_token=wrong", "/ui/app.js?access_token=wrong"] {
            let refused = try admin.send(HTTP1Connection.get(path)).first
            #expect(refused?.status == 401, "\(path)")
            #expect(refused?.header("www-authenticate")?.hasPrefix("Bearer") == true)
        }
        let byHeader = try admin.send(HTTP1Connection.get("/", headers: ["authorization: Bearer s3cret/+"])).first
        #expect(byHeader?.status == 200)
        #expect(body(byHeader).contains(#"src="ui/app.js" defer"#))
        // the token percent-encoded (RFC 3986: every byte but the unreserved ones), in both asset addresses
        let byQuery = try admin.send(HTTP1Connection.get("/?access_token=s3cret%2F%2B")).first
        #expect(byQuery?.status == 200)
        #expect(byQuery?.header("referrer-policy") == "no-referrer")
        #expect(body(byQuery).contains(#"src="ui/app.js?access_token=s3cret%2F%2B" defer"#))
        #expect(body(byQuery).contains(#"href="ui/app.css?access_token=s3cret%2F%2B""#))
        #expect(try admin.send(HTTP1Connection.get("/ui/app.js?access_token=s3cret%2F%2B")).map(\.status) == [200])
        // only the view's own paths take the query parameter
        #expect(try admin.send(HTTP1Connection.get("/metrics?access_token=s3cret%2F%2B")).map(\.status) == [401])
        #expect(try admin.send(HTTP1Connection.get("/api/service-graph?access_token=s3cret%2F%2B")).map(\.status) == [401])
    }

    @Test("/api/self-metrics: the agenttrace_* families of /metrics alone, without series published under other names")
    func selfMetrics() throws {
        let metrics = SelfMetrics()
        metrics.counter("agenttrace_receiver_accepted_spans_total", help: "accepted").increment(by: Int64(7))
        metrics.counter("traces_service_graph_request_total", help: "edge", labels: [("client", "a"), ("server", "b")]).increment()
        let admin = try HTTP1Connection(responder: AdminResponder(metrics: metrics, isReady: { true }))
        let own = try admin.send(HTTP1Connection.get("/api/self-metrics")).first
        #expect(own?.status == 200)
        #expect(own?.header("content-type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(body(own).contains("agenttrace_receiver_accepted_spans_total 7"))
        #expect(!body(own).contains("traces_service_graph_request_total"))
        let all = body(try admin.send(HTTP1Connection.get("/metrics")).first)
        #expect(all.contains("agenttrace_receiver_accepted_spans_total 7"))
        #expect(all.contains(#"traces_service_graph_request_total{client="a",server="b"} 1"#))
    }
}
