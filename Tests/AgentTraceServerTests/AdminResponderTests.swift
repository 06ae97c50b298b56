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
}
