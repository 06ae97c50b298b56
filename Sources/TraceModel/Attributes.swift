/// An attribute value: OTLP's `AnyValue`, every variant of it.
public enum AttributeValue: Sendable, Hashable {
    case string(String)
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes([UInt8])
    case array([AttributeValue])
    case keyValueList([Attribute])
    /// An `AnyValue` with no variant set (OTLP allows it: "empty value").
    case empty

    /// The value as a string, when it is one.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The value as an integer, when it is one.
    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The value as a double; integers convert.
    public var doubleValue: Double? {
        switch self {
        case .double(let value): value
        case .int(let value): Double(value)
        default: nil
        }
    }

    /// The value as a bool, when it is one.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}

extension AttributeValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// A key and its value (OTLP `KeyValue`).
public struct Attribute: Sendable, Hashable {
    /// The key, such as `service.name`.
    public var key: String
    /// The value.
    public var value: AttributeValue

    /// Creates an attribute.
    public init(_ key: String, _ value: AttributeValue) {
        self.key = key
        self.value = value
    }
}

extension Array where Element == Attribute {
    /// The value of the first attribute with `key`; OTLP keys are unique, so first is the only one.
    public subscript(key: String) -> AttributeValue? {
        index(ofKey: key).map { self[$0].value }
    }

    /// Where the attribute with `key` is. By index, lengths first (stored, not counted): no copy of an
    /// attribute, and most keys differ in length.
    public func index(ofKey key: String) -> Int? {
        let length = key.utf8.count
        var index = startIndex
        while index < endIndex {
            if self[index].key.utf8.count == length, self[index].key == key { return index }
            index += 1
        }
        return nil
    }

    /// Sets `key`, replacing an existing value or appending a new attribute.
    public mutating func set(_ key: String, _ value: AttributeValue) {
        if let index = index(ofKey: key) {
            self[index].value = value
        } else {
            append(Attribute(key, value))
        }
    }
}
