import Pipeline
import Yams

/// YAML text to `ConfigValue`: the one place a configuration (the collector's, an agent metadata
/// file's) is parsed, so the pipeline itself does not link Yams.
extension ConfigValue {
    /// Parses YAML text, expanding environment references from `environment`.
    public static func parse(yaml: String, environment: [String: String]) throws(ConfigurationError) -> ConfigValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw ConfigurationError(key: "", "invalid YAML: \(error)")
        }
        guard let node else { return .mapping([]) }
        return try convert(node, path: "", environment: environment)
    }

    private static func convert(_ node: Node, path: String, environment: [String: String]) throws(ConfigurationError) -> ConfigValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain, ["", "~", "null", "Null", "NULL"].contains(scalar.string) { return .null }
            return .scalar(try expand(scalar.string, path: path, environment: environment))
        case .sequence(let sequence):
            var elements: [ConfigValue] = []
            for (index, element) in sequence.enumerated() {
                elements.append(try convert(element, path: "\(path)[\(index)]", environment: environment))
            }
            return .sequence(elements)
        case .mapping(let mapping):
            var entries: [ConfigEntry] = []
            for (keyNode, valueNode) in mapping {
                guard case .scalar(let keyScalar) = keyNode else {
                    throw ConfigurationError(key: path, "mapping keys must be plain strings")
                }
                let key = keyScalar.string
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard !entries.contains(where: { $0.key == key }) else {
                    throw ConfigurationError(key: childPath, "duplicate key")
                }
                entries.append(ConfigEntry(key, try convert(valueNode, path: childPath, environment: environment)))
            }
            return .mapping(entries)
        case .alias:
            throw ConfigurationError(key: path, "YAML aliases are not supported")
        }
    }
}
