import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Pipeline
import Synchronization
import TraceWire

/// POSTs each batch to one URL, as OTLP/HTTP and Zipkin both take spans, and classifies the answer:
/// 2xx is success; 429, 502, 503, 504 and connection failures are retryable (honouring
/// `Retry-After`); everything else is permanent.
final class HTTPBatchSender: BatchSender {
    /// Turns a batch into a request body and its content type.
    typealias Encoder = @Sendable (SpanBatchPayload) throws -> (body: [UInt8], contentType: String)
    /// Reads a 2xx response's body (and its content type), with the batch sent, for what was not accepted.
    typealias ResponseReader = @Sendable (_ payload: SpanBatchPayload, _ body: [UInt8], _ contentType: String?) -> SendResult

    private let url: String
    private let headers: [(String, String)]
    private let gzip: Bool
    private let timeout: Duration
    private let encode: Encoder
    private let readResponse: ResponseReader?
    /// Made at the first send, so a sender that is built and dropped (`agenttrace validate`, a
    /// configuration that fails further on) owns no client: AsyncHTTPClient requires `shutdown()` before
    /// a client is released. Exporters send nothing after `shutdown()`.
    private let lazyClient = Mutex<HTTPClient?>(nil)
    private let tlsConfiguration: TLSConfiguration?

    /// `tls` configures https:// connections (trusted CAs, client certificate, verification);
    /// `readResponse` reads a successful answer's body (OTLP's `partial_success`); without it a 2xx is
    /// all accepted.
    init(url: String, headers: [(String, String)], gzip: Bool, timeout: Duration, tls: TLSClientSettings? = nil,
         readResponse: ResponseReader? = nil, encode: @escaping Encoder) throws {
        self.url = url
        self.headers = headers
        self.gzip = gzip
        self.timeout = timeout
        self.encode = encode
        self.readResponse = readResponse
        // The TLS settings are read (and fail) now; the client itself is made at the first send.
        tlsConfiguration = try tls?.configuration(alpn: ["http/1.1"])
    }

    private var client: HTTPClient {
        lazyClient.withLock { client in
            if let client { return client }
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
                tlsConfiguration: tlsConfiguration,
                redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)), decompression: .disabled))
            client = made
            return made
        }
    }

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        let encoded: (body: [UInt8], contentType: String)
        do {
            encoded = try encode(payload)
        } catch {
            throw .permanent("cannot encode the batch: \(error)")
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: encoded.contentType)
        request.headers.add(name: "user-agent", value: "AgentTrace")
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        var body = ByteBuffer(bytes: encoded.body)
        if gzip {
            do {
                body = try Gzip.deflate(body)
            } catch {
                throw .permanent("cannot gzip the batch: \(error)")
            }
            request.headers.add(name: "content-encoding", value: "gzip")
        }
        request.body = .bytes(body)
        let response: HTTPClientResponse
        let responseBody: ByteBuffer
        do {
            response = try await client.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            responseBody = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw .retryable("\(url): \(error)")
        }
        guard !(200..<300).contains(Int(response.status.code)) else {
            guard let readResponse else { return .accepted }
            return readResponse(payload, Array(responseBody.readableBytesView), response.headers.first(name: "content-type"))
        }
        throw ExportError.forHTTPStatus(Int(response.status.code), body: String(buffer: responseBody),
                                        retryAfter: response.headers.first(name: "retry-after").flatMap {
                                            RetryAfter.delay($0, now: Date().timeIntervalSince1970)
                                        })
    }

    func shutdown() async {
        let client = lazyClient.withLock { client in
            defer { client = nil }
            return client
        }
        try? await client?.shutdown()
    }
}
