/// A JSON document built as a value, with object members in the order given, so documents are stable
/// byte for byte. Written by `JSONWriter`.
public indirect enum JSONValue: Sendable, Equatable {
    case string(String)
    /// A number, written as `JSONWriter.number` writes it.
    case number(Double)
    case integer(Int64)
    case bool(Bool)
    case null
    case array([JSONValue])
    /// Members in order; keys are not checked for repeats.
    case object([(String, JSONValue)])

    /// Equal when encoded the same.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.encoded() == rhs.encoded() }

    /// Compact UTF-8 JSON.
    public func encoded() -> [UInt8] {
        var writer = JSONWriter(capacity: 512)
        write(into: &writer)
        return writer.bytes
    }

    /// Appends this value to `writer` (as a value, or as the member value after `key`).
    public func write(into writer: inout JSONWriter) {
        switch self {
        case .string(let text): writer.string(text)
        case .number(let number): writer.number(number)
        case .integer(let integer): writer.integer(integer)
        case .bool(let flag): writer.bool(flag)
        case .null: writer.null()
        case .array(let elements):
            writer.beginArray()
            for element in elements { element.write(into: &writer) }
            writer.endArray()
        case .object(let members):
            writer.beginObject()
            for (key, value) in members {
                writer.dynamicKey(key)
                value.write(into: &writer)
            }
            writer.endObject()
        }
    }
}
