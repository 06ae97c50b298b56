import NIOCore
import NIOHTTP1
import Pipeline
import Receivers

/// The admin API: `GET /healthz` (the process is up), `GET /readyz` (every listener bound and every
/// exporter started; 503 before), `GET /metrics` (Prometheus text format 0.0.4).
final class AdminResponder: HTTP1Responder {
    private let metrics: SelfMetrics
    private let isReady: @Sendable () -> Bool

    /// `isReady` decides `/readyz`.
    init(metrics: SelfMetrics, isReady: @escaping @Sendable () -> Bool) {
        self.metrics = metrics
        self.isReady = isReady
    }

    var maxBodySize: Int { 64 << 10 }

    func respond(toHead head: HTTPRequestHead) -> HTTP1Response? {
        guard head.method == .GET || head.method == .HEAD else {
            return text(.methodNotAllowed, "only GET is served\n", extra: ["allow": "GET, HEAD"])
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
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
        default:
            return text(.notFound, "not found: try /healthz, /readyz or /metrics\n")
        }
    }

    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response {
        text(.payloadTooLarge, "request too large\n")
    }

    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> HTTP1Response {
        // Every request is answered from its head.
        text(.notFound, "not found\n")
    }

    private func text(_ status: HTTPResponseStatus, _ body: String, extra: HTTPHeaders = [:]) -> HTTP1Response {
        var headers: HTTPHeaders = ["content-type": "text/plain; charset=utf-8"]
        headers.add(contentsOf: extra)
        return HTTP1Response(status: status, headers: headers, body: ByteBuffer(string: body))
    }
}
