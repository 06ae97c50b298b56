import Foundation
import TraceModel

/// The enrichment rules as a plain value: a resource in, the enriched resource out. The processor calls
/// it once per distinct resource and remembers the answer, so its cost is not paid per span.
struct AgentEnricher {
    /// A `from_attributes` entry.
    typealias Mapping = AgentEnrichmentProcessor.Configuration.Mapping

    /// The settings the rules come from.
    let configuration: AgentEnrichmentProcessor.Configuration
    /// The metadata file's current contents.
    var metadata: AgentMetadata
    private let typeRegex: NSRegularExpression?
    private let criticalTypes: Set<String>
    private let resourceMappings: [Mapping]
    /// The `from_attributes` entries that work on spans.
    let spanMappings: [Mapping]

    /// Compiles the settings once (the type pattern, the critical types, the mappings by level).
    init(configuration: AgentEnrichmentProcessor.Configuration, metadata: AgentMetadata = AgentMetadata()) {
        self.configuration = configuration
        self.metadata = metadata
        // Configuration(section:) already compiled the pattern once, so a failure here cannot happen for a
        // validated configuration; an unvalidated bad one falls back to the separator.
        typeRegex = configuration.typePattern.flatMap { try? NSRegularExpression(pattern: $0) }
        criticalTypes = Set(configuration.criticalTypes)
        resourceMappings = configuration.fromAttributes.filter { $0.level == .resource }
        spanMappings = configuration.fromAttributes.filter { $0.level == .span }
    }

    /// The agent's type from its name: the capture (or match) of `type_pattern`, else the part before
    /// `type_separator`; the whole name when neither applies.
    func agentType(of name: String) -> String {
        if let typeRegex {
            let range = NSRange(name.startIndex..., in: name)
            guard let match = typeRegex.firstMatch(in: name, range: range) else { return name }
            let group = match.numberOfRanges > 1 && match.range(at: 1).location != NSNotFound ? match.range(at: 1) : match.range
            guard let found = Range(group, in: name), !found.isEmpty else { return name }
            return String(name[found])
        }
        guard let separator = name.range(of: configuration.typeSeparator), separator.lowerBound > name.startIndex else { return name }
        return String(name[..<separator.lowerBound])
    }

    /// The resource with `agent.name`, `agent.type`, `agent.critical`, metadata, `set:` and resource-level
    /// `from_attributes` added; nil when nothing changes.
    func enrich(_ resource: Resource) -> Resource? {
        var attributes = resource.attributes
        let override = configuration.override
        var changed = false
        func put(_ key: String, _ value: AttributeValue) {
            if let index = attributes.firstIndex(where: { $0.key == key }) {
                guard override, attributes[index].value != value else { return }
                attributes[index].value = value
            } else {
                attributes.append(Attribute(key, value))
            }
            changed = true
        }
        for mapping in resourceMappings where Self.apply(mapping, to: &attributes, override: override) {
            changed = true
        }
        if let name = configuration.nameAttributes.lazy.compactMap({ attributes[$0]?.stringValue }).first(where: { !$0.isEmpty }) {
            put("agent.name", .string(name))
            let derived = agentType(of: name)
            put("agent.type", .string(derived))
            let type = attributes["agent.type"]?.stringValue ?? derived
            put("agent.critical", .bool(criticalTypes.contains(type)))
            for attribute in metadata.attributes(name: name, type: type) { put(attribute.key, attribute.value) }
        }
        for attribute in configuration.set { put(attribute.key, attribute.value) }
        guard changed else { return nil }
        return Resource(attributes: attributes, droppedAttributesCount: resource.droppedAttributesCount)
    }

    /// True when some span mapping would change `attributes`; read-only, so spans that need nothing are
    /// never copied.
    func spanNeedsMapping(_ attributes: [Attribute]) -> Bool {
        for mapping in spanMappings {
            var hasSource = false
            var hasTarget = false
            for attribute in attributes {
                if attribute.key == mapping.from { hasSource = true } else if attribute.key == mapping.to { hasTarget = true }
            }
            if hasSource && (!hasTarget || configuration.override) { return true }
        }
        return false
    }

    /// Applies every span mapping to `attributes`.
    func mapSpan(_ attributes: inout [Attribute]) {
        for mapping in spanMappings { _ = Self.apply(mapping, to: &attributes, override: configuration.override) }
    }

    /// Copies (or moves) `mapping.from` to `mapping.to`; an existing target stays unless `override`. A rename
    /// whose target exists and may not be overwritten leaves both in place. Returns whether anything changed.
    static func apply(_ mapping: Mapping, to attributes: inout [Attribute], override: Bool) -> Bool {
        guard let source = attributes.firstIndex(where: { $0.key == mapping.from }) else { return false }
        let value = attributes[source].value
        if let target = attributes.firstIndex(where: { $0.key == mapping.to }) {
            guard override else { return false }
            attributes[target].value = value
        } else {
            attributes.append(Attribute(mapping.to, value))
        }
        if mapping.action == .rename { attributes.remove(at: source) }
        return true
    }
}
