import Logging
import NIOPosix
import Pipeline
import ServerSupport
import Testing
@testable import AgentTraceServer

@Suite("collector: starting")
struct CollectorTests {
    /// A loopback port that was free a moment ago.
    func freePort() async throws -> Int {
        let probe = QuiescingServer(name: "probe", host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton) { _ in }
        try await probe.bind()
        let port = try #require(probe.boundPort)
        await probe.closeUnserved()
        return port
    }

    @Test("a listener that cannot bind fails naming itself; the listeners bound before it are closed again")
    func busyAdminPort() async throws {
        let occupier = QuiescingServer(name: "occupier", host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton) { _ in }
        try await occupier.bind()
        let busy = try #require(occupier.boundPort)
        let grpc = try await freePort()
        let http = try await freePort()
        let collector = try Collector(configuration: try CollectorConfiguration(yaml: """
            receivers:
              otlp:
                protocols:
                  grpc: {endpoint: "127.0.0.1:\(grpc)"}
                  http: {endpoint: "127.0.0.1:\(http)"}
            exporters:
              nop:
            service:
              admin: {endpoint: "127.0.0.1:\(busy)"}
              pipelines:
                traces: {receivers: [otlp], exporters: [nop]}
            """, environment: [:]), logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        do {
            try await collector.bindListeners()
            Issue.record("the admin API bound a busy port")
        } catch {
            #expect(error.description == "service.admin: cannot listen on 127.0.0.1:\(busy): address already in use")
        }
        // The receivers (bound first) were closed: their ports bind again.
        for port in [grpc, http] {
            let again = QuiescingServer(name: "again", host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton) { _ in }
            try await again.bind()
            await again.closeUnserved()
        }
        await occupier.closeUnserved()
        #expect(!collector.isReady)
    }
}
