import Foundation
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import Pipeline
import Synchronization

/// Why an alert could not be delivered, and whether trying again may help.
public enum AlertDeliveryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A timeout, a refused connection, 429 or 5xx: worth retrying, after `retryAfter` when the sink said so.
    case retryable(String, retryAfter: Duration?)
    /// Any other answer (400 bad payload, 403, 404 unknown hook): retrying would fail the same way.
    case permanent(String)

    public var description: String {
        switch self {
        case .retryable(let reason, _): "retryable: \(reason)"
        case .permanent(let reason): "permanent: \(reason)"
        }
    }

    /// The class of an HTTP answer that is not 2xx: 429 and 5xx are retryable (Slack and PagerDuty both ask
    /// to retry those), the rest permanent.
    static func forHTTPStatus(_ status: Int, body: String, retryAfter: Duration?) -> AlertDeliveryError {
        let reason = "HTTP \(status): \(body.prefix(200))"
        return status == 429 || (500..<600).contains(status) ? .retryable(reason, retryAfter: retryAfter) : .permanent(reason)
    }
}

/// POSTs a JSON body to a URL: the one thing alert delivery needs from the network, so tests can stand in.
public protocol AlertTransport: Sendable {
    /// Sends `body` as `application/json`; returns on a 2xx answer.
    func post(url: String, headers: [String: String], body: [UInt8], timeout: Duration) async throws(AlertDeliveryError)
    /// Releases connections.
    func shutdown() async
}

/// `AlertTransport` over AsyncHTTPClient, as the HTTP exporters send: no redirects followed, a 5s connect
/// timeout, the request's own time limit.
public final class HTTPAlertTransport: AlertTransport {
    public init() {}

    /// Made at the first post, so a transport that is built and dropped (`agenttrace validate`) owns no
    /// client: AsyncHTTPClient requires `shutdown()` before a client is released.
    private let lazyClient = Mutex<HTTPClient?>(nil)

    private var client: HTTPClient {
        lazyClient.withLock { client in
            if let client { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
                redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)), decompression: .disabled))
            client = made
            return made
        }
    }

    public func post(url: String, headers: [String: String], body: [UInt8], timeout: Duration) async throws(AlertDeliveryError) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "user-agent", value: "AgentTrace")
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        let answer: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            answer = try await response.body.collect(upTo: 64 << 10)
        } catch {
            throw .retryable("\(url): \(error)", retryAfter: nil)
        }
        let status = Int(response.status.code)
        guard !(200..<300).contains(status) else { return }
        let retryAfter = response.headers.first(name: "retry-after")
            .flatMap { RetryAfter.delay($0, now: Date().timeIntervalSince1970) }
        throw AlertDeliveryError.forHTTPStatus(status, body: String(buffer: answer), retryAfter: retryAfter)
    }

    public func shutdown() async {
        let client = lazyClient.withLock { client in
            defer { client = nil }
            return client
        }
        try? await client?.shutdown()
    }
}
