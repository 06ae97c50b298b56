import TraceModel

/// Binary OTLP `ExportTraceServiceRequest`s written straight from the span model: the same bytes as
/// `OTLPProtobufCodec.encodeRequest` (protobuf-c's packing: fields in number order, proto3 zero values
/// left out, resource, scope and status always present) without building protobuf-c structs in an arena
/// and walking them twice. Sizes are worked out first, so every byte is written once, into an array of
/// exactly the right size. For what keeps spans as bytes to decode later (tail sampling, disk queues).
public enum OTLPProtobufWriter {
    /// The request's bytes.
    public static func request(_ batch: SpanBatch) -> [UInt8] {
        var sizes = Sizes()
        var total = 0
        for resourceSpans in batch.resourceSpans { total += lengthDelimited(sizes.resourceSpans(resourceSpans)) }
        sizes.rewind()
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            var out = Output(base: buffer.baseAddress!)
            for resourceSpans in batch.resourceSpans { out.resourceSpans(resourceSpans, sizes: &sizes) }
            initialized = out.position
            assert(initialized == total)
        }
    }

    /// The held form of the spans `selection` picks: what keeps the spans of one trace under its id (tail
    /// sampling). A request of one resource spans, which protobuf-c reads back to the picked spans in
    /// their scopes but for their trace id and resource: without each span's `trace_id` (18 bytes a span;
    /// decoded as the zero id), without the resource (decoded as the empty one), both of which the keeper
    /// keeps beside the bytes and gives back, and without empty scope and status messages (decoded as
    /// the empty ones they were). Spans unchanged since they were decoded from `received` are copied as
    /// they arrived, but for a leading `trace_id`: nothing is encoded again.
    public static func heldRequest(_ selection: SpanSelection, received: ReceivedRequest) -> [UInt8] {
        var sizes = Sizes()
        sizes.held = true
        sizes.received = received
        let total = lengthDelimited(sizes.selection(selection))
        sizes.rewind()
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            var out = Output(base: buffer.baseAddress!)
            out.held = true
            out.received = received
            out.selection(selection, sizes: &sizes)
            initialized = out.position
            assert(initialized == total)
        }
    }

    /// The indices of a scope's spans that are written: all of them, or those of a selection's runs.
    struct PickedSpans: Sequence, IteratorProtocol {
        private var runs: ArraySlice<SpanSelection.Run>
        private var current: Range<Int>

        /// All `count` spans.
        init(all count: Int) {
            runs = []
            current = 0..<count
        }

        /// The spans of `runs` (of one scope), in order.
        init(_ runs: ArraySlice<SpanSelection.Run>) {
            self.runs = runs
            current = 0..<0
        }

        mutating func next() -> Int? {
            while current.isEmpty {
                guard let run = runs.popFirst() else { return nil }
                current = run.spans
            }
            return current.popFirst()
        }
    }

    // MARK: - Sizes

    static func varintSize(_ value: UInt64) -> Int {
        // 1 byte per 7 bits, at least one.
        (70 - (value | 1).leadingZeroBitCount) / 7
    }

    /// A nested message or string of `size` bytes with its one-byte tag and length.
    static func lengthDelimited(_ size: Int) -> Int { 1 + varintSize(UInt64(size)) + size }

    static func string(_ text: String) -> Int { text.isEmpty ? 0 : lengthDelimited(text.utf8.count) }

    static func uint32(_ value: UInt32) -> Int { value == 0 ? 0 : 1 + varintSize(UInt64(value)) }

    /// The sizes of the messages whose size is not cheap to work out again (spans and what holds them),
    /// in the order they are written: computed once, read back while writing.
    struct Sizes {
        private var values: [Int] = []
        private var next = 0
        /// Sized in the held form (`heldRequest`).
        var held = false
        /// Where held spans unchanged since they arrived are copied from (set in the held form only).
        var received = ReceivedRequest.none

        mutating func rewind() { next = 0 }

        mutating func take() -> Int {
            defer { next += 1 }
            return values[next]
        }

        private mutating func reserve() -> Int {
            values.append(0)
            return values.count - 1
        }

        mutating func resourceSpans(_ value: ResourceSpans) -> Int {
            let slot = reserve()
            let resourceSize = OTLPProtobufWriter.resource(value.resource)
            var size = lengthDelimited(resourceSize)
            for scopeSpans in value.scopeSpans {
                size += lengthDelimited(self.scopeSpans(scopeSpans, PickedSpans(all: scopeSpans.spans.count)))
            }
            size += string(value.schemaURL)
            values[slot] = size
            return size
        }

        /// A resource spans of the selection's spans, without the resource (`heldRequest`).
        mutating func selection(_ value: SpanSelection) -> Int {
            let slot = reserve()
            var size = 0
            value.forEachScope { scopeSpans, runs in size += lengthDelimited(self.scopeSpans(scopeSpans, PickedSpans(runs))) }
            size += string(value.resourceSpans.schemaURL)
            values[slot] = size
            return size
        }

        mutating func scopeSpans(_ value: ScopeSpans, _ picked: PickedSpans) -> Int {
            let slot = reserve()
            let scopeSize = scope(value.scope)
            var size = held && scopeSize == 0 ? 0 : lengthDelimited(scopeSize)
            for index in picked {
                if let bytes = received.bytes(at: value.spans[index].received) {
                    let spanSize = withoutTraceID(bytes).count
                    values.append(spanSize)
                    size += lengthDelimited(spanSize)
                    continue
                }
                var spanSize = OTLPProtobufWriter.span(value.spans[index])
                // No trace id (18 bytes), and no empty status (2).
                if held { spanSize -= 18 + (status(value.spans[index].status) == 0 ? 2 : 0) }
                values.append(spanSize)
                size += lengthDelimited(spanSize)
            }
            size += string(value.schemaURL)
            values[slot] = size
            return size
        }
    }

    /// A received span's bytes without its `trace_id` when that comes first, as SDKs write it (the held
    /// form); otherwise as they are (the keeper gives every span its trace's id back either way).
    static func withoutTraceID(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let start = bytes.startIndex
        guard bytes.count >= 18, bytes[start] == 0x0A, bytes[start + 1] == 0x10 else { return bytes }
        return bytes.dropFirst(18)
    }

    static func resource(_ value: Resource) -> Int {
        attributes(value.attributes) + uint32(value.droppedAttributesCount)
    }

    static func scope(_ value: InstrumentationScope) -> Int {
        string(value.name) + string(value.version) + attributes(value.attributes) + uint32(value.droppedAttributesCount)
    }

    static func span(_ value: Span) -> Int {
        var size = 18 + 10  // trace_id and span_id, always written (16 and 8 bytes)
        if value.parentSpanID.isValid { size += 10 }
        size += string(value.traceState) + string(value.name)
        if value.kind.rawValue != 0 { size += 1 + varintSize(UInt64(UInt32(bitPattern: value.kind.rawValue))) }
        if value.startTimeUnixNano != 0 { size += 9 }
        if value.endTimeUnixNano != 0 { size += 9 }
        size += attributes(value.attributes) + uint32(value.droppedAttributesCount)
        for event in value.events { size += lengthDelimited(self.event(event)) }
        size += uint32(value.droppedEventsCount)
        for link in value.links { size += lengthDelimited(self.link(link)) }
        size += uint32(value.droppedLinksCount)
        size += lengthDelimited(status(value.status))
        if value.flags != 0 { size += 2 + 4 }  // field 16: a two-byte tag
        return size
    }

    static func event(_ value: SpanEvent) -> Int {
        (value.timeUnixNano != 0 ? 9 : 0) + string(value.name) + attributes(value.attributes) + uint32(value.droppedAttributesCount)
    }

    static func link(_ value: SpanLink) -> Int {
        18 + 10 + string(value.traceState) + attributes(value.attributes) + uint32(value.droppedAttributesCount)
            + (value.flags != 0 ? 5 : 0)
    }

    static func status(_ value: SpanStatus) -> Int {
        string(value.message) + (value.code.rawValue != 0 ? 1 + varintSize(UInt64(UInt32(bitPattern: value.code.rawValue))) : 0)
    }

    static func attributes(_ values: [Attribute]) -> Int {
        var size = 0
        for attribute in values { size += lengthDelimited(keyValue(attribute)) }
        return size
    }

    static func keyValue(_ value: Attribute) -> Int {
        string(value.key) + lengthDelimited(anyValue(value.value))
    }

    /// A oneof: the set member is written even when it is zero or empty.
    static func anyValue(_ value: AttributeValue) -> Int {
        switch value {
        case .string(let text): lengthDelimited(text.utf8.count)
        case .bool: 2
        case .int(let integer): 1 + varintSize(UInt64(bitPattern: integer))
        case .double: 9
        case .bytes(let bytes): lengthDelimited(bytes.count)
        case .array(let elements): lengthDelimited(elements.reduce(0) { $0 + lengthDelimited(anyValue($1)) })
        case .keyValueList(let list): lengthDelimited(attributes(list))
        case .empty: 0
        }
    }

    // MARK: - Writing

    /// Writes into memory sized beforehand by the functions above.
    struct Output {
        let base: UnsafeMutablePointer<UInt8>
        var position = 0
        /// Written in the held form (`heldRequest`).
        var held = false
        /// Where held spans unchanged since they arrived are copied from (set in the held form only).
        var received = ReceivedRequest.none

        mutating func byte(_ value: UInt8) {
            base[position] = value
            position += 1
        }

        mutating func varint(_ value: UInt64) {
            var value = value
            while value >= 0x80 {
                byte(UInt8(truncatingIfNeeded: value) | 0x80)
                value >>= 7
            }
            byte(UInt8(value))
        }

        /// A tag for field numbers below 16.
        mutating func tag(_ field: UInt8, _ wireType: UInt8) { byte(field << 3 | wireType) }

        mutating func fixed64(_ value: UInt64) {
            UnsafeMutableRawPointer(base + position).storeBytes(of: value.littleEndian, as: UInt64.self)
            position += 8
        }

        mutating func header(_ field: UInt8, length: Int) {
            tag(field, 2)
            varint(UInt64(length))
        }

        mutating func string(_ field: UInt8, _ text: String) {
            guard !text.isEmpty else { return }
            stringAlways(field, text)
        }

        mutating func stringAlways(_ field: UInt8, _ text: String) {
            var text = text
            text.withUTF8 { utf8 in
                header(field, length: utf8.count)
                if let source = utf8.baseAddress {
                    (base + position).update(from: source, count: utf8.count)
                    position += utf8.count
                }
            }
        }

        mutating func uint32(_ field: UInt8, _ value: UInt32) {
            guard value != 0 else { return }
            tag(field, 0)
            varint(UInt64(value))
        }

        /// Big-endian id bytes, as OTLP carries them.
        mutating func id(_ field: UInt8, _ high: UInt64, _ low: UInt64?) {
            header(field, length: low == nil ? 8 : 16)
            UnsafeMutableRawPointer(base + position).storeBytes(of: high.bigEndian, as: UInt64.self)
            position += 8
            if let low {
                UnsafeMutableRawPointer(base + position).storeBytes(of: low.bigEndian, as: UInt64.self)
                position += 8
            }
        }

        mutating func resourceSpans(_ value: ResourceSpans, sizes: inout Sizes) {
            header(1, length: sizes.take())
            header(1, length: OTLPProtobufWriter.resource(value.resource))
            attributes(1, value.resource.attributes)
            uint32(2, value.resource.droppedAttributesCount)
            for scopeSpans in value.scopeSpans {
                self.scopeSpans(scopeSpans, PickedSpans(all: scopeSpans.spans.count), sizes: &sizes)
            }
            string(3, value.schemaURL)
        }

        /// A resource spans of the selection's spans, without the resource (`heldRequest`).
        mutating func selection(_ value: SpanSelection, sizes: inout Sizes) {
            header(1, length: sizes.take())
            value.forEachScope { scopeSpans, runs in self.scopeSpans(scopeSpans, PickedSpans(runs), sizes: &sizes) }
            string(3, value.resourceSpans.schemaURL)
        }

        mutating func scopeSpans(_ value: ScopeSpans, _ picked: PickedSpans, sizes: inout Sizes) {
            header(2, length: sizes.take())
            let scopeSize = OTLPProtobufWriter.scope(value.scope)
            if !held || scopeSize != 0 {
                header(1, length: scopeSize)
                string(1, value.scope.name)
                string(2, value.scope.version)
                attributes(3, value.scope.attributes)
                uint32(4, value.scope.droppedAttributesCount)
            }
            for index in picked {
                header(2, length: sizes.take())
                if let bytes = received.bytes(at: value.spans[index].received) {
                    copy(withoutTraceID(bytes))
                } else {
                    self.span(value.spans[index])
                }
            }
            string(3, value.schemaURL)
        }

        mutating func span(_ value: Span) {
            if !held { id(1, value.traceID.high, value.traceID.low) }
            id(2, value.spanID.value, nil)
            string(3, value.traceState)
            if value.parentSpanID.isValid { id(4, value.parentSpanID.value, nil) }
            string(5, value.name)
            if value.kind.rawValue != 0 {
                tag(6, 0)
                varint(UInt64(UInt32(bitPattern: value.kind.rawValue)))
            }
            if value.startTimeUnixNano != 0 {
                tag(7, 1)
                fixed64(value.startTimeUnixNano)
            }
            if value.endTimeUnixNano != 0 {
                tag(8, 1)
                fixed64(value.endTimeUnixNano)
            }
            attributes(9, value.attributes)
            uint32(10, value.droppedAttributesCount)
            for event in value.events {
                header(11, length: OTLPProtobufWriter.event(event))
                if event.timeUnixNano != 0 {
                    tag(1, 1)
                    fixed64(event.timeUnixNano)
                }
                string(2, event.name)
                attributes(3, event.attributes)
                uint32(4, event.droppedAttributesCount)
            }
            uint32(12, value.droppedEventsCount)
            for link in value.links {
                header(13, length: OTLPProtobufWriter.link(link))
                id(1, link.traceID.high, link.traceID.low)
                id(2, link.spanID.value, nil)
                string(3, link.traceState)
                attributes(4, link.attributes)
                uint32(5, link.droppedAttributesCount)
                if link.flags != 0 {
                    tag(6, 5)
                    fixed32(link.flags)
                }
            }
            uint32(14, value.droppedLinksCount)
            let statusSize = OTLPProtobufWriter.status(value.status)
            if !held || statusSize != 0 {
                header(15, length: statusSize)
                string(2, value.status.message)
                if value.status.code.rawValue != 0 {
                    tag(3, 0)
                    varint(UInt64(UInt32(bitPattern: value.status.code.rawValue)))
                }
            }
            if value.flags != 0 {
                // Field 16, wire type 5 (fixed32): 16 << 3 | 5 = 133, a two-byte varint.
                byte(0x85)
                byte(0x01)
                fixed32(value.flags)
            }
        }

        mutating func copy(_ bytes: ArraySlice<UInt8>) {
            bytes.withUnsafeBufferPointer { source in
                if let from = source.baseAddress { (base + position).update(from: from, count: source.count) }
            }
            position += bytes.count
        }

        mutating func fixed32(_ value: UInt32) {
            UnsafeMutableRawPointer(base + position).storeBytes(of: value.littleEndian, as: UInt32.self)
            position += 4
        }

        mutating func attributes(_ field: UInt8, _ values: [Attribute]) {
            for attribute in values {
                // The value's size once, for both lengths it is part of.
                let valueSize = OTLPProtobufWriter.anyValue(attribute.value)
                header(field, length: OTLPProtobufWriter.string(attribute.key) + lengthDelimited(valueSize))
                string(1, attribute.key)
                header(2, length: valueSize)
                anyValue(attribute.value)
            }
        }

        mutating func anyValue(_ value: AttributeValue) {
            switch value {
            case .string(let text):
                stringAlways(1, text)
            case .bool(let flag):
                tag(2, 0)
                byte(flag ? 1 : 0)
            case .int(let integer):
                tag(3, 0)
                varint(UInt64(bitPattern: integer))
            case .double(let real):
                tag(4, 1)
                fixed64(real.bitPattern)
            case .array(let elements):
                header(5, length: elements.reduce(0) { $0 + lengthDelimited(OTLPProtobufWriter.anyValue($1)) })
                for element in elements {
                    header(1, length: OTLPProtobufWriter.anyValue(element))
                    anyValue(element)
                }
            case .keyValueList(let list):
                header(6, length: OTLPProtobufWriter.attributes(list))
                attributes(1, list)
            case .bytes(let bytes):
                header(7, length: bytes.count)
                for byte in bytes { self.byte(byte) }
            case .empty:
                break
            }
        }
    }
}
