import NIOCore
import NIOPosix
import Testing
@testable import ServerSupport

@Suite("quiescing server: binding")
struct QuiescingServerTests {
    func server(port: Int, name: String = "receivers.otlp.protocols.http") -> QuiescingServer {
        QuiescingServer(name: name, host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton) { _ in }
    }

    @Test("a busy port fails naming the listener, its address and the cause in words")
    func busyPort() async throws {
        let occupier = server(port: 0, name: "occupier")
        try await occupier.bind()
        let port = try #require(occupier.boundPort)
        do {
            try await server(port: port).bind()
            Issue.record("bound a port that is in use")
        } catch {
            // Linux errno(3): "EADDRINUSE Address already in use".
            #expect(error.description == "receivers.otlp.protocols.http: cannot listen on 127.0.0.1:\(port): address already in use")
        }
        await occupier.closeUnserved()
    }

    @Test("a socket bound but never served is closed by closeUnserved, freeing its port")
    func closeUnserved() async throws {
        let first = server(port: 0)
        try await first.bind()
        let port = try #require(first.boundPort)
        await first.closeUnserved()
        #expect(first.boundPort == nil)
        let second = server(port: port)
        try await second.bind()   // fails with "address already in use" while the first still listens
        #expect(second.boundPort == port)
        await second.closeUnserved()
    }

    @Test("a host that does not resolve is named as such")
    func unknownHost() async {
        // RFC 2606 reserves .invalid: it never resolves.
        let listener = QuiescingServer(name: "service.admin", host: "nosuchhost.invalid", port: 8888,
                                       group: MultiThreadedEventLoopGroup.singleton) { _ in }
        do {
            try await listener.bind()
            Issue.record("bound an address that does not resolve")
        } catch {
            #expect(error.description == "service.admin: cannot listen on nosuchhost.invalid:8888: the host name does not resolve")
        }
    }
}
