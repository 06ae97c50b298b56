import JSONText
import TraceModel

/// Attribute values as text, for backends whose tags are strings (Zipkin; Jaeger arrays and maps), as
/// the OpenTelemetry specification's mapping to non-OTLP formats asks: booleans lower case, integers
/// in decimal, doubles in their shortest round-trip form without a trailing `.0`, bytes in base64,
/// arrays and maps as compact JSON.
public enum AttributeText {
    /// The text of one value; an empty value is the empty string.
    public static func string(_ value: AttributeValue) -> String {
        switch value {
        case .string(let text): return text
        case .bool(let flag): return flag ? "true" : "false"
        case .int(let integer): return String(integer)
        case .double(let real): return double(real)
        case .bytes(let bytes): return Base64.encode(bytes)
        case .empty: return ""
        case .array, .keyValueList:
            var writer = JSONWriter(capacity: 64)
            json(value, into: &writer)
            return String(decoding: writer.bytes, as: UTF8.self)
        }
    }

    /// A key/value map as a compact JSON object, keys in order.
    public static func jsonObject(_ attributes: [Attribute]) -> String {
        var writer = JSONWriter(capacity: 64)
        json(.keyValueList(attributes), into: &writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// Doubles as JavaScript prints them: `2`, `0.25`, `1e-7`, `1e+21`, `NaN`, `Infinity`.
    public static func double(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        if value == value.rounded(), abs(value) < 1e21 {
            if let integer = Int64(exactly: value) { return String(integer) }
        }
        var text = value.description
        // Swift writes exponents with leading zeros (1e-07); drop them.
        if let e = text.firstIndex(of: "e") {
            let mantissa = text[..<e]
            var exponent = text[text.index(after: e)...]
            var sign = ""
            if let first = exponent.first, first == "-" || first == "+" {
                sign = String(first)
                exponent = exponent.dropFirst()
            }
            let digits = exponent.drop { $0 == "0" }
            text = "\(mantissa)e\(sign.isEmpty ? "+" : sign)\(digits.isEmpty ? "0" : String(digits))"
        }
        return text
    }

    static func json(_ value: AttributeValue, into writer: inout JSONWriter) {
        switch value {
        case .string(let text): writer.string(text)
        case .bool(let flag): writer.bool(flag)
        case .int(let integer): writer.integer(integer)
        case .double(let real):
            if real.isFinite { writer.raw(double(real)) } else { writer.string(double(real)) }
        case .bytes(let bytes): writer.string(Base64.encode(bytes))
        case .empty: writer.raw("null")
        case .array(let elements):
            writer.beginArray()
            for element in elements { json(element, into: &writer) }
            writer.endArray()
        case .keyValueList(let attributes):
            writer.beginObject()
            for attribute in attributes {
                writer.dynamicKey(attribute.key)
                json(attribute.value, into: &writer)
            }
            writer.endObject()
        }
    }
}
