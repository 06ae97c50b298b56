/// Typed, checked access to one mapping of the configuration. Every key read is remembered, so
/// `finish()` can reject the keys nobody asked for, naming them.
public final class ConfigSection {
    /// The dotted path of this mapping (`exporters.file`).
    public let path: String
    private let entries: [ConfigEntry]
    private var readKeys: Set<String> = []

    /// Wraps a value that must be a mapping (null reads as empty).
    public init(_ value: ConfigValue, path: String) throws(ConfigurationError) {
        self.path = path
        switch value {
        case .mapping(let entries): self.entries = entries
        case .null: self.entries = []
        default: throw ConfigurationError(key: path, "expected a mapping")
        }
    }

    /// An empty section, for components configured with defaults only.
    public static func empty(path: String) -> ConfigSection {
        // An empty mapping is always valid.
        try! ConfigSection(.mapping([]), path: path)
    }

    /// The keys present, in document order.
    public var keys: [String] { entries.map(\.key) }

    /// The path of `key` inside this section.
    public func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The raw value of `key`, marking it read; nil when absent or null.
    public func value(_ key: String) -> ConfigValue? {
        readKeys.insert(key)
        guard let entry = entries.first(where: { $0.key == key }), entry.value != .null else { return nil }
        return entry.value
    }

    /// Fails naming every key that was present but never read.
    public func finish() throws(ConfigurationError) {
        let unknown = entries.filter { !readKeys.contains($0.key) }
        if !unknown.isEmpty {
            throw ConfigurationError(collecting: unknown.map { ConfigurationError(key: keyPath($0.key), "unknown key") })
        }
    }

    /// A nested mapping; nil when absent.
    public func section(_ key: String) throws(ConfigurationError) -> ConfigSection? {
        guard let value = value(key) else {
            return entries.contains(where: { $0.key == key }) ? ConfigSection.empty(path: keyPath(key)) : nil
        }
        return try ConfigSection(value, path: keyPath(key))
    }

    /// A list of mappings (`policies: [{…}, {…}]`), each as a section named `key[index]`; empty when absent.
    public func sectionList(_ key: String) throws(ConfigurationError) -> [ConfigSection] {
        guard let value = value(key) else { return [] }
        guard case .sequence(let elements) = value else { throw ConfigurationError(key: keyPath(key), "expected a list") }
        var sections: [ConfigSection] = []
        for (index, element) in elements.enumerated() {
            sections.append(try ConfigSection(element, path: "\(keyPath(key))[\(index)]"))
        }
        return sections
    }

    /// A scalar as text.
    public func string(_ key: String, default defaultValue: String) throws(ConfigurationError) -> String {
        guard let value = value(key) else { return defaultValue }
        guard case .scalar(let text) = value else { throw ConfigurationError(key: keyPath(key), "expected a string") }
        return text
    }

    /// A scalar that may be absent.
    public func optionalString(_ key: String) throws(ConfigurationError) -> String? {
        guard value(key) != nil else { return nil }
        return try string(key, default: "")
    }

    /// An integer within `range`.
    public func int(_ key: String, default defaultValue: Int, in range: ClosedRange<Int> = Int.min...Int.max) throws(ConfigurationError) -> Int {
        guard let value = value(key) else { return defaultValue }
        guard case .scalar(let text) = value, let number = Int(text.replacingOccurrences(of: "_", with: "")) else {
            throw ConfigurationError(key: keyPath(key), "expected an integer")
        }
        guard range.contains(number) else {
            throw ConfigurationError(key: keyPath(key), "\(number) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// A floating-point number within `range`.
    public func double(_ key: String, default defaultValue: Double, in range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) throws(ConfigurationError) -> Double {
        guard let value = value(key) else { return defaultValue }
        guard case .scalar(let text) = value, let number = Double(text), number.isFinite else {
            throw ConfigurationError(key: keyPath(key), "expected a number")
        }
        guard range.contains(number) else {
            throw ConfigurationError(key: keyPath(key), "\(number) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    /// `true` or `false`.
    public func bool(_ key: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let value = value(key) else { return defaultValue }
        guard case .scalar(let text) = value else { throw ConfigurationError(key: keyPath(key), "expected true or false") }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw ConfigurationError(key: keyPath(key), "expected true or false, not \"\(text)\"")
        }
    }

    /// A duration written as Go writes them (`200ms`, `5s`, `1m30s`, `1h`), or a bare number of seconds.
    public func duration(_ key: String, default defaultValue: Duration, minimum: Duration = .zero) throws(ConfigurationError) -> Duration {
        guard let value = value(key) else { return defaultValue }
        guard case .scalar(let text) = value, let duration = Duration(configText: text) else {
            throw ConfigurationError(key: keyPath(key), "expected a duration such as 200ms, 5s or 1m")
        }
        guard duration >= minimum else { throw ConfigurationError(key: keyPath(key), "must be at least \(minimum)") }
        return duration
    }

    /// A list of scalars (a single scalar reads as a list of one).
    public func stringList(_ key: String, default defaultValue: [String]) throws(ConfigurationError) -> [String] {
        guard let value = value(key) else { return defaultValue }
        switch value {
        case .scalar(let text): return [text]
        case .sequence(let elements):
            var result: [String] = []
            for (index, element) in elements.enumerated() {
                guard case .scalar(let text) = element else {
                    throw ConfigurationError(key: "\(keyPath(key))[\(index)]", "expected a string")
                }
                result.append(text)
            }
            return result
        default: throw ConfigurationError(key: keyPath(key), "expected a list")
        }
    }

    /// A list of scalars that may be absent (nil then).
    public func optionalStringList(_ key: String) throws(ConfigurationError) -> [String]? {
        guard value(key) != nil else { return nil }
        return try stringList(key, default: [])
    }

    /// A `host:port` endpoint.
    public func endpoint(_ key: String, default defaultValue: Endpoint) throws(ConfigurationError) -> Endpoint {
        guard let text = try optionalString(key) else { return defaultValue }
        guard let endpoint = Endpoint(text) else {
            throw ConfigurationError(key: keyPath(key), "expected host:port, such as localhost:4318, not \"\(text)\"")
        }
        return endpoint
    }
}

/// A `host:port` to listen on or connect to.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or address; IPv6 without brackets.
    public var host: String
    /// Port; 0 asks the system for a free one.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension Duration {
    /// Parses Go-style durations: a sequence of number+unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`),
    /// or a plain number of seconds.
    public init?(configText text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let seconds = Double(trimmed), seconds >= 0, seconds.isFinite {
            self = .nanoseconds(Int64(seconds * 1e9))
            return
        }
        var total: Double = 0
        var rest = Substring(trimmed)
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let numberText = rest.prefix { $0.isNumber || $0 == "." }
            guard let number = Double(numberText) else { return nil }
            rest = rest.dropFirst(numberText.count)
            let unit = rest.prefix { $0.isLetter || $0 == "µ" }
            rest = rest.dropFirst(unit.count)
            let scale: Double
            switch unit {
            case "ns": scale = 1
            case "us", "µs": scale = 1e3
            case "ms": scale = 1e6
            case "s": scale = 1e9
            case "m": scale = 60e9
            case "h": scale = 3600e9
            default: return nil
            }
            total += number * scale
        }
        guard total < Double(Int64.max) else { return nil }
        self = .nanoseconds(Int64(total))
    }

    /// Whole nanoseconds, saturating.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max : product + attoseconds / 1_000_000_000
    }
}

import Foundation
