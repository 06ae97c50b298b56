import TraceModel

/// Binary OTLP `ExportTraceServiceRequest`s read straight into the span model, in one pass over the
/// bytes: no protobuf-c structs built in an arena and walked again. The counterpart of
/// `OTLPProtobufWriter`. It refuses what protobuf-c's unpack refuses (a known field with the wrong wire
/// type, a broken tag, varint or length, groups) and reads what it reads, with three differences, all
/// where protobuf-c departs from the protobuf specification: strings keep an embedded U+0000 (protobuf-c
/// cuts them at it), a singular message field sent twice is merged as the specification says
/// (protobuf-c resets the first one's numbers), and a field number beyond the specification's 2^29 - 1
/// is refused (protobuf-c keeps 32 bits of it and skips the field as unknown). Tests and the fuzz target check it against protobuf-c
/// (`OTLPProtobufCodec.decodeRequestUsingProtobufC`). Not thread-safe: one per connection or task.
struct OTLPProtobufReader {
    /// Messages nested deeper than this below the request are refused: the request itself needs 6
    /// levels, each level of AnyValue arrays or maps 2 more.
    static let maximumNestingDepth = 64
    /// The refusal for nesting beyond it (the reference decoder gives the same).
    static let tooDeep = OTLPDecodingError("protobuf message nested deeper than \(maximumNestingDepth) levels")

    private var strings = StringCache()
    /// Bytes of model the current request may still produce: a message that would expand beyond
    /// 32 times its size (a megabyte at least) is hostile.
    private var budget = 0
    private var depthLeft = 0
    /// Set when the last request sent a singular message field twice (merged here by the specification,
    /// differently by protobuf-c): the differential checks skip such inputs.
    package private(set) var mergedSingularMessage = false
    /// The request being read and its serial, for each span's `received` location (serial 0: none).
    private var requestStart: UnsafePointer<UInt8>?
    private var requestSerial: UInt64 = 0

    /// Reads `received`'s bytes; every span notes where it sits in them.
    mutating func request(_ received: ReceivedRequest) throws(OTLPDecodingError) -> SpanBatch {
        let result: Result<SpanBatch, OTLPDecodingError> = received.bytes.withUnsafeBytes { bytes in
            Result { () throws(OTLPDecodingError) in try request(bytes, serial: received.serial) }
        }
        var batch = try result.get()
        if !batch.resourceSpans.isEmpty { batch.received = received }
        return batch
    }

    mutating func request(_ bytes: UnsafeRawBufferPointer, serial: UInt64 = 0) throws(OTLPDecodingError) -> SpanBatch {
        budget = max(bytes.count * 32, 1 << 20)
        depthLeft = Self.maximumNestingDepth
        mergedSingularMessage = false
        var batch = SpanBatch()
        guard let base = bytes.baseAddress, bytes.count > 0 else { return batch }
        var input = ProtobufInput(base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        requestStart = input.start
        requestSerial = serial
        defer { requestStart = nil }
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1):
                if batch.resourceSpans.isEmpty { batch.resourceSpans.reserveCapacity(input.countRun(of: key)) }
                var body = try enter(&input)
                batch.resourceSpans.append(try resourceSpans(&body))
                depthLeft += 1
            default:
                try input.skip(key, known: 1 << 1)
            }
        }
        return batch
    }

    // MARK: - Messages

    private mutating func resourceSpans(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> ResourceSpans {
        var result = ResourceSpans()
        try group(&input, head: &result.resource, elements: &result.scopeSpans, schemaURL: &result.schemaURL,
                  readHead: { reader, body, resource throws(OTLPDecodingError) in try reader.resource(&body, into: &resource) },
                  readElement: { reader, body throws(OTLPDecodingError) in try reader.scopeSpans(&body) })
        return result
    }

    /// `ResourceSpans` and `ScopeSpans`, which have one shape: a singular message (1: the resource or
    /// the scope), a repeated one (2: scopes or spans) and a schema URL (3).
    @inline(__always)
    private mutating func group<Head, Element>(
        _ input: inout ProtobufInput, head: inout Head, elements: inout [Element], schemaURL: inout String,
        readHead: (inout Self, inout ProtobufInput, inout Head) throws(OTLPDecodingError) -> Void,
        readElement: (inout Self, inout ProtobufInput) throws(OTLPDecodingError) -> Element
    ) throws(OTLPDecodingError) {
        var sawHead = false
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1):
                noteSingular(&sawHead)
                var body = try enter(&input)
                try readHead(&self, &body, &head)
                depthLeft += 1
            case Key.message(2):
                if elements.isEmpty { elements.reserveCapacity(input.countRun(of: key)) }
                var body = try enter(&input)
                elements.append(try readElement(&self, &body))
                depthLeft += 1
            case Key.message(3):
                schemaURL = try string(&input)
            default:
                try input.skip(key, known: 0b1110)
            }
        }
    }

    private mutating func resource(_ input: inout ProtobufInput, into result: inout Resource) throws(OTLPDecodingError) {
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1):
                try appendAttribute(&input, key: key, to: &result.attributes)
            case Key.varint(2):
                result.droppedAttributesCount = UInt32(truncatingIfNeeded: try input.varint())
            case Key.message(3):
                // entity_refs: checked as protobuf-c checks them, not kept.
                var body = try enter(&input)
                try body.skipMessage(lengthDelimitedFields: 0b11110)
                depthLeft += 1
            default:
                try input.skip(key, known: 0b1110)
            }
        }
    }

    private mutating func scopeSpans(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> ScopeSpans {
        var result = ScopeSpans()
        try group(&input, head: &result.scope, elements: &result.spans, schemaURL: &result.schemaURL,
                  readHead: { reader, body, scope throws(OTLPDecodingError) in try reader.scope(&body, into: &scope) },
                  readElement: { reader, body throws(OTLPDecodingError) in try reader.span(&body) })
        return result
    }

    private mutating func scope(_ input: inout ProtobufInput, into result: inout InstrumentationScope) throws(OTLPDecodingError) {
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1): result.name = try string(&input)
            case Key.message(2): result.version = try string(&input)
            case Key.message(3): try appendAttribute(&input, key: key, to: &result.attributes)
            case Key.varint(4): result.droppedAttributesCount = UInt32(truncatingIfNeeded: try input.varint())
            default: try input.skip(key, known: 0b11110)
            }
        }
    }

    private mutating func span(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> Span {
        try spend(MemoryLayout<Span>.stride)
        var span = Span(traceID: .zero, spanID: .zero)
        var sawStatus = false
        let start = input.start
        let length = input.remaining
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1): span.traceID = Self.traceID(try input.lengthDelimited())
            case Key.message(2): span.spanID = Self.spanID(try input.lengthDelimited())
            case Key.message(3): span.traceState = try string(&input)
            case Key.message(4): span.parentSpanID = Self.spanID(try input.lengthDelimited())
            case Key.message(5): span.name = try string(&input)
            case Key.varint(6): span.kind = SpanKind(otlpValue: Int32(truncatingIfNeeded: try input.varint()))
            case Key.fixed64(7): span.startTimeUnixNano = try input.fixed64()
            case Key.fixed64(8): span.endTimeUnixNano = try input.fixed64()
            case Key.message(9): try appendAttribute(&input, key: key, to: &span.attributes)
            case Key.varint(10): span.droppedAttributesCount = UInt32(truncatingIfNeeded: try input.varint())
            case Key.message(11):
                if span.events.isEmpty { span.events.reserveCapacity(input.countRun(of: key)) }
                try spend(MemoryLayout<SpanEvent>.stride)
                var body = try enter(&input)
                span.events.append(try event(&body))
                depthLeft += 1
            case Key.varint(12): span.droppedEventsCount = UInt32(truncatingIfNeeded: try input.varint())
            case Key.message(13):
                if span.links.isEmpty { span.links.reserveCapacity(input.countRun(of: key)) }
                try spend(MemoryLayout<SpanLink>.stride)
                var body = try enter(&input)
                span.links.append(try link(&body))
                depthLeft += 1
            case Key.varint(14): span.droppedLinksCount = UInt32(truncatingIfNeeded: try input.varint())
            case Key.message(15):
                noteSingular(&sawStatus)
                var body = try enter(&input)
                try status(&body, into: &span.status)
                depthLeft += 1
            case Key.fixed32(16): span.flags = try input.fixed32()
            default: try input.skip(key, known: 0x1_FFFE)
            }
        }
        if requestSerial != 0, let requestStart {
            span.received = ReceivedSpanBytes(request: requestSerial, offset: UInt32(start - requestStart), length: UInt32(length))
        }
        return span
    }

    private mutating func event(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> SpanEvent {
        var event = SpanEvent()
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.fixed64(1): event.timeUnixNano = try input.fixed64()
            case Key.message(2): event.name = try string(&input)
            case Key.message(3): try appendAttribute(&input, key: key, to: &event.attributes)
            case Key.varint(4): event.droppedAttributesCount = UInt32(truncatingIfNeeded: try input.varint())
            default: try input.skip(key, known: 0b11110)
            }
        }
        return event
    }

    private mutating func link(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> SpanLink {
        var link = SpanLink(traceID: .zero, spanID: .zero)
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1): link.traceID = Self.traceID(try input.lengthDelimited())
            case Key.message(2): link.spanID = Self.spanID(try input.lengthDelimited())
            case Key.message(3): link.traceState = try string(&input)
            case Key.message(4): try appendAttribute(&input, key: key, to: &link.attributes)
            case Key.varint(5): link.droppedAttributesCount = UInt32(truncatingIfNeeded: try input.varint())
            case Key.fixed32(6): link.flags = try input.fixed32()
            default: try input.skip(key, known: 0b111_1110)
            }
        }
        return link
    }

    private mutating func status(_ input: inout ProtobufInput, into status: inout SpanStatus) throws(OTLPDecodingError) {
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(2): status.message = try string(&input)
            case Key.varint(3):
                status.code = SpanStatus.Code(rawValue: Int32(truncatingIfNeeded: try input.varint())) ?? .unset
            default: try input.skip(key, known: 0b1100)
            }
        }
    }

    /// Reads one `KeyValue` field and appends it, reserving room for the run of them that follows.
    private mutating func appendAttribute(_ input: inout ProtobufInput, key: UInt32, to attributes: inout [Attribute])
        throws(OTLPDecodingError) {
        if attributes.isEmpty { attributes.reserveCapacity(input.countRun(of: key)) }
        var body = try enter(&input)
        attributes.append(try keyValue(&body))
        depthLeft += 1
    }

    private mutating func keyValue(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> Attribute {
        try spend(MemoryLayout<Attribute>.stride)
        var attribute = Attribute("", .empty)
        var sawValue = false
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1): attribute.key = try string(&input)
            case Key.message(2):
                noteSingular(&sawValue)
                var body = try enter(&input)
                try anyValue(&body, into: &attribute.value)
                depthLeft += 1
            case Key.varint(3): _ = try input.varint()  // key_strindex: profiles only
            default: try input.skip(key, known: 0b1110)
            }
        }
        return attribute
    }

    /// An `AnyValue`: the last member of the oneof sent wins, as in protobuf-c; a message with no member
    /// leaves `value` as it was (a merge).
    private mutating func anyValue(_ input: inout ProtobufInput, into value: inout AttributeValue) throws(OTLPDecodingError) {
        while !input.isAtEnd {
            let key = try input.key()
            switch key {
            case Key.message(1): value = .string(try string(&input))
            case Key.varint(3): value = .int(Int64(bitPattern: try input.varint()))
            case Key.fixed64(4): value = .double(Double(bitPattern: try input.fixed64()))
            case Key.message(5):
                var elements: [AttributeValue] = []
                var body = try enter(&input)
                while !body.isAtEnd {
                    let elementKey = try body.key()
                    guard elementKey == Key.message(1) else {
                        try body.skip(elementKey, known: 0b10)
                        continue
                    }
                    if elements.isEmpty { elements.reserveCapacity(body.countRun(of: elementKey)) }
                    try spend(MemoryLayout<AttributeValue>.stride)
                    var element = try enter(&body)
                    var elementValue = AttributeValue.empty
                    try anyValue(&element, into: &elementValue)
                    elements.append(elementValue)
                    depthLeft += 1
                }
                depthLeft += 1
                value = .array(elements)
            case Key.message(6):
                var list: [Attribute] = []
                var body = try enter(&input)
                while !body.isAtEnd {
                    let entryKey = try body.key()
                    guard entryKey == Key.message(1) else {
                        try body.skip(entryKey, known: 0b10)
                        continue
                    }
                    try appendAttribute(&body, key: entryKey, to: &list)
                }
                depthLeft += 1
                value = .keyValueList(list)
            case Key.message(7):
                let bytes = try input.lengthDelimited()
                try spend(bytes.count)
                value = .bytes(Array(bytes))
            case Key.varint(8):
                _ = try input.varint()  // string_value_strindex: profiles only, nothing in a trace
                value = .empty
            default:
                if key >> 3 == 2 {
                    // bool_value: protobuf-c takes any wire type and reads true when any of the field's
                    // bytes has a bit set below the continuation bit.
                    value = .bool(try input.anyBitSet(wireType: key & 7))
                } else {
                    try input.skip(key, known: 0b1_1111_1110)
                }
            }
        }
    }

    // MARK: - Helpers

    /// The body of the length-delimited field at `input`, one nesting level down.
    @inline(__always)
    private mutating func enter(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> ProtobufInput {
        guard depthLeft > 0 else {
            throw Self.tooDeep
        }
        depthLeft -= 1
        return ProtobufInput(try input.lengthDelimited())
    }

    @inline(__always)
    private mutating func spend(_ bytes: Int) throws(OTLPDecodingError) {
        budget -= bytes
        if budget < 0 { throw OTLPDecodingError("protobuf message expands beyond 32 times its size") }
    }

    private mutating func noteSingular(_ seen: inout Bool) {
        if seen { mergedSingularMessage = true }
        seen = true
    }

    @inline(__always)
    private mutating func string(_ input: inout ProtobufInput) throws(OTLPDecodingError) -> String {
        let bytes = try input.lengthDelimited()
        try spend(bytes.count)
        return strings.string(bytes)
    }

    static func traceID(_ bytes: UnsafeRawBufferPointer) -> TraceID {
        guard bytes.count == 16, let base = bytes.baseAddress else { return .zero }
        return TraceID(high: UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)),
                       low: UInt64(bigEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    static func spanID(_ bytes: UnsafeRawBufferPointer) -> SpanID {
        guard bytes.count == 8, let base = bytes.baseAddress else { return .zero }
        return SpanID(UInt64(bigEndian: base.loadUnaligned(as: UInt64.self)))
    }
}

extension OTLPDecodingError {
    /// The refusal of a field number beyond the specification's 2^29 - 1, a key wider than 32 bits
    /// (protobuf-c, the reference, keeps 32 bits of the number and skips the field as unknown).
    package static let fieldNumberTooLarge = OTLPDecodingError("malformed protobuf: a field number beyond 2^29 - 1")
}

/// Protobuf keys (field number and wire type) as the switch statements above spell them.
enum Key {
    static func varint(_ number: UInt32) -> UInt32 { number << 3 }
    static func fixed64(_ number: UInt32) -> UInt32 { number << 3 | 1 }
    static func message(_ number: UInt32) -> UInt32 { number << 3 | 2 }
    static func fixed32(_ number: UInt32) -> UInt32 { number << 3 | 5 }
}

/// A cursor over protobuf bytes, with protobuf-c's limits: keys and lengths of at most 5 bytes, varints
/// of at most 10, lengths that fit in the rest of their message.
struct ProtobufInput {
    private var position: UnsafePointer<UInt8>
    private let end: UnsafePointer<UInt8>

    init(_ base: UnsafePointer<UInt8>, count: Int) {
        position = base
        end = base + count
    }

    init(_ bytes: UnsafeRawBufferPointer) {
        // An empty body may have no address; any non-nil pointer serves, as nothing is read from it.
        let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        self.init(base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
    }

    var isAtEnd: Bool { position >= end }
    /// Where the unread bytes start.
    var start: UnsafePointer<UInt8> { position }
    /// Bytes not read yet.
    var remaining: Int { end - position }

    private static func malformed() -> OTLPDecodingError {
        OTLPDecodingError("malformed protobuf: broken tag, varint or length")
    }

    /// A field's key: field number and wire type. Numbers 0 and beyond 2^29 - 1 are refused.
    @inline(__always)
    mutating func key() throws(OTLPDecodingError) -> UInt32 {
        let first = position.pointee
        if first < 0x80, first >= 8 {
            position += 1
            return UInt32(first)
        }
        let value = try varint(maximumBytes: 5)
        guard value >> 3 != 0 else { throw Self.malformed() }
        guard value >> 3 <= 0x1FFF_FFFF else { throw .fieldNumberTooLarge }
        return UInt32(truncatingIfNeeded: value)
    }

    @inline(__always)
    mutating func varint(maximumBytes: Int = 10) throws(OTLPDecodingError) -> UInt64 {
        guard position < end else { throw Self.malformed() }
        let first = position.pointee
        position += 1
        if first < 0x80 { return UInt64(first) }
        var result = UInt64(first & 0x7F)
        var shift: UInt64 = 7
        for _ in 1..<maximumBytes {
            guard position < end else { throw Self.malformed() }
            let byte = position.pointee
            position += 1
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
        throw Self.malformed()
    }

    mutating func fixed64() throws(OTLPDecodingError) -> UInt64 {
        guard end - position >= 8 else { throw Self.malformed() }
        defer { position += 8 }
        return UInt64(littleEndian: UnsafeRawPointer(position).loadUnaligned(as: UInt64.self))
    }

    mutating func fixed32() throws(OTLPDecodingError) -> UInt32 {
        guard end - position >= 4 else { throw Self.malformed() }
        defer { position += 4 }
        return UInt32(littleEndian: UnsafeRawPointer(position).loadUnaligned(as: UInt32.self))
    }

    /// The bytes of a length-delimited field, whose key has been read.
    @inline(__always)
    mutating func lengthDelimited() throws(OTLPDecodingError) -> UnsafeRawBufferPointer {
        let length = try varint(maximumBytes: 5)
        guard length <= UInt64(end - position) else { throw Self.malformed() }
        defer { position += Int(length) }
        return UnsafeRawBufferPointer(start: position, count: Int(length))
    }

    /// Skips a field this reader does not keep. A known number (a bit set in `known`) with another
    /// wire type than the one read for it is refused, as protobuf-c refuses it.
    mutating func skip(_ key: UInt32, known: UInt32) throws(OTLPDecodingError) {
        let number = key >> 3
        if number < 32, known & (1 << number) != 0 {
            throw OTLPDecodingError("malformed protobuf: field \(number) has the wrong wire type")
        }
        try skipValue(wireType: key & 7)
    }

    private mutating func skipValue(wireType: UInt32) throws(OTLPDecodingError) {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw OTLPDecodingError("malformed protobuf: wire type \(wireType) is not supported")
        }
    }

    /// A message whose fields are only checked: those in `lengthDelimitedFields` must be
    /// length-delimited, the rest may be anything.
    mutating func skipMessage(lengthDelimitedFields: UInt32) throws(OTLPDecodingError) {
        while !isAtEnd {
            let key = try self.key()
            if key & 7 == 2 {
                _ = try lengthDelimited()
            } else {
                try skip(key, known: lengthDelimitedFields)
            }
        }
    }

    /// For a bool field of any wire type, as protobuf-c reads it: true when any byte of its value
    /// (the length prefix of a length-delimited one included) has one of its low seven bits set.
    mutating func anyBitSet(wireType: UInt32) throws(OTLPDecodingError) -> Bool {
        let start = position
        try skipValue(wireType: wireType)
        var cursor = start
        while cursor < position {
            if cursor.pointee & 0x7F != 0 { return true }
            cursor += 1
        }
        return false
    }

    /// How many fields with `key` follow in a row from here (the field whose key was just read
    /// included): the room to reserve for a repeated field, which senders write together. Stops at the
    /// first other key or anything malformed, which the reading proper then reports.
    func countRun(of key: UInt32) -> Int {
        var cursor = self
        var count = 0
        while true {
            guard (try? cursor.lengthDelimited()) != nil else { return count }
            count += 1
            guard !cursor.isAtEnd, let next = try? cursor.key(), next == key else { return count }
        }
    }
}
