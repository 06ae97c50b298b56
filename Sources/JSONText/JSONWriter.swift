/// Appends compact JSON to a byte buffer; the caller decides member order, so output is deterministic.
/// The one JSON writer: OTLP/JSON, Zipkin JSON, alert payloads and the admin API's documents all use it.
public struct JSONWriter: Sendable {
    /// The document so far.
    public private(set) var bytes: [UInt8] = []
    private var needsComma = false

    /// An empty document with room for `capacity` bytes.
    public init(capacity: Int = 1024) {
        bytes.reserveCapacity(capacity)
    }

    /// Opens an object (as a value, or as the member value after `key`).
    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    /// Closes the object opened last.
    public mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        needsComma = true
    }

    /// Opens an array.
    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    /// Closes the array opened last.
    public mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        needsComma = true
    }

    /// Writes a member name; the next value written is its value.
    public mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    /// Writes a member name that is not a literal.
    public mutating func dynamicKey(_ name: String) {
        separate()
        appendQuoted(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    /// Writes already-formatted JSON (a number, `null`).
    public mutating func raw(_ text: String) {
        separate()
        bytes.append(contentsOf: text.utf8)
        needsComma = true
    }

    /// Writes a string, escaped as RFC 8259 asks.
    public mutating func string(_ value: String) {
        separate()
        appendQuoted(value)
        needsComma = true
    }

    /// Writes digits as a JSON string, as OTLP/JSON asks for 64-bit integers.
    public mutating func quotedInteger<Integer: BinaryInteger>(_ value: Integer) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: String(value).utf8)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// Writes an integer as a JSON number.
    public mutating func integer<Integer: BinaryInteger>(_ value: Integer) {
        separate()
        if let exact = Int64(exactly: value) {
            Self.appendDigits(exact, to: &bytes)
        } else {
            Self.appendDigits(value, to: &bytes)
        }
        needsComma = true
    }

    /// Writes an `Int` as a JSON number, without the generic path's cost in unoptimised builds.
    public mutating func integer(_ value: Int) {
        separate()
        Self.appendDigits(Int64(value), to: &bytes)
        needsComma = true
    }

    /// Writes an `Int64` as a JSON number.
    public mutating func integer(_ value: Int64) {
        separate()
        Self.appendDigits(value, to: &bytes)
        needsComma = true
    }

    /// Writes a double; NaN and the infinities as the strings proto3 JSON uses for them.
    public mutating func double(_ value: Double) {
        separate()
        if value.isNaN {
            bytes.append(contentsOf: "\"NaN\"".utf8)
        } else if value.isInfinite {
            bytes.append(contentsOf: (value < 0 ? "\"-Infinity\"" : "\"Infinity\"").utf8)
        } else {
            bytes.append(contentsOf: value.description.utf8)
        }
        needsComma = true
    }

    /// Writes `true` or `false`.
    public mutating func bool(_ value: Bool) {
        separate()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
        needsComma = true
    }

    /// Writes a 64-bit word as a string of 16 lowercase hex digits (a span id in OTLP/JSON and Zipkin).
    public mutating func hex(_ word: UInt64) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        Self.appendHex(word, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// Writes two 64-bit words as one string of 32 lowercase hex digits (a trace id).
    public mutating func hex(_ high: UInt64, _ low: UInt64) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        Self.appendHex(high, to: &bytes)
        Self.appendHex(low, to: &bytes)
        bytes.append(UInt8(ascii: "\""))
        needsComma = true
    }

    /// Appends a word's 16 hex digits, most significant first, without making a `String` of them.
    private static func appendHex(_ word: UInt64, to output: inout [UInt8]) {
        var shift: UInt64 = 64
        while shift > 0 {
            shift -= 4
            let nibble = UInt8(truncatingIfNeeded: (word >> shift) & 0xF)
            output.append(nibble < 10 ? nibble &+ UInt8(ascii: "0") : nibble &- 10 &+ UInt8(ascii: "a"))
        }
    }

    /// Writes a plain JSON number: integral values without a fraction, the shortest round-tripping text
    /// otherwise, and `null` for NaN and the infinities (which JSON cannot carry).
    public mutating func number(_ value: Double) {
        separate()
        Self.appendNumber(value, to: &bytes)
        needsComma = true
    }

    /// Writes `null`.
    public mutating func null() {
        raw("null")
    }

    /// `number(_:)`'s text, for messages that show a number as JSON would.
    public static func numberText(_ number: Double) -> String {
        var bytes: [UInt8] = []
        appendNumber(number, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `number(_:)`'s text: integral values as their digits; up to three decimals (milliseconds to the
    /// microsecond, say) from integers, without a String per number; otherwise Swift's shortest
    /// round-tripping description. Each gives the text `String(number)` would, minus an integer's ".0".
    private static func appendNumber(_ real: Double, to output: inout [UInt8]) {
        if real.isFinite, real == real.rounded(), abs(real) < 1e15 {
            appendDigits(Int64(real), to: &output)
        } else if real.isFinite, abs(real) < 1e12, case let thousandths = (real * 1000).rounded(),
                  abs(thousandths - real * 1000) < 1e-6, Int64(thousandths) % 1000 != 0 {
            let scaled = Int64(thousandths)
            if scaled < 0 { output.append(UInt8(ascii: "-")) }
            appendDigits(abs(scaled) / 1000, to: &output)
            var fraction = abs(scaled) % 1000
            output.append(UInt8(ascii: "."))
            var divisor: Int64 = 100
            while fraction > 0 {
                output.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
                fraction %= divisor
                divisor /= 10
            }
        } else if real.isFinite {
            output.append(contentsOf: String(real).utf8)
        } else {
            output.append(contentsOf: "null".utf8)
        }
    }

    /// An `Int64`'s decimal digits, without making a String (the generic version's work, unspecialised in
    /// debug builds, dominated the graph API's answer there).
    private static func appendDigits(_ value: Int64, to output: inout [UInt8]) {
        var magnitude = value.magnitude
        if value < 0 { output.append(UInt8(ascii: "-")) }
        guard magnitude != 0 else { return output.append(UInt8(ascii: "0")) }
        let start = output.count
        while magnitude != 0 {
            output.append(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10))
            magnitude /= 10
        }
        var (low, high) = (start, output.count - 1)
        while low < high {
            output.swapAt(low, high)
            low += 1
            high -= 1
        }
    }

    /// An integer's decimal digits, without making a String.
    private static func appendDigits<Value: BinaryInteger>(_ value: Value, to output: inout [UInt8]) {
        var magnitude = value.magnitude
        if value < 0 { output.append(UInt8(ascii: "-")) }
        guard magnitude != 0 else { return output.append(UInt8(ascii: "0")) }
        let start = output.count
        while magnitude != 0 {
            output.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10))
            magnitude /= 10
        }
        output[start...].reverse()
    }

    private static let lowercaseHex: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func appendQuoted(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them whole.
        let copied: Bool? = value.utf8.withContiguousStorageIfAvailable { utf8 in
            // An index loop rather than `contains(where:)`: no closure call per byte in unoptimised builds.
            var index = 0
            while index < utf8.count {
                let byte = utf8[index]
                if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return false }
                index += 1
            }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied == true {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x00..<0x20:
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(Self.lowercaseHex[Int(byte >> 4)])
                bytes.append(Self.lowercaseHex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
