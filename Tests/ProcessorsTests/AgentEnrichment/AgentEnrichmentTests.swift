import ConfigYAML
import Foundation
import Logging
import Pipeline
import Testing
import TraceModel
@testable import Processors

func section(_ yaml: String, path: String, environment: [String: String] = [:]) throws -> ConfigSection {
    try ConfigSection(try ConfigValue.parse(yaml: yaml, environment: environment), path: path)
}

func context(_ id: String, metrics: SelfMetrics = SelfMetrics()) -> ComponentContext {
    ComponentContext(id: ComponentID(id), logger: Logger(label: "test"), metrics: metrics)
}

func resource(_ attributes: [Attribute]) -> Resource { Resource(attributes: attributes) }

func oneSpanBatch(_ resource: Resource, attributes: [Attribute] = []) -> SpanBatch {
    SpanBatch(resourceSpans: [ResourceSpans(resource: resource, scopeSpans: [ScopeSpans(spans: [
        Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "work", attributes: attributes),
    ])])])
}

@Suite("agent enrichment")
struct AgentEnrichmentTests {
    func enricher(_ yaml: String = "", metadata: AgentMetadata = AgentMetadata()) throws -> AgentEnricher {
        AgentEnricher(configuration: try AgentEnrichmentProcessor.Configuration(section: section(yaml, path: "processors.agent_enrichment")),
                      metadata: metadata)
    }

    @Test("agent.name from the first present attribute, agent.type before the first '-', agent.critical from the type")
    func identity() throws {
        let enricher = try enricher()
        let enriched = try #require(enricher.enrich(resource([Attribute("service.name", "svc"), Attribute("gen_ai.agent.name", "coordinator-main")])))
        #expect(enriched.attributes["agent.name"] == "coordinator-main")
        #expect(enriched.attributes["agent.type"] == "coordinator")
        #expect(enriched.attributes["agent.critical"] == true)
        let plain = try #require(enricher.enrich(resource([Attribute("service.name", "writer")])))
        #expect(plain.attributes["agent.name"] == "writer")
        #expect(plain.attributes["agent.type"] == "writer")
        #expect(plain.attributes["agent.critical"] == false)
        #expect(enricher.enrich(resource([Attribute("host.name", "h")])) == nil)
    }

    @Test("existing attributes stay unless override; the existing type decides criticality")
    func noOverride() throws {
        let given = resource([Attribute("service.name", "research-agent"), Attribute("agent.type", "safety")])
        let kept = try #require(try enricher().enrich(given))
        #expect(kept.attributes["agent.type"] == "safety")
        #expect(kept.attributes["agent.critical"] == true)
        let replaced = try #require(try enricher("override: true").enrich(given))
        #expect(replaced.attributes["agent.type"] == "research")
        #expect(replaced.attributes["agent.critical"] == false)
        #expect(replaced.attributes.filter { $0.key == "agent.type" }.count == 1)
    }

    @Test("type_separator and type_pattern")
    func typeRules() throws {
        #expect(try enricher("type_separator: \".\"").agentType(of: "safety.eu-1") == "safety")
        #expect(try enricher("type_pattern: \"^agent_([a-z]+)\"").agentType(of: "agent_intelligence_7") == "intelligence")
        #expect(try enricher("type_pattern: \"[a-z]+\"").agentType(of: "42-planner") == "planner")
        #expect(try enricher("type_pattern: \"^x\"").agentType(of: "planner") == "planner")
        #expect(try enricher().agentType(of: "-odd") == "-odd")
    }

    @Test("metadata by name, then by type; set: adds static attributes")
    func metadataAndSet() throws {
        let metadata = try AgentMetadata(yaml: """
            research-agent: {team: knowledge, tier: "1"}
            research: {team: ignored, owner: ada, capabilities: [search, summarize]}
            """, path: "agents.yaml")
        let enricher = try enricher("set: {deployment.environment: prod}", metadata: metadata)
        let enriched = try #require(enricher.enrich(resource([Attribute("service.name", "research-agent")])))
        #expect(enriched.attributes["agent.team"] == "knowledge")
        #expect(enriched.attributes["agent.tier"] == "1")
        #expect(enriched.attributes["agent.owner"] == "ada")
        #expect(enriched.attributes["agent.capabilities"] == .array(["search", "summarize"]))
        #expect(enriched.attributes["deployment.environment"] == "prod")
    }

    @Test("from_attributes copies or renames, on spans and on the resource, never overwriting by default")
    func mappings() throws {
        let enricher = try enricher("""
            from_attributes:
              - { from: gen_ai.agent.name, to: agent.target }
              - { from: old.key, to: new.key, action: rename }
              - { from: k8s.pod.name, to: agent.pod, in: resource }
            """)
        var span: [Attribute] = [Attribute("gen_ai.agent.name", "writer"), Attribute("old.key", 1)]
        #expect(enricher.spanNeedsMapping(span))
        enricher.mapSpan(&span)
        #expect(span == [Attribute("gen_ai.agent.name", "writer"), Attribute("agent.target", "writer"), Attribute("new.key", 1)])
        #expect(!enricher.spanNeedsMapping([Attribute("gen_ai.agent.name", "x"), Attribute("agent.target", "y")]))
        #expect(!enricher.spanNeedsMapping([Attribute("other", "x")]))
        let enriched = try #require(enricher.enrich(resource([Attribute("k8s.pod.name", "p-1")])))
        #expect(enriched.attributes["agent.pod"] == "p-1")
    }

    @Test("the processor enriches each resource once and passes spans on")
    func processor() throws {
        let processor = try AgentEnrichmentProcessor(
            configuration: try AgentEnrichmentProcessor.Configuration(section: section("from_attributes: [{from: a, to: b}]", path: "p")),
            context: context("agent_enrichment"))
        let input = oneSpanBatch(resource([Attribute("service.name", "safety-guard")]), attributes: [Attribute("a", "x")])
        for _ in 0..<2 {
            let output = processor.process(input, now: 1)
            #expect(output.count == 1)
            #expect(output[0].resourceSpans[0].resource.attributes["agent.critical"] == true)
            #expect(output[0].resourceSpans[0].scopeSpans[0].spans[0].attributes["b"] == "x")
        }
        let untouched = oneSpanBatch(resource([Attribute("host.name", "h")]))
        #expect(processor.process(untouched, now: 2) == [untouched])
    }

    @Test("the metadata file is reloaded when it changes; a bad file keeps the last good metadata")
    func reload() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("agents-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "writer: {team: docs}\n".write(toFile: path, atomically: true, encoding: .utf8)
        var configuration = AgentEnrichmentProcessor.Configuration()
        configuration.metadataFile = path
        let processor = try AgentEnrichmentProcessor(configuration: configuration, context: context("agent_enrichment"))
        let input = oneSpanBatch(resource([Attribute("service.name", "writer")]))
        #expect(processor.process(input, now: 0)[0].resourceSpans[0].resource.attributes["agent.team"] == "docs")

        try "writer: {team: platform, tier: \"2\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = processor.tick(now: 2_000_000_000)
        let reloaded = processor.process(input, now: 2_000_000_001)[0].resourceSpans[0].resource
        #expect(reloaded.attributes["agent.team"] == "platform")
        #expect(reloaded.attributes["agent.tier"] == "2")

        try "writer: [not, a, mapping\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = processor.tick(now: 4_000_000_000)
        #expect(processor.metadata.entries["writer"]?["agent.team"] == "platform")
        #expect(processor.process(input, now: 4_000_000_001)[0].resourceSpans[0].resource.attributes["agent.team"] == "platform")
    }

    @Test("configuration mistakes name the key", arguments: [
        ("name_attributes: []", "processors.agent_enrichment.name_attributes"),
        ("type_pattern: \"([\"", "processors.agent_enrichment.type_pattern"),
        ("from_attributes: [{from: a}]", "processors.agent_enrichment.from_attributes[0].to"),
        ("from_attributes: [{from: a, to: b, action: move}]", "processors.agent_enrichment.from_attributes[0].action"),
        ("critical: [x]", "processors.agent_enrichment.critical"),
    ])
    func mistakes(yaml: String, key: String) throws {
        #expect(throws: ConfigurationError.self) {
            do {
                _ = try AgentEnrichmentProcessor.Configuration(section: section(yaml, path: "processors.agent_enrichment"))
            } catch let error as ConfigurationError {
                #expect(error.key == key)
                throw error
            }
        }
    }

    @Test("a metadata file that cannot be read fails at start-up, naming the key")
    func missingFile() throws {
        var configuration = AgentEnrichmentProcessor.Configuration()
        configuration.metadataFile = "/nonexistent/agents.yaml"
        #expect(throws: ConfigurationError.self) {
            do {
                _ = try AgentEnrichmentProcessor(configuration: configuration, context: context("agent_enrichment"))
            } catch let error as ConfigurationError {
                #expect(error.key == "processors.agent_enrichment.metadata_file")
                throw error
            }
        }
    }
}

extension AgentEnrichmentTests {
    @Test("max_cached_resources bounds the remembered resources: when full the memory is cleared, spans still enriched")
    func cacheBound() throws {
        let processor = try AgentEnrichmentProcessor(
            configuration: try AgentEnrichmentProcessor.Configuration(section: section("max_cached_resources: 3", path: "p")),
            context: context("agent_enrichment"))
        var sizes: [Int] = []
        for index in 0..<7 {
            let output = processor.process(oneSpanBatch(resource([Attribute("service.name", .string("coordinator-\(index)"))])),
                                           now: UInt64(index))
            #expect(output[0].resourceSpans[0].resource.attributes["agent.type"] == "coordinator")
            sizes.append(processor.cachedResourceCount)
        }
        // Three remembered, then the fourth finds the memory full: cleared, and it alone is remembered.
        #expect(sizes == [1, 2, 3, 1, 2, 3, 1])
        _ = processor.process(oneSpanBatch(resource([Attribute("service.name", "coordinator-6")])), now: 8)
        #expect(processor.cachedResourceCount == 1, "a resource already remembered is not added twice")
    }

    @Test("metadata_check_interval: the file is looked at no more often than the interval, on the clock given")
    func checkInterval() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("agents-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "writer: {team: docs}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let configuration = try AgentEnrichmentProcessor.Configuration(
            section: section("metadata_file: \(path)\nmetadata_check_interval: 5s", path: "processors.agent_enrichment"))
        #expect(configuration.metadataCheckInterval == .seconds(5))
        let processor = try AgentEnrichmentProcessor(configuration: configuration, context: context("agent_enrichment"))
        let second: UInt64 = 1_000_000_000
        _ = processor.tick(now: 10 * second)  // the first check; the next is due at 15 s
        try "writer: {team: platform, tier: \"2\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = processor.tick(now: 11 * second)
        _ = processor.tick(now: 15 * second - 1)
        #expect(processor.metadata.entries["writer"]?["agent.team"] == "docs", "checked before the interval passed")
        _ = processor.tick(now: 15 * second)
        #expect(processor.metadata.entries["writer"]?["agent.team"] == "platform")
    }
}
