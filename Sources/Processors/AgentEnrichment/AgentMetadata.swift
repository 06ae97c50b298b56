import ConfigYAML
import Foundation
import Pipeline
import TraceModel

/// The contents of `metadata_file`: per agent name or type, the attributes added to its resource.
///
/// ```yaml
/// research-agent: {team: knowledge, tier: "1"}
/// coordinator:                       # a type: every coordinator-* agent
///   owner: platform
///   capabilities: [plan, delegate]
/// ```
/// Scalars become string attributes, lists of scalars string arrays; each key is added as `agent.<key>`
/// (a key that already starts with `agent.` is used as it is).
public struct AgentMetadata: Sendable, Equatable {
    /// Attributes by agent name or type, in file order.
    public var entries: [String: [Attribute]]

    /// No metadata.
    public init(entries: [String: [Attribute]] = [:]) {
        self.entries = entries
    }

    /// Parses the file's text; errors name the file and the offending entry.
    public init(yaml: String, path: String) throws(ConfigurationError) {
        let root: ConfigValue
        do {
            root = try ConfigValue.parse(yaml: yaml, environment: [:])
        } catch {
            throw ConfigurationError(key: path, error.message)
        }
        var entries: [String: [Attribute]] = [:]
        switch root {
        case .null:
            break
        case .mapping(let agents):
            for agent in agents {
                let where_ = "\(path): \(agent.key)"
                var attributes: [Attribute] = []
                switch agent.value {
                case .null:
                    break
                case .mapping(let fields):
                    for field in fields {
                        let key = field.key.hasPrefix("agent.") ? field.key : "agent.\(field.key)"
                        switch field.value {
                        case .scalar(let text):
                            attributes.append(Attribute(key, .string(text)))
                        case .null:
                            continue
                        case .sequence(let elements):
                            var values: [AttributeValue] = []
                            for element in elements {
                                guard case .scalar(let text) = element else {
                                    throw ConfigurationError(key: "\(where_).\(field.key)", "lists may hold only plain values")
                                }
                                values.append(.string(text))
                            }
                            attributes.append(Attribute(key, .array(values)))
                        case .mapping:
                            throw ConfigurationError(key: "\(where_).\(field.key)", "expected a value or a list, not a mapping")
                        }
                    }
                default:
                    throw ConfigurationError(key: where_, "expected a mapping of key: value")
                }
                entries[agent.key] = attributes
            }
        default:
            throw ConfigurationError(key: path, "expected a mapping from agent name or type to key: value pairs")
        }
        self.entries = entries
    }

    /// Reads and parses the file.
    public static func load(path: String) throws(ConfigurationError) -> AgentMetadata {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(key: path, "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationError(key: path, "not UTF-8 text")
        }
        return try AgentMetadata(yaml: text, path: path)
    }

    /// The attributes for an agent: its name's entry, then its type's for keys the name's entry lacks.
    public func attributes(name: String, type: String?) -> [Attribute] {
        var result = entries[name] ?? []
        if let type, type != name, let byType = entries[type] {
            for attribute in byType where !result.contains(where: { $0.key == attribute.key }) {
                result.append(attribute)
            }
        }
        return result
    }
}

/// Notices changes to a file by its modification time and size, polled.
struct FileChangeWatcher: Sendable {
    /// What identifies one version of the file.
    struct Stamp: Sendable, Equatable {
        /// The modification time.
        var modified: Date
        /// The size in bytes.
        var size: Int
    }

    /// The file watched.
    let path: String
    /// The version last accepted (or rejected), so one bad version is reported once.
    private(set) var lastStamp: Stamp?

    /// Watches `path`; nothing is seen until `accept`.
    init(path: String) {
        self.path = path
    }

    /// The file's current stamp; nil when it cannot be read.
    static func stamp(of path: String) -> Stamp? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let modified = attributes[.modificationDate] as? Date else { return nil }
        return Stamp(modified: modified, size: (attributes[.size] as? NSNumber)?.intValue ?? 0)
    }

    /// Records `stamp` as seen.
    mutating func accept(_ stamp: Stamp?) {
        lastStamp = stamp
    }

    /// The new stamp when the file changed since the last one accepted or rejected, else nil.
    func changed() -> Stamp? {
        guard let stamp = Self.stamp(of: path), stamp != lastStamp else { return nil }
        return stamp
    }
}
