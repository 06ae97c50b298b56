import CProtobufC
import CTraceProto
import TraceModel

typealias CRequest = Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
typealias CResourceSpans = Opentelemetry__Proto__Trace__V1__ResourceSpans
typealias CScopeSpans = Opentelemetry__Proto__Trace__V1__ScopeSpans
typealias CSpan = Opentelemetry__Proto__Trace__V1__Span
typealias CEvent = Opentelemetry__Proto__Trace__V1__Span__Event
typealias CLink = Opentelemetry__Proto__Trace__V1__Span__Link
typealias CStatus = Opentelemetry__Proto__Trace__V1__Status
typealias CResource = Opentelemetry__Proto__Resource__V1__Resource
typealias CScope = Opentelemetry__Proto__Common__V1__InstrumentationScope
typealias CKeyValue = Opentelemetry__Proto__Common__V1__KeyValue
typealias CAnyValue = Opentelemetry__Proto__Common__V1__AnyValue
typealias CArrayValue = Opentelemetry__Proto__Common__V1__ArrayValue
typealias CKeyValueList = Opentelemetry__Proto__Common__V1__KeyValueList

/// OTLP protobuf: requests are read and written straight between bytes and the span model
/// (`OTLPProtobufReader`, `OTLPProtobufWriter`); the smaller messages (responses, `google.rpc.Status`)
/// go through libprotobuf-c, whose request decoder and encoder stay as the reference the straight ones
/// are checked against. C memory comes from one arena that is reset after every call.
/// Not thread-safe: keep one per connection or task.
public final class OTLPProtobufCodec {
    /// Messages nested deeper than this are refused: the request itself needs 6 levels, each level of
    /// AnyValue arrays or maps 2 more.
    public static let maximumNestingDepth = OTLPProtobufReader.maximumNestingDepth

    private let arena: ProtobufArena
    private var reader = OTLPProtobufReader()
    private var protobufCDecoder = ProtobufToModel()

    /// Creates a codec whose arena starts at `initialArenaCapacity` bytes.
    public init(initialArenaCapacity: Int = 1 << 16) {
        arena = ProtobufArena(initialCapacity: initialArenaCapacity)
    }

    /// Decodes a binary `ExportTraceServiceRequest`. Spans with malformed ids decode with zero ids,
    /// so the receiver can count them as rejected rather than fail the request. The batch keeps a copy of
    /// the bytes (`SpanBatch.received`) and every span its place in them (`Span.received`).
    public func decodeRequest(_ bytes: UnsafeRawBufferPointer) throws(OTLPDecodingError) -> SpanBatch {
        try reader.request(ReceivedRequest([UInt8](bytes)))
    }

    /// Decodes from any contiguous byte collection.
    public func decodeRequest(_ bytes: [UInt8]) throws(OTLPDecodingError) -> SpanBatch {
        try reader.request(ReceivedRequest(bytes))
    }

    /// True when the last `decodeRequest` met a singular message field sent twice, which the
    /// specification merges and protobuf-c does not: the differential checks skip such inputs.
    package var lastRequestMergedSingularMessage: Bool { reader.mergedSingularMessage }

    /// Encodes a batch as a binary `ExportTraceServiceRequest`.
    public func encodeRequest(_ batch: SpanBatch) -> [UInt8] {
        OTLPProtobufWriter.request(batch)
    }

    /// The reference decoder: libprotobuf-c's unpack, then the span model built from its structs
    /// (strings end at an embedded U+0000 here). Tests and the fuzz target compare `decodeRequest` with it.
    package func decodeRequestUsingProtobufC(_ bytes: [UInt8]) throws(OTLPDecodingError) -> SpanBatch {
        let result: Result<SpanBatch, OTLPDecodingError> = bytes.withUnsafeBytes { buffer in
            let data = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
            if buffer.count > 0 {
                switch trace_wire_scan_export_trace_request(data, buffer.count, UInt32(Self.maximumNestingDepth)) {
                case TRACE_WIRE_SCAN_OK: break
                case TRACE_WIRE_SCAN_TOO_DEEP:
                    return .failure(OTLPProtobufReader.tooDeep)
                default:
                    return .failure(OTLPDecodingError("malformed protobuf: broken tag, varint or length"))
                }
            }
            // No byte limit: a reference for tests, never fed hostile input in the collector.
            return arena.withReset { allocator in
                guard let request = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
                    allocator, buffer.count, data) else {
                    return .failure(OTLPDecodingError("malformed protobuf: not an ExportTraceServiceRequest"))
                }
                return .success(protobufCDecoder.batch(request.pointee))
            }
        }
        return try result.get()
    }

    /// The reference encoder: the span model as protobuf-c structs, packed by libprotobuf-c (strings end
    /// at an embedded U+0000). Tests compare `OTLPProtobufWriter` with it byte for byte.
    package func encodeRequestUsingProtobufC(_ batch: SpanBatch) -> [UInt8] {
        arena.withReset { _ in
            let request = ModelToProtobuf(arena: arena).request(batch)
            return ProtobufPacking.pack(request)
        }
    }

    /// Encodes an `ExportTraceServiceResponse`, with `partial_success` only when something was rejected.
    public func encodeResponse(rejectedSpans: Int, errorMessage: String) -> [UInt8] {
        arena.withReset { _ in
            let response = arena.allocate(Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse.self)
            opentelemetry__proto__collector__trace__v1__export_trace_service_response__init(response)
            if rejectedSpans > 0 || !errorMessage.isEmpty {
                let partial = arena.allocate(Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess.self)
                opentelemetry__proto__collector__trace__v1__export_trace_partial_success__init(partial)
                partial.pointee.rejected_spans = Int64(rejectedSpans)
                partial.pointee.error_message = arena.cString(errorMessage)
                response.pointee.partial_success = partial
            }
            return ProtobufPacking.pack(response)
        }
    }

    /// Decodes an `ExportTraceServiceResponse`'s partial success.
    public func decodeResponse(_ bytes: [UInt8]) throws(OTLPDecodingError) -> (rejectedSpans: Int64, errorMessage: String) {
        let result: Result<(Int64, String), OTLPDecodingError> = arena.withReset(byteLimit: max(bytes.count * 32, 1 << 16)) { allocator in
            bytes.withUnsafeBufferPointer { buffer in
                guard let response = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
                    allocator, buffer.count, buffer.baseAddress) else {
                    return .failure(OTLPDecodingError("malformed protobuf: not an ExportTraceServiceResponse"))
                }
                guard let partial = response.pointee.partial_success else { return .success((0, "")) }
                return .success((partial.pointee.rejected_spans, String(protobufC: partial.pointee.error_message)))
            }
        }
        return try result.get()
    }

    /// Encodes a `google.rpc.Status`: the error body of OTLP/HTTP and the `grpc-status-details-bin` of gRPC.
    public func encodeStatus(code: Int32, message: String) -> [UInt8] {
        arena.withReset { _ in
            let status = arena.allocate(Google__Rpc__Status.self)
            google__rpc__status__init(status)
            status.pointee.code = code
            status.pointee.message = arena.cString(message)
            return ProtobufPacking.pack(status)
        }
    }

    /// Decodes a `google.rpc.Status` (code and message; details are skipped).
    public func decodeStatus(_ bytes: [UInt8]) throws(OTLPDecodingError) -> (code: Int32, message: String) {
        let result: Result<(Int32, String), OTLPDecodingError> = arena.withReset(byteLimit: max(bytes.count * 32, 1 << 16)) { allocator in
            bytes.withUnsafeBufferPointer { buffer in
                guard let status = google__rpc__status__unpack(allocator, buffer.count, buffer.baseAddress) else {
                    return .failure(OTLPDecodingError("malformed protobuf: not a google.rpc.Status"))
                }
                return .success((status.pointee.code, String(protobufC: status.pointee.message)))
            }
        }
        return try result.get()
    }
}

/// Reads protobuf-c structs into the span model, reusing recurring strings.
struct ProtobufToModel {
    private var strings = StringCache()

    mutating func batch(_ request: CRequest) -> SpanBatch {
        var batch = SpanBatch()
        batch.resourceSpans.reserveCapacity(request.n_resource_spans)
        for index in 0..<request.n_resource_spans {
            guard let resourceSpans = request.resource_spans[index] else { continue }
            batch.resourceSpans.append(self.resourceSpans(resourceSpans.pointee))
        }
        return batch
    }

    mutating func resourceSpans(_ value: CResourceSpans) -> ResourceSpans {
        var result = ResourceSpans(schemaURL: strings.string(value.schema_url))
        if let resource = value.resource {
            result.resource = Resource(
                attributes: attributes(resource.pointee.attributes, resource.pointee.n_attributes),
                droppedAttributesCount: resource.pointee.dropped_attributes_count
            )
        }
        result.scopeSpans.reserveCapacity(value.n_scope_spans)
        for index in 0..<value.n_scope_spans {
            guard let scopeSpans = value.scope_spans[index] else { continue }
            result.scopeSpans.append(self.scopeSpans(scopeSpans.pointee))
        }
        return result
    }

    mutating func scopeSpans(_ value: CScopeSpans) -> ScopeSpans {
        var result = ScopeSpans(schemaURL: strings.string(value.schema_url))
        if let scope = value.scope {
            result.scope = InstrumentationScope(
                name: strings.string(scope.pointee.name),
                version: strings.string(scope.pointee.version),
                attributes: attributes(scope.pointee.attributes, scope.pointee.n_attributes),
                droppedAttributesCount: scope.pointee.dropped_attributes_count
            )
        }
        result.spans.reserveCapacity(value.n_spans)
        for index in 0..<value.n_spans {
            guard let span = value.spans[index] else { continue }
            result.spans.append(self.span(span.pointee))
        }
        return result
    }

    static func traceID(_ data: ProtobufCBinaryData) -> TraceID {
        guard data.len == 16, let bytes = data.data else { return .zero }
        return TraceID(high: UInt64(bigEndianBytes: bytes), low: UInt64(bigEndianBytes: bytes + 8))
    }

    static func spanID(_ data: ProtobufCBinaryData) -> SpanID {
        guard data.len == 8, let bytes = data.data else { return .zero }
        return SpanID(UInt64(bigEndianBytes: bytes))
    }

    mutating func span(_ value: CSpan) -> Span {
        var span = Span(
            traceID: Self.traceID(value.trace_id),
            spanID: Self.spanID(value.span_id),
            parentSpanID: Self.spanID(value.parent_span_id),
            traceState: strings.string(value.trace_state),
            flags: value.flags,
            name: strings.string(value.name),
            kind: SpanKind(otlpValue: Int32(truncatingIfNeeded: value.kind.rawValue)),
            startTimeUnixNano: value.start_time_unix_nano,
            endTimeUnixNano: value.end_time_unix_nano,
            attributes: attributes(value.attributes, value.n_attributes),
            droppedAttributesCount: value.dropped_attributes_count,
            droppedEventsCount: value.dropped_events_count,
            droppedLinksCount: value.dropped_links_count
        )
        if value.n_events > 0 {
            span.events.reserveCapacity(value.n_events)
            for index in 0..<value.n_events {
                guard let event = value.events[index]?.pointee else { continue }
                span.events.append(SpanEvent(
                    timeUnixNano: event.time_unix_nano,
                    name: strings.string(event.name),
                    attributes: attributes(event.attributes, event.n_attributes),
                    droppedAttributesCount: event.dropped_attributes_count
                ))
            }
        }
        if value.n_links > 0 {
            span.links.reserveCapacity(value.n_links)
            for index in 0..<value.n_links {
                guard let link = value.links[index]?.pointee else { continue }
                span.links.append(SpanLink(
                    traceID: Self.traceID(link.trace_id),
                    spanID: Self.spanID(link.span_id),
                    traceState: strings.string(link.trace_state),
                    attributes: attributes(link.attributes, link.n_attributes),
                    droppedAttributesCount: link.dropped_attributes_count,
                    flags: link.flags
                ))
            }
        }
        if let status = value.status?.pointee {
            span.status = SpanStatus(
                code: SpanStatus.Code(rawValue: Int32(truncatingIfNeeded: status.code.rawValue)) ?? .unset,
                message: strings.string(status.message)
            )
        }
        return span
    }

    mutating func attributes(_ values: UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?, _ count: Int) -> [Attribute] {
        guard count > 0, let values else { return [] }
        var result: [Attribute] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            guard let keyValue = values[index]?.pointee else { continue }
            result.append(Attribute(strings.string(keyValue.key), keyValue.value.map { anyValue($0.pointee) } ?? .empty))
        }
        return result
    }

    mutating func anyValue(_ value: CAnyValue) -> AttributeValue {
        switch value.value_case {
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
            return .string(strings.string(value.string_value))
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
            return .bool(value.bool_value != 0)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
            return .int(value.int_value)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
            return .double(value.double_value)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
            return .bytes(value.bytes_value.array)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
            guard let array = value.array_value?.pointee, array.n_values > 0 else { return .array([]) }
            var elements: [AttributeValue] = []
            elements.reserveCapacity(array.n_values)
            for index in 0..<array.n_values {
                elements.append(array.values[index].map { anyValue($0.pointee) } ?? .empty)
            }
            return .array(elements)
        case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
            guard let list = value.kvlist_value?.pointee else { return .keyValueList([]) }
            return .keyValueList(attributes(list.values, list.n_values))
        default:
            // Not set, or the profiles-only string-table index, which means nothing in a trace.
            return .empty
        }
    }
}

extension UInt64 {
    init(bigEndianBytes bytes: UnsafePointer<UInt8>) {
        self = UInt64(bigEndian: UnsafeRawPointer(bytes).loadUnaligned(as: UInt64.self))
    }
}

/// Builds protobuf-c structs from the span model inside an arena.
struct ModelToProtobuf {
    let arena: ProtobufArena

    func request(_ batch: SpanBatch) -> UnsafeMutablePointer<CRequest> {
        let request = arena.allocate(CRequest.self)
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(request)
        request.pointee.n_resource_spans = batch.resourceSpans.count
        request.pointee.resource_spans = arena.pointerArray(batch.resourceSpans.count) { resourceSpans(batch.resourceSpans[$0]) }
        return request
    }

    func resourceSpans(_ value: ResourceSpans) -> UnsafeMutablePointer<CResourceSpans> {
        let result = arena.allocate(CResourceSpans.self)
        opentelemetry__proto__trace__v1__resource_spans__init(result)
        let resource = arena.allocate(CResource.self)
        opentelemetry__proto__resource__v1__resource__init(resource)
        (resource.pointee.n_attributes, resource.pointee.attributes) = keyValues(value.resource.attributes)
        resource.pointee.dropped_attributes_count = value.resource.droppedAttributesCount
        result.pointee.resource = resource
        result.pointee.n_scope_spans = value.scopeSpans.count
        result.pointee.scope_spans = arena.pointerArray(value.scopeSpans.count) { scopeSpans(value.scopeSpans[$0]) }
        result.pointee.schema_url = arena.cString(value.schemaURL)
        return result
    }

    func scopeSpans(_ value: ScopeSpans) -> UnsafeMutablePointer<CScopeSpans> {
        let result = arena.allocate(CScopeSpans.self)
        opentelemetry__proto__trace__v1__scope_spans__init(result)
        let scope = arena.allocate(CScope.self)
        opentelemetry__proto__common__v1__instrumentation_scope__init(scope)
        scope.pointee.name = arena.cString(value.scope.name)
        scope.pointee.version = arena.cString(value.scope.version)
        (scope.pointee.n_attributes, scope.pointee.attributes) = keyValues(value.scope.attributes)
        scope.pointee.dropped_attributes_count = value.scope.droppedAttributesCount
        result.pointee.scope = scope
        result.pointee.n_spans = value.spans.count
        result.pointee.spans = arena.pointerArray(value.spans.count) { span(value.spans[$0]) }
        result.pointee.schema_url = arena.cString(value.schemaURL)
        return result
    }

    func span(_ value: Span) -> UnsafeMutablePointer<CSpan> {
        let result = arena.allocate(CSpan.self)
        opentelemetry__proto__trace__v1__span__init(result)
        result.pointee.trace_id = arena.binaryData(value.traceID.bytes)
        result.pointee.span_id = arena.binaryData(value.spanID.bytes)
        if value.parentSpanID.isValid { result.pointee.parent_span_id = arena.binaryData(value.parentSpanID.bytes) }
        result.pointee.trace_state = arena.cString(value.traceState)
        result.pointee.flags = value.flags
        result.pointee.name = arena.cString(value.name)
        result.pointee.kind = Opentelemetry__Proto__Trace__V1__Span__SpanKind(rawValue: numericCast(value.kind.rawValue))
        result.pointee.start_time_unix_nano = value.startTimeUnixNano
        result.pointee.end_time_unix_nano = value.endTimeUnixNano
        (result.pointee.n_attributes, result.pointee.attributes) = keyValues(value.attributes)
        result.pointee.dropped_attributes_count = value.droppedAttributesCount
        result.pointee.n_events = value.events.count
        result.pointee.events = arena.pointerArray(value.events.count) { index in
            let event = value.events[index]
            let cEvent = arena.allocate(CEvent.self)
            opentelemetry__proto__trace__v1__span__event__init(cEvent)
            cEvent.pointee.time_unix_nano = event.timeUnixNano
            cEvent.pointee.name = arena.cString(event.name)
            (cEvent.pointee.n_attributes, cEvent.pointee.attributes) = keyValues(event.attributes)
            cEvent.pointee.dropped_attributes_count = event.droppedAttributesCount
            return cEvent
        }
        result.pointee.dropped_events_count = value.droppedEventsCount
        result.pointee.n_links = value.links.count
        result.pointee.links = arena.pointerArray(value.links.count) { index in
            let link = value.links[index]
            let cLink = arena.allocate(CLink.self)
            opentelemetry__proto__trace__v1__span__link__init(cLink)
            cLink.pointee.trace_id = arena.binaryData(link.traceID.bytes)
            cLink.pointee.span_id = arena.binaryData(link.spanID.bytes)
            cLink.pointee.trace_state = arena.cString(link.traceState)
            (cLink.pointee.n_attributes, cLink.pointee.attributes) = keyValues(link.attributes)
            cLink.pointee.dropped_attributes_count = link.droppedAttributesCount
            cLink.pointee.flags = link.flags
            return cLink
        }
        result.pointee.dropped_links_count = value.droppedLinksCount
        let status = arena.allocate(CStatus.self)
        opentelemetry__proto__trace__v1__status__init(status)
        status.pointee.code = Opentelemetry__Proto__Trace__V1__Status__StatusCode(rawValue: numericCast(value.status.code.rawValue))
        status.pointee.message = arena.cString(value.status.message)
        result.pointee.status = status
        return result
    }

    func keyValues(_ attributes: [Attribute]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<CKeyValue>?>?) {
        (attributes.count, arena.pointerArray(attributes.count) { index in
            let keyValue = arena.allocate(CKeyValue.self)
            opentelemetry__proto__common__v1__key_value__init(keyValue)
            keyValue.pointee.key = arena.cString(attributes[index].key)
            keyValue.pointee.value = anyValue(attributes[index].value)
            return keyValue
        })
    }

    func anyValue(_ value: AttributeValue) -> UnsafeMutablePointer<CAnyValue> {
        let result = arena.allocate(CAnyValue.self)
        opentelemetry__proto__common__v1__any_value__init(result)
        switch value {
        case .string(let text):
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE
            result.pointee.string_value = arena.cString(text)
        case .bool(let flag):
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE
            result.pointee.bool_value = flag ? 1 : 0
        case .int(let integer):
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE
            result.pointee.int_value = integer
        case .double(let real):
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE
            result.pointee.double_value = real
        case .bytes(let bytes):
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE
            result.pointee.bytes_value = arena.binaryData(bytes)
        case .array(let elements):
            let array = arena.allocate(CArrayValue.self)
            opentelemetry__proto__common__v1__array_value__init(array)
            array.pointee.n_values = elements.count
            array.pointee.values = arena.pointerArray(elements.count) { anyValue(elements[$0]) }
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE
            result.pointee.array_value = array
        case .keyValueList(let attributes):
            let list = arena.allocate(CKeyValueList.self)
            opentelemetry__proto__common__v1__key_value_list__init(list)
            (list.pointee.n_values, list.pointee.values) = keyValues(attributes)
            result.pointee.value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE
            result.pointee.kvlist_value = list
        case .empty:
            break
        }
        return result
    }
}

extension SpanBatch {
    /// Whether any string in the batch holds U+0000, which protobuf-c's strings cannot.
    package var containsNUL: Bool {
        func has(_ text: String) -> Bool { text.utf8.contains(0) }
        func has(_ attributes: [Attribute]) -> Bool { attributes.contains { has($0.key) || has($0.value) } }
        func has(_ value: AttributeValue) -> Bool {
            switch value {
            case .string(let text): has(text)
            case .array(let elements): elements.contains { has($0) }
            case .keyValueList(let attributes): has(attributes)
            case .bool, .int, .double, .bytes, .empty: false
            }
        }
        return resourceSpans.contains { resourceSpans in
            has(resourceSpans.schemaURL) || has(resourceSpans.resource.attributes) || resourceSpans.scopeSpans.contains { scopeSpans in
                has(scopeSpans.schemaURL) || has(scopeSpans.scope.name) || has(scopeSpans.scope.version)
                    || has(scopeSpans.scope.attributes) || scopeSpans.spans.contains { span in
                        has(span.name) || has(span.traceState) || has(span.status.message) || has(span.attributes)
                            || span.events.contains { has($0.name) || has($0.attributes) }
                            || span.links.contains { has($0.traceState) || has($0.attributes) }
                    }
            }
        }
    }
}
