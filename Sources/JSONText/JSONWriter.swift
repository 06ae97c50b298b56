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

    /// Appends a word's 16 hex digits, most significant first, without making a `String` of them: each
    /// half's eight nibbles spread to a byte each and turned into digits together, then appended.
    private static func appendHex(_ word: UInt64, to output: inout [UInt8]) {
        func append(_ digits: UInt64) {
            for shift in stride(from: UInt64(0), to: 64, by: 8) { output.append(UInt8(truncatingIfNeeded: digits >> shift)) }
        }
        append(hexDigits(UInt32(truncatingIfNeeded: word >> 32)))
        append(hexDigits(UInt32(truncatingIfNeeded: word)))
    }

    /// A 32-bit value's eight lowercase hex digits as the bytes of a word, the most significant digit in
    /// the lowest byte.
    static func hexDigits(_ value: UInt32) -> UInt64 {
        var spread = UInt64(value)
        spread = (spread & 0xFFFF_0000) << 16 | spread & 0xFFFF
        spread = (spread & 0x0000_FF00_0000_FF00) << 8 | spread & 0x0000_00FF_0000_00FF
        spread = (spread & 0x00F0_00F0_00F0_00F0) << 4 | spread & 0x000F_000F_000F_000F
        // Nibble n (from the least significant) is in byte n: the first digit goes first.
        let nibbles = spread.byteSwapped
        let ones: UInt64 = 0x0101_0101_0101_0101
        // 1 in each byte whose nibble is 10 or more (it then passes 16 when 6 is added).
        let letters = ((nibbles &+ ones &* 6) >> 4) & ones
        return nibbles &+ ones &* 0x30 &+ letters &* 0x27
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

    /// True when some byte must be escaped: a control character, `"` or `\`. Eight bytes at a time, each
    /// test a few word operations for all eight (a byte below 0x20, or equal to 0x22 or 0x5C, sets its top
    /// bit in the result; other bytes' borrows cannot, as every byte of the input is first checked below
    /// 0x80 or passed), then byte by byte for the tail.
    static func needsEscaping(_ utf8: UnsafeBufferPointer<UInt8>) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var offset = 0
        while offset + 8 <= utf8.count {
            // Read by index, a byte at a time (the compiler makes one load of them), not through a raw pointer.
            var word: UInt64 = 0
            for index in 0..<8 { word |= UInt64(utf8[offset + index]) << (8 * UInt64(index)) }
            // Bytes of 0x80 and above (UTF-8 sequences) never need escaping: mask them out of every test.
            let ascii = ~word & highs
            let control = (word &- ones &* 0x20) & ascii
            let quote = ((word ^ (ones &* 0x22)) &- ones) & ascii
            let backslash = ((word ^ (ones &* 0x5C)) &- ones) & ascii
            if (control | quote | backslash) != 0 {
                // A borrow can carry into the next byte and flag it falsely: look at these eight exactly.
                for index in offset..<offset + 8 where Self.mustEscape(utf8[index]) { return true }
            }
            offset += 8
        }
        while offset < utf8.count {
            if Self.mustEscape(utf8[offset]) { return true }
            offset += 1
        }
        return false
    }

    @inline(__always)
    private static func mustEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private mutating func appendQuoted(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        // Most strings need no escaping: copy them whole. `withUTF8` reads a small string (up to 15 bytes,
        // kept inside the value: most keys and many values) in place too, where the string's own
        // contiguous storage is nil and the byte-by-byte path below cost 30% of a Zipkin body.
        var text = value
        let copied = text.withUTF8 { utf8 in
            guard !Self.needsEscaping(utf8) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if copied {
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
