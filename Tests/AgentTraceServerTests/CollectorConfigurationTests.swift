import Foundation
import Logging
import Pipeline
import Testing
import Yams
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

    @Test("a collector with HTTP exporters and alert sinks is built and dropped without running, as validate does")
    func builtAndDroppedUnstarted() throws {
        // AsyncHTTPClient traps (in debug builds) when a client is released without shutdown(): the
        // HTTP senders must not own one before they first send.
        let yaml = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          threshold_triggers:
            rules:
              - { name: errors, status: error }
            notify:
              - { webhook: "http://127.0.0.1:9/hook" }
              - { slack: "http://127.0.0.1:9/slack" }
        exporters:
          zipkin:
            endpoint: http://127.0.0.1:9/api/v2/spans
          otlp:
            protocol: http/protobuf
            endpoint: http://127.0.0.1:9
        service:
          pipelines:
            traces:
              receivers: [otlp]
              processors: [threshold_triggers]
              exporters: [zipkin, otlp]
        """
        for _ in 0..<2 { _ = try build(yaml) }
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

    @Test("every mistake is reported at once, each naming its key")
    func everyMistake() {
        let yaml = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          batch:
            timeout: soon
            send_batch_sizee: 5
        exporters:
          file:
            path: /tmp/agenttrace-never-written.jsonl
            pathh: typo
            formatt: json
            rotation:
              max_megabytes: lots
        service:
          admin:
            endpoint: nowhere
          pipelines:
            traces:
              receivers: [otlp, zipkin]
              processors: [batch]
              exporters: [file]
        """
        // As `validate` and `serve` do: the top level's mistakes are kept, then the components' are added.
        var keys: [String] = []
        do {
            _ = try Collector(configuration: try CollectorConfiguration.parse(yaml: yaml, environment: [:]),
                              logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        } catch let error as ConfigurationError {
            keys = error.all.map(\.key)
        } catch {
            Issue.record("not a configuration error: \(error)")
        }
        #expect(Set(keys) == ["exporters.file.pathh", "exporters.file.formatt", "exporters.file.rotation.max_megabytes",
                              "processors.batch.timeout", "processors.batch.send_batch_sizee",
                              "service.admin.endpoint", "service.pipelines.traces.receivers"])
        #expect(keys.count == 7)
    }

    @Test("service.admin idle_timeout: 120s by default, as on the OTLP/HTTP receiver, else as configured")
    func adminIdleTimeout() throws {
        #expect(try CollectorConfiguration(yaml: Self.minimal, environment: [:]).adminLimits.idleTimeout == .seconds(120))
        let configured = Self.minimal + "\n  admin:\n    endpoint: 127.0.0.1:0\n    idle_timeout: 7s\n"
        #expect(try CollectorConfiguration(yaml: configured, environment: [:]).adminLimits.idleTimeout == .seconds(7))
    }

    @Test("service.queue: 32 batches and 1,000,000 spans by default; wait_when_full 2s, 0s to refuse at once, at most 60s, and the queue gets it")
    func queueWaitWhenFull() throws {
        let defaults = try CollectorConfiguration(yaml: Self.minimal, environment: [:]).queue
        #expect(defaults.maxBatches == 32)
        #expect(defaults.maxSpans == 1_000_000)
        #expect(defaults.waitWhenFull == .seconds(2))
        let off = Self.minimal + "\n  queue:\n    wait_when_full: 0s\n"
        #expect(try CollectorConfiguration(yaml: off, environment: [:]).queue.waitWhenFull == .zero)
        let long = Self.minimal + "\n  queue:\n    wait_when_full: 90s\n"
        #expect(failure(long)?.key == "service.queue.wait_when_full")
        let built = try build(Self.minimal + "\n  queue:\n    wait_when_full: 750ms\n")
        #expect(built.pipelines.map(\.queue.waitWhenFull) == [.milliseconds(750)])
    }

    @Test("several pipelines may list one exporter: it is built once and all of them feed it")
    func sharedExporter() throws {
        // "The same receiver can be included in multiple pipelines and multiple pipelines can include the
        // same exporter." — the OpenTelemetry Collector's architecture.
        let collector = try build("""
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          batch:
          batch/b:
        exporters:
          nop:
        service:
          pipelines:
            traces/a:
              receivers: [otlp]
              processors: [batch]
              exporters: [nop]
            traces/b:
              receivers: [otlp]
              processors: [batch/b]
              exporters: [nop]
        """)
        #expect(collector.pipelines.map(\.name) == ["traces/a", "traces/b"])
        let instances = collector.pipelines.flatMap(\.runner.exporters)
        #expect(instances.count == 2)
        #expect(instances[0].tally === instances[1].tally)
        // Processors are never shared: each pipeline has its own.
        #expect(collector.pipelines[0].runner.processors[0].processor !== collector.pipelines[1].runner.processors[0].processor)
    }
}

@Suite("shipped configurations")
struct ShippedConfigurationTests {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy")

    /// Builds `yaml` as the deployments run it: `agents.yaml` in `configDirectory` (AGENTTRACE_CONFIG_DIR),
    /// the disk queues under a fresh temporary folder (AGENTTRACE_DATA_DIR; building creates their folders).
    func build(_ yaml: String, configDirectory: URL) throws {
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("agenttrace-deploy-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: data) }
        let environment = ["AGENTTRACE_CONFIG_DIR": configDirectory.path, "AGENTTRACE_DATA_DIR": data.path]
        _ = try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: environment),
                          logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
    }

    @Test("every configuration in deploy/ builds")
    func deployConfigurations() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.deploy.path).filter { $0.hasPrefix("agenttrace") && $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        for file in files {
            let yaml = try String(contentsOf: Self.deploy.appendingPathComponent(file), encoding: .utf8)
            try build(yaml, configDirectory: Self.deploy)
        }
    }

    @Test("the configuration the Kubernetes ConfigMap carries builds, with the agents.yaml next to it")
    func kubernetesConfigMap() throws {
        let manifest = try String(contentsOf: Self.deploy.appendingPathComponent("k8s/configmap.yaml"), encoding: .utf8)
        let configMap = try #require(try Yams.load(yaml: manifest) as? [String: Any])
        #expect(configMap["kind"] as? String == "ConfigMap")
        let data = try #require(configMap["data"] as? [String: String])
        let yaml = try #require(data["agenttrace.yaml"])
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agenttrace-configmap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (key, text) in data where key != "agenttrace.yaml" {
            try text.write(to: directory.appendingPathComponent(key), atomically: true, encoding: .utf8)
        }
        try build(yaml, configDirectory: directory)
    }
}
