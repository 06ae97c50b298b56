import Foundation
import Pipeline
import TraceModel

extension AgentEnrichmentProcessor {
    /// `processors: agent_enrichment:` settings.
    public struct Configuration: Sendable, Equatable {
        /// One `from_attributes:` entry: copies or renames an attribute.
        public struct Mapping: Sendable, Equatable {
            /// What happens to the source attribute.
            public enum Action: String, Sendable, Equatable {
                /// The source stays.
                case copy
                /// The source is removed once copied.
                case rename
            }

            /// Where the attributes live.
            public enum Level: String, Sendable, Equatable {
                /// Each span's own attributes (work per span).
                case span
                /// The resource's attributes (work once per resource).
                case resource
            }

            /// The attribute read (`gen_ai.agent.name`).
            public var from: String
            /// The attribute written (`agent.target`).
            public var to: String
            /// `copy` (default) or `rename`.
            public var action = Action.copy
            /// `span` (default) or `resource`.
            public var level = Level.span

            public init(from: String, to: String, action: Action = .copy, level: Level = .span) {
                self.from = from
                self.to = to
                self.action = action
                self.level = level
            }
        }

        /// Resource attributes that name the agent, first present wins.
        /// Default `[agent.name, gen_ai.agent.name, service.name]`.
        public var nameAttributes = ["agent.name", "gen_ai.agent.name", "service.name"]
        /// `agent.type` is the name up to the first occurrence of this. Default `-` (`coordinator-main` → `coordinator`).
        public var typeSeparator = "-"
        /// A regular expression that replaces `type_separator` when set: `agent.type` is its first capture group,
        /// or the whole match without groups; a name it does not match is its own type. Default none.
        public var typePattern: String?
        /// Agent types that get `agent.critical=true`. Default `[coordinator, intelligence, safety]`.
        public var criticalTypes = ["coordinator", "intelligence", "safety"]
        /// A YAML map from agent name (or type) to key/value pairs added as `agent.<key>`; reloaded when it
        /// changes. Default none.
        public var metadataFile: String?
        /// How often the metadata file's modification time is checked. Default 1s.
        public var metadataCheckInterval: Duration = .seconds(1)
        /// Static resource attributes (`deployment.environment: prod`). Default none.
        public var set: [Attribute] = []
        /// Attributes copied or renamed. Default none.
        public var fromAttributes: [Mapping] = []
        /// Overwrite attributes that are already present. Default false.
        public var override = false
        /// Distinct resources whose enriched form is remembered. Default 4096.
        public var maxCachedResources = 4096

        public init() {}

        /// Reads the section, failing on unknown keys or bad values, naming the key.
        public init(section: ConfigSection) throws(ConfigurationError) {
            nameAttributes = try section.stringList("name_attributes", default: nameAttributes)
            guard !nameAttributes.isEmpty, !nameAttributes.contains("") else {
                throw ConfigurationError(key: section.keyPath("name_attributes"), "needs at least one attribute name")
            }
            typeSeparator = try section.string("type_separator", default: typeSeparator)
            guard !typeSeparator.isEmpty else {
                throw ConfigurationError(key: section.keyPath("type_separator"), "must not be empty")
            }
            typePattern = try section.optionalString("type_pattern")
            if let typePattern {
                do {
                    _ = try NSRegularExpression(pattern: typePattern)
                } catch {
                    throw ConfigurationError(key: section.keyPath("type_pattern"), "not a regular expression: \(typePattern)")
                }
            }
            criticalTypes = try section.stringList("critical_types", default: criticalTypes)
            metadataFile = try section.optionalString("metadata_file")
            if let metadataFile, metadataFile.isEmpty {
                throw ConfigurationError(key: section.keyPath("metadata_file"), "must be a file path")
            }
            metadataCheckInterval = try section.duration("metadata_check_interval", default: metadataCheckInterval,
                                                         minimum: .milliseconds(10))
            if let setSection = try section.section("set") {
                for key in setSection.keys {
                    guard !key.isEmpty else { throw ConfigurationError(key: setSection.path, "attribute names must not be empty") }
                    set.append(Attribute(key, .string(try setSection.string(key, default: ""))))
                }
                try setSection.finish()
            }
            if let list = section.value("from_attributes") {
                guard case .sequence(let elements) = list else {
                    throw ConfigurationError(key: section.keyPath("from_attributes"), "expected a list of {from, to}")
                }
                for (index, element) in elements.enumerated() {
                    let entry = try ConfigSection(element, path: "\(section.keyPath("from_attributes"))[\(index)]")
                    guard let from = try entry.optionalString("from"), !from.isEmpty else {
                        throw ConfigurationError(key: entry.keyPath("from"), "required: the attribute to read")
                    }
                    guard let to = try entry.optionalString("to"), !to.isEmpty else {
                        throw ConfigurationError(key: entry.keyPath("to"), "required: the attribute to write")
                    }
                    let actionName = try entry.string("action", default: Mapping.Action.copy.rawValue)
                    guard let action = Mapping.Action(rawValue: actionName) else {
                        throw ConfigurationError(key: entry.keyPath("action"), "expected copy or rename, not \"\(actionName)\"")
                    }
                    let levelName = try entry.string("in", default: Mapping.Level.span.rawValue)
                    guard let level = Mapping.Level(rawValue: levelName) else {
                        throw ConfigurationError(key: entry.keyPath("in"), "expected span or resource, not \"\(levelName)\"")
                    }
                    try entry.finish()
                    guard from != to else { throw ConfigurationError(key: entry.keyPath("to"), "must differ from `from`") }
                    fromAttributes.append(Mapping(from: from, to: to, action: action, level: level))
                }
            }
            override = try section.bool("override", default: override)
            maxCachedResources = try section.int("max_cached_resources", default: maxCachedResources, in: 1...1_000_000)
            try section.finish()
        }
    }
}
