import Foundation
import Logging
import Pipeline
import Testing
@testable import AgentTraceServer

@Suite("collector configuration")
struct CollectorConfigurationTests {
    func build(_ yaml: String, environment: [String: String] = [:]) throws -> Collector {
        try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: environment),
                      logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
    }

    func failure(_ yaml: String) -> ConfigurationError? {
        do {
            _ = try build(yaml)
            return nil
        } catch let error as ConfigurationError {
            return error
        } catch {
            return ConfigurationError(key: "?", "\(error)")
        }
    }

    static let minimal = """
    receivers:
      otlp:
        protocols:
          http:
            endpoint: 127.0.0.1:0
    exporters:
      nop:
    service:
      pipelines:
        traces:
          receivers: [otlp]
          exporters: [nop]
    """

    @Test("the embedded default configuration is valid and listens on localhost")
    func defaultConfiguration() throws {
        let configuration = try CollectorConfiguration(yaml: CollectorConfiguration.defaultYAML, environment: [:])
        #expect(configuration.adminEndpoint == Endpoint(host: "localhost", port: 8888))
        #expect(configuration.pipelines.map(\.name) == ["traces"])
        _ = try build(CollectorConfiguration.defaultYAML)
    }

    @Test("a minimal configuration builds, with ${env:…} expanded")
    func minimal() throws {
        let yaml = Self.minimal.replacingOccurrences(of: "127.0.0.1:0", with: "${env:BIND}")
        let collector = try build(yaml, environment: ["BIND": "127.0.0.1:0"])
        #expect(collector.pipelines.count == 1)
    }

    @Test("mistakes fail naming the key", arguments: [
        ("receivers:\n  otlp:\n    protocols:\n      http:\n        endpointt: x:1\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nop]\n",
         "receivers.otlp.protocols.http.endpointt"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [zipkin]\n",
         "service.pipelines.traces.exporters"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  nope:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [nope]\n",
         "exporters.nope"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\nprocessors:\n  batch:\n    timeout: soon\nexporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [nop]\n",
         "processors.batch.timeout"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  nop:\nservice:\n  pipelinez: {}\n", "service.pipelinez"),
        ("receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  nop:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [nop]\n",
         "service.pipelines.logs"),
    ])
    func mistakes(yaml: String, key: String) {
        #expect(failure(yaml)?.key == key)
    }
}

@Suite("shipped configurations")
struct ShippedConfigurationTests {
    @Test("every configuration in deploy/ builds")
    func deployConfigurations() throws {
        let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy")
        let files = try FileManager.default.contentsOfDirectory(atPath: deploy.path).filter { $0.hasPrefix("agenttrace") && $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files {
            let yaml = try String(contentsOf: deploy.appendingPathComponent(file), encoding: .utf8)
            _ = try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: [:]),
                              logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        }
    }
}
