import ConfigYAML
import Foundation
import NIOCore
import NIOHTTP1
import Pipeline
import ServerSupport
import Testing
@testable import Receivers

@Suite("HTTP/1 deadlines")
struct HTTP1DeadlinesTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let limits = HTTP1Limits(connection: ConnectionLimits(readHeaderTimeout: .seconds(10), readTimeout: .seconds(60)),
                             idleTimeout: .seconds(120), maxHeaderBytes: 1024, maxHeaderCount: 10)

    @Test("a head trickled past read_header_timeout gets 408")
    func slowloris() {
        var deadlines = HTTP1Deadlines(limits: limits, now: start)
        deadlines.read(1, now: start)
        #expect(deadlines.check(now: start + .seconds(9)) == .proceed)
        deadlines.read(1, now: start + .seconds(9))
        #expect(deadlines.check(now: start + .seconds(11)) == .refuse(.requestTimeout, .readHeaderTimeout))
    }

    @Test("a connection that never sends is closed after read_header_timeout, silently")
    func silent() {
        let deadlines = HTTP1Deadlines(limits: limits, now: start)
        #expect(deadlines.check(now: start + .seconds(11)) == .close(.readHeaderTimeout))
    }

    @Test("a head over max_header_bytes is refused with 431")
    func oversizedHead() {
        var deadlines = HTTP1Deadlines(limits: limits, now: start)
        deadlines.read(1000, now: start)
        #expect(deadlines.checkHeadSize() == .proceed)
        deadlines.read(100, now: start)
        #expect(deadlines.checkHeadSize() == .refuse(HTTPResponseStatus(statusCode: 431), .headerTooLarge))
    }

    @Test("the body must arrive within read_timeout of the request's first byte")
    func slowBody() {
        var deadlines = HTTP1Deadlines(limits: limits, now: start)
        deadlines.read(100, now: start)
        deadlines.progress(.headReceived, now: start + .seconds(1))
        #expect(deadlines.check(now: start + .seconds(59)) == .proceed)
        #expect(deadlines.check(now: start + .seconds(61)) == .refuse(.requestTimeout, .readTimeout))
    }

    @Test("after a response the connection may idle for idle_timeout, not read_header_timeout")
    func idle() {
        var deadlines = HTTP1Deadlines(limits: limits, now: start)
        deadlines.read(100, now: start)
        deadlines.progress(.headReceived, now: start)
        deadlines.progress(.requestEnded, now: start)
        deadlines.progress(.responseStarted, now: start)
        #expect(deadlines.check(now: start + .seconds(60)) == .proceed)
        #expect(deadlines.check(now: start + .seconds(121)) == .close(.idleTimeout))
    }

    @Test("answered early, the rest of the body is drained within read_timeout, then the connection closes")
    func draining() {
        var deadlines = HTTP1Deadlines(limits: limits, now: start)
        deadlines.read(100, now: start)
        deadlines.progress(.headReceived, now: start)
        deadlines.progress(.responseStarted, now: start)
        deadlines.read(1 << 20, now: start + .seconds(1))
        #expect(deadlines.checkHeadSize() == .proceed)
        #expect(deadlines.check(now: start + .seconds(61)) == .close(.readTimeout))
    }
}

@Suite("bearer tokens")
struct BearerTokensTests {
    @Test("only a configured token with the Bearer scheme is allowed")
    func allows() {
        let tokens = BearerTokens(BearerAuthConfiguration(tokens: ["alpha", "beta"]))
        #expect(tokens.allows(authorization: "Bearer alpha"))
        #expect(tokens.allows(authorization: "bearer beta"))
        #expect(!tokens.allows(authorization: "Bearer alph"))
        #expect(!tokens.allows(authorization: "Bearer alphaa"))
        #expect(!tokens.allows(authorization: "Basic alpha"))
        #expect(!tokens.allows(authorization: "alpha"))
        #expect(!tokens.allows(authorization: nil))
        #expect(!tokens.allows(authorization: "Bearer "))
    }

    @Test("the comparison looks at every byte and at the lengths")
    func constantTime() {
        #expect(BearerTokens.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!BearerTokens.constantTimeEquals(Array("abc".utf8), Array("abcabc".utf8)))
        #expect(!BearerTokens.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!BearerTokens.constantTimeEquals([], []))
    }

    @Test("a tokens file: one a line, comments and blanks skipped")
    func file() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
        try "# rotated monthly\n\nfrom-file\n  spaced  \n".write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let tokens = BearerTokens(BearerAuthConfiguration(tokensFile: url.path))
        #expect(tokens.allows(authorization: "Bearer from-file"))
        #expect(tokens.allows(authorization: "Bearer spaced"))
        #expect(!tokens.allows(authorization: "Bearer # rotated monthly"))
    }

    @Test("configuration mistakes name the key", arguments: [
        ("auth: {}", "l.auth.bearer_tokens"),
        ("auth: {bearer_tokens: ['']}", "l.auth.bearer_tokens[0]"),
        ("auth: {bearer_tokens_file: /nonexistent/tokens}", "l.auth.bearer_tokens_file"),
        ("auth: {bearer_token: x}", "l.auth.bearer_token"),
    ])
    func validation(yaml: String, key: String) throws {
        let section = try ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "l")
        #expect { try section.bearerAuth() } throws: { ($0 as? ConfigurationError)?.key == key }
    }
}

@Suite("listener limits configuration")
struct ListenerLimitsConfigurationTests {
    @Test("defaults, 0 turning a timeout off, and range checks naming the key")
    func limits() throws {
        let defaults = try HTTP1Limits(section: ConfigSection(.mapping([]), path: "http"))
        #expect(defaults.connection.readHeaderTimeout == .seconds(10))
        #expect(defaults.connection.readTimeout == .seconds(60))
        #expect(defaults.idleTimeout == .seconds(120))
        #expect(defaults.connection.maxConnections == 1000)
        #expect(defaults.maxHeaderBytes == 65536 && defaults.maxHeaderCount == 100)
        let off = try HTTP1Limits(section: ConfigSection(try ConfigValue.parse(yaml: "read_timeout: 0\nmax_connections: 0", environment: [:]),
                                                         path: "http"))
        #expect(off.connection.readTimeout == nil && off.connection.maxConnections == nil)
        let bad = try ConfigSection(try ConfigValue.parse(yaml: "max_header_bytes: 100", environment: [:]), path: "http")
        #expect { try HTTP1Limits(section: bad) } throws: { ($0 as? ConfigurationError)?.key == "http.max_header_bytes" }
    }

    @Test("tls needs a certificate and key that can be read")
    func tls() throws {
        let missing = try ConfigSection(try ConfigValue.parse(yaml: "tls: {key_file: k}", environment: [:]), path: "http")
        #expect { try missing.tlsServer() } throws: { ($0 as? ConfigurationError)?.key == "http.tls.cert_file" }
        let unreadable = try ConfigSection(try ConfigValue.parse(yaml: "tls: {cert_file: /nonexistent.pem, key_file: /nonexistent.key}",
                                                                 environment: [:]), path: "http")
        #expect { try unreadable.tlsServer() } throws: { ($0 as? ConfigurationError)?.key == "http.tls.cert_file" }
    }
}
