import ConfigYAML
import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import ServiceGraph

@Suite("service graph configuration: the connector's keys")
struct ServiceGraphConfigurationTests {
    static func parse(_ yaml: String) throws -> ServiceGraphConfiguration {
        try ServiceGraphConfiguration(section: ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "processors.service_graph"))
    }

    static func error(_ yaml: String) -> ConfigurationError? {
        do {
            _ = try parse(yaml)
            return nil
        } catch let error as ConfigurationError {
            return error
        } catch {
            return nil
        }
    }

    @Test("a connector block with every supported key loads with the connector's meaning")
    func connectorBlock() throws {
        let configuration = try Self.parse("""
        latency_histogram_buckets: [100ms, 250ms, 1s, 5s]
        dimensions: [dimension-1, dimension-2]
        store: {ttl: 1s, max_items: 10}
        virtual_node_peer_attributes: [db.name, rpc.service]
        virtual_node_extra_label: true
        metrics_flush_interval: 0s
        store_expiration_loop: 2s
        database_name_attributes: [db.namespace, db.name]
        metrics_exporter: prometheus
        """)
        #expect(configuration.latencyBuckets == [0.1, 0.25, 1, 5])
        #expect(configuration.dimensions == ["dimension-1", "dimension-2"])
        #expect(configuration.ttl == .seconds(1))
        #expect(configuration.maxItems == 10)
        #expect(configuration.virtualNodePeerAttributes == ["db.name", "rpc.service"])
        #expect(configuration.virtualNodeExtraLabel)
        #expect(configuration.databaseNameAttributes == ["db.namespace", "db.name"])
        #expect(try Self.parse("database_name_attribute: db.instance").databaseNameAttributes == ["db.instance"])
    }

    @Test("connector keys without a meaning here fail, naming the key and saying why", arguments: [
        "exponential_histogram_max_size: 160", "metrics_timestamp_offset: 10s", "cache_loop: 2m",
    ])
    func unsupported(line: String) throws {
        let error = try #require(Self.error(line))
        let key = String(line.prefix { $0 != ":" })
        #expect(error.key == "processors.service_graph.\(key)")
        #expect(error.message.count > 20)
    }

    @Test("two dimensions that give the same label are refused")
    func clashingDimensions() throws {
        let error = try #require(Self.error("dimensions: [a.b, a_b]"))
        #expect(error.key == "processors.service_graph.dimensions")
    }
}
