/// A 16-byte W3C trace id, stored as two big-endian halves so it hashes and compares cheaply.
public struct TraceID: Hashable, Sendable, Comparable {
    /// The first eight bytes, big-endian.
    public var high: UInt64
    /// The last eight bytes, big-endian.
    public var low: UInt64

    /// Creates a trace id from its two big-endian halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The all-zero id, which the OTLP specification calls invalid.
    public static let zero = TraceID(high: 0, low: 0)

    /// True unless every byte is zero.
    public var isValid: Bool { high != 0 || low != 0 }

    /// Reads exactly 16 bytes; nil for any other length.
    public init?<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(high: high, low: low)
    }

    /// Parses 32 hex digits (either case); nil for anything else.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 32, let high = UInt64(hexDigits: hex.utf8.prefix(16)),
              let low = UInt64(hexDigits: hex.utf8.dropFirst(16)) else { return nil }
        self.init(high: high, low: low)
    }

    /// The 16 bytes, big-endian.
    public var bytes: [UInt8] { high.bigEndianBytes + low.bigEndianBytes }

    /// 32 lowercase hex digits.
    public var hex: String { high.paddedHex + low.paddedHex }

    public static func < (lhs: TraceID, rhs: TraceID) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }
}

/// An 8-byte span id.
public struct SpanID: Hashable, Sendable, Comparable {
    /// The eight bytes as a big-endian integer.
    public var value: UInt64

    /// Creates a span id from its big-endian value.
    public init(_ value: UInt64) { self.value = value }

    /// The all-zero id: "no parent" in a parent field, invalid as a span's own id.
    public static let zero = SpanID(0)

    /// True unless every byte is zero.
    public var isValid: Bool { value != 0 }

    /// Reads exactly 8 bytes; nil for any other length.
    public init?<Bytes: Collection>(bytes: Bytes) where Bytes.Element == UInt8 {
        guard bytes.count == 8 else { return nil }
        self.init(bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    /// Parses 16 hex digits (either case); nil for anything else.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 16, let value = UInt64(hexDigits: hex.utf8) else { return nil }
        self.init(value)
    }

    /// The 8 bytes, big-endian.
    public var bytes: [UInt8] { value.bigEndianBytes }

    /// 16 lowercase hex digits.
    public var hex: String { value.paddedHex }

    public static func < (lhs: SpanID, rhs: SpanID) -> Bool { lhs.value < rhs.value }
}

extension UInt64 {
    /// Parses hex digits of either case; nil on any other character or when empty.
    init?<Digits: Collection>(hexDigits: Digits) where Digits.Element == UInt8 {
        guard !hexDigits.isEmpty, hexDigits.count <= 16 else { return nil }
        var value: UInt64 = 0
        for digit in hexDigits {
            guard let nibble = HexDigit.value(of: digit) else { return nil }
            value = value << 4 | UInt64(nibble)
        }
        self = value
    }

    var bigEndianBytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: self >> (56 - 8 * UInt64($0))) }
    }

    var paddedHex: String {
        String(unsafeUninitializedCapacity: 16) { buffer in
            for index in 0..<16 {
                buffer[index] = HexDigit.lowercase[Int((self >> (60 - 4 * UInt64(index))) & 0xF)]
            }
            return 16
        }
    }
}

/// Hex digit tables shared by the id types and the wire codecs.
public enum HexDigit {
    /// `0123456789abcdef` as ASCII bytes.
    public static let lowercase: [UInt8] = Array("0123456789abcdef".utf8)

    /// The value of one ASCII hex digit of either case.
    @inline(__always)
    public static func value(of digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit &- UInt8(ascii: "A") &+ 10
        default: nil
        }
    }
}
