import JSONText
import TraceModel

/// Why an OTLP request could not be decoded. The message is safe to return to the sender.
public struct OTLPDecodingError: Error, CustomStringConvertible, Sendable {
    /// What was wrong, naming the field where one is to blame.
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// OTLP/JSON, as the OTLP specification defines it: proto3 JSON with hex trace and span ids,
/// enums as integers, lowerCamelCase keys (the original snake_case names are accepted too),
/// 64-bit integers as decimal strings (numbers accepted), unknown fields ignored.
public enum OTLPJSON {
    /// Decodes an `ExportTraceServiceRequest` (or the identical `TracesData`).
    public static func decodeRequest<Bytes: Sequence>(_ bytes: Bytes) throws(OTLPDecodingError) -> SpanBatch
    where Bytes.Element == UInt8 {
        let document: ParsedJSON
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw OTLPDecodingError(error.description)
        }
        return try OTLPJSONDecoder().batch(document)
    }

    /// Encodes a batch as one compact `ExportTraceServiceRequest` document, members in field order,
    /// default values omitted (as the Collector's file exporter writes them).
    public static func encodeRequest(_ batch: SpanBatch) -> [UInt8] {
        var writer = JSONWriter(capacity: 512 * max(batch.spanCount, 1))
        OTLPJSONEncoder.request(batch, into: &writer)
        return writer.bytes
    }

    /// Encodes an `ExportTraceServiceResponse`: `{}` when nothing was rejected.
    public static func encodeResponse(rejectedSpans: Int, errorMessage: String) -> [UInt8] {
        var writer = JSONWriter(capacity: 64)
        writer.beginObject()
        if rejectedSpans > 0 || !errorMessage.isEmpty {
            writer.key("partialSuccess")
            writer.beginObject()
            if rejectedSpans > 0 {
                writer.key("rejectedSpans")
                writer.quotedInteger(rejectedSpans)
            }
            if !errorMessage.isEmpty {
                writer.key("errorMessage")
                writer.string(errorMessage)
            }
            writer.endObject()
        }
        writer.endObject()
        return writer.bytes
    }

    /// Encodes a `google.rpc.Status` as JSON, the body OTLP/HTTP returns with errors for JSON requests.
    public static func encodeStatus(code: Int32, message: String) -> [UInt8] {
        var writer = JSONWriter(capacity: 64 + message.utf8.count)
        writer.beginObject()
        writer.key("code")
        writer.integer(code)
        writer.key("message")
        writer.string(message)
        writer.endObject()
        return writer.bytes
    }

    /// Reads an `ExportTraceServiceResponse`'s partial success (used by clients such as `replay`).
    public static func decodeResponse<Bytes: Sequence>(_ bytes: Bytes) throws(OTLPDecodingError) -> (rejectedSpans: Int64, errorMessage: String)
    where Bytes.Element == UInt8 {
        let document: ParsedJSON
        do {
            document = try JSONParser.parse(bytes)
        } catch {
            throw OTLPDecodingError(error.description)
        }
        let decoder = OTLPJSONDecoder()
        let root = try decoder.object(document, at: "response")
        guard let partial = root.member("partialSuccess", "partial_success") else { return (0, "") }
        let fields = try decoder.object(partial, at: "partialSuccess")
        return (
            try decoder.int64(fields.member("rejectedSpans", "rejected_spans"), at: "partialSuccess.rejectedSpans"),
            try decoder.string(fields.member("errorMessage", "error_message"), at: "partialSuccess.errorMessage")
        )
    }
}

/// Member lookup accepting the lowerCamelCase name and the original proto field name.
struct JSONObject {
    let members: [(key: String, value: ParsedJSON)]

    func member(_ camelCase: String, _ snakeCase: String? = nil) -> ParsedJSON? {
        for member in members where member.key == camelCase || member.key == snakeCase {
            if case .null = member.value { return nil }
            return member.value
        }
        return nil
    }
}

struct OTLPJSONDecoder {
    func object(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> JSONObject {
        guard case .object(let members) = value else { throw OTLPDecodingError("\(path): expected an object") }
        return JSONObject(members: members)
    }

    func array(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> [ParsedJSON] {
        guard let value else { return [] }
        guard case .array(let elements) = value else { throw OTLPDecodingError("\(path): expected an array") }
        return elements
    }

    func string(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> String {
        guard let value else { return "" }
        guard case .string(let text) = value else { throw OTLPDecodingError("\(path): expected a string") }
        return text
    }

    func bool(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> Bool {
        guard let value else { return false }
        guard case .bool(let flag) = value else { throw OTLPDecodingError("\(path): expected true or false") }
        return flag
    }

    /// A 64-bit integer written as a decimal string or a JSON number.
    func int64(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> Int64 {
        switch value {
        case nil: return 0
        case .string(let text)?, .number(let text)?:
            if let integer = Int64(text) { return integer }
            if let real = Double(text), real == real.rounded(), let integer = Int64(exactly: real) { return integer }
            throw OTLPDecodingError("\(path): \"\(text.prefix(32))\" is not a 64-bit integer")
        default: throw OTLPDecodingError("\(path): expected an integer")
        }
    }

    func uint64(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> UInt64 {
        switch value {
        case nil: return 0
        case .string(let text)?, .number(let text)?:
            if let integer = UInt64(text) { return integer }
            if let real = Double(text), real >= 0, real == real.rounded(), let integer = UInt64(exactly: real) { return integer }
            throw OTLPDecodingError("\(path): \"\(text.prefix(32))\" is not an unsigned 64-bit integer")
        default: throw OTLPDecodingError("\(path): expected an integer")
        }
    }

    func uint32(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> UInt32 {
        let wide = try uint64(value, at: path)
        guard let narrow = UInt32(exactly: wide) else { throw OTLPDecodingError("\(path): \(wide) is out of range") }
        return narrow
    }

    /// An enum as its integer (the OTLP form) or, leniently, its proto name.
    func enumValue(_ value: ParsedJSON?, at path: String, names: [String]) throws(OTLPDecodingError) -> Int32 {
        switch value {
        case nil: return 0
        case .number(let text)?:
            guard let integer = Int32(text) else { throw OTLPDecodingError("\(path): \(text.prefix(32)) is not an enum number") }
            return integer
        case .string(let text)?:
            if let index = names.firstIndex(of: text) { return Int32(index) }
            if let integer = Int32(text) { return integer }
            throw OTLPDecodingError("\(path): unknown enum value \"\(text.prefix(64))\"")
        default: throw OTLPDecodingError("\(path): expected an enum number")
        }
    }

    func double(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> Double {
        switch value {
        case nil: return 0
        case .number(let text)?:
            guard let real = Double(text) else { throw OTLPDecodingError("\(path): invalid number") }
            return real
        case .string(let text)?:
            switch text {
            case "NaN": return .nan
            case "Infinity": return .infinity
            case "-Infinity": return -.infinity
            default:
                guard let real = Double(text) else { throw OTLPDecodingError("\(path): \"\(text.prefix(32))\" is not a number") }
                return real
            }
        default: throw OTLPDecodingError("\(path): expected a number")
        }
    }

    /// Hex id bytes. Length is checked later, so invalid ids become rejected spans, not a failed request.
    func hexBytes(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> [UInt8] {
        let text = try string(value, at: path)
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { throw OTLPDecodingError("\(path): odd number of hex digits") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = HexDigit.value(of: digits[index]), let low = HexDigit.value(of: digits[index + 1]) else {
                throw OTLPDecodingError("\(path): \"\(text.prefix(40))\" is not hex")
            }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    func batch(_ document: ParsedJSON) throws(OTLPDecodingError) -> SpanBatch {
        let root = try object(document, at: "request")
        var batch = SpanBatch()
        let resourceSpansList = try array(root.member("resourceSpans", "resource_spans"), at: "resourceSpans")
        batch.resourceSpans.reserveCapacity(resourceSpansList.count)
        for (index, element) in resourceSpansList.enumerated() {
            batch.resourceSpans.append(try resourceSpans(element, at: "resourceSpans[\(index)]"))
        }
        return batch
    }

    func resourceSpans(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> ResourceSpans {
        let fields = try object(value, at: path)
        var result = ResourceSpans()
        if let resourceValue = fields.member("resource") {
            let resource = try object(resourceValue, at: "\(path).resource")
            result.resource.attributes = try attributes(resource.member("attributes"), at: "\(path).resource.attributes")
            result.resource.droppedAttributesCount = try uint32(
                resource.member("droppedAttributesCount", "dropped_attributes_count"), at: "\(path).resource.droppedAttributesCount")
        }
        result.schemaURL = try string(fields.member("schemaUrl", "schema_url"), at: "\(path).schemaUrl")
        for (index, element) in try array(fields.member("scopeSpans", "scope_spans"), at: "\(path).scopeSpans").enumerated() {
            result.scopeSpans.append(try scopeSpans(element, at: "\(path).scopeSpans[\(index)]"))
        }
        return result
    }

    func scopeSpans(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> ScopeSpans {
        let fields = try object(value, at: path)
        var result = ScopeSpans()
        if let scopeValue = fields.member("scope") {
            let scope = try object(scopeValue, at: "\(path).scope")
            result.scope.name = try string(scope.member("name"), at: "\(path).scope.name")
            result.scope.version = try string(scope.member("version"), at: "\(path).scope.version")
            result.scope.attributes = try attributes(scope.member("attributes"), at: "\(path).scope.attributes")
            result.scope.droppedAttributesCount = try uint32(
                scope.member("droppedAttributesCount", "dropped_attributes_count"), at: "\(path).scope.droppedAttributesCount")
        }
        result.schemaURL = try string(fields.member("schemaUrl", "schema_url"), at: "\(path).schemaUrl")
        let spanValues = try array(fields.member("spans"), at: "\(path).spans")
        result.spans.reserveCapacity(spanValues.count)
        for (index, element) in spanValues.enumerated() {
            result.spans.append(try span(element, at: "\(path).spans[\(index)]"))
        }
        return result
    }

    func span(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> Span {
        let fields = try object(value, at: path)
        let traceIDBytes = try hexBytes(fields.member("traceId", "trace_id"), at: "\(path).traceId")
        let spanIDBytes = try hexBytes(fields.member("spanId", "span_id"), at: "\(path).spanId")
        let parentBytes = try hexBytes(fields.member("parentSpanId", "parent_span_id"), at: "\(path).parentSpanId")
        var span = Span(
            traceID: TraceID(bytes: traceIDBytes) ?? .zero,
            spanID: SpanID(bytes: spanIDBytes) ?? .zero,
            parentSpanID: SpanID(bytes: parentBytes) ?? .zero
        )
        guard parentBytes.isEmpty || parentBytes.count == 8 else {
            throw OTLPDecodingError("\(path).parentSpanId: \(parentBytes.count) bytes, expected 8")
        }
        span.traceState = try string(fields.member("traceState", "trace_state"), at: "\(path).traceState")
        span.flags = try uint32(fields.member("flags"), at: "\(path).flags")
        span.name = try string(fields.member("name"), at: "\(path).name")
        span.kind = SpanKind(otlpValue: try enumValue(fields.member("kind"), at: "\(path).kind", names: Self.spanKindNames))
        span.startTimeUnixNano = try uint64(fields.member("startTimeUnixNano", "start_time_unix_nano"), at: "\(path).startTimeUnixNano")
        span.endTimeUnixNano = try uint64(fields.member("endTimeUnixNano", "end_time_unix_nano"), at: "\(path).endTimeUnixNano")
        span.attributes = try attributes(fields.member("attributes"), at: "\(path).attributes")
        span.droppedAttributesCount = try uint32(
            fields.member("droppedAttributesCount", "dropped_attributes_count"), at: "\(path).droppedAttributesCount")
        for (index, element) in try array(fields.member("events"), at: "\(path).events").enumerated() {
            span.events.append(try event(element, at: "\(path).events[\(index)]"))
        }
        span.droppedEventsCount = try uint32(fields.member("droppedEventsCount", "dropped_events_count"), at: "\(path).droppedEventsCount")
        for (index, element) in try array(fields.member("links"), at: "\(path).links").enumerated() {
            span.links.append(try link(element, at: "\(path).links[\(index)]"))
        }
        span.droppedLinksCount = try uint32(fields.member("droppedLinksCount", "dropped_links_count"), at: "\(path).droppedLinksCount")
        if let statusValue = fields.member("status") {
            let status = try object(statusValue, at: "\(path).status")
            let code = try enumValue(status.member("code"), at: "\(path).status.code", names: Self.statusCodeNames)
            span.status = SpanStatus(code: SpanStatus.Code(rawValue: code) ?? .unset,
                                     message: try string(status.member("message"), at: "\(path).status.message"))
        }
        return span
    }

    static let spanKindNames = ["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT",
                                "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"]
    static let statusCodeNames = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]

    func event(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> SpanEvent {
        let fields = try object(value, at: path)
        return SpanEvent(
            timeUnixNano: try uint64(fields.member("timeUnixNano", "time_unix_nano"), at: "\(path).timeUnixNano"),
            name: try string(fields.member("name"), at: "\(path).name"),
            attributes: try attributes(fields.member("attributes"), at: "\(path).attributes"),
            droppedAttributesCount: try uint32(fields.member("droppedAttributesCount", "dropped_attributes_count"),
                                               at: "\(path).droppedAttributesCount")
        )
    }

    func link(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> SpanLink {
        let fields = try object(value, at: path)
        let traceIDBytes = try hexBytes(fields.member("traceId", "trace_id"), at: "\(path).traceId")
        let spanIDBytes = try hexBytes(fields.member("spanId", "span_id"), at: "\(path).spanId")
        guard let traceID = TraceID(bytes: traceIDBytes), let spanID = SpanID(bytes: spanIDBytes) else {
            throw OTLPDecodingError("\(path): a link needs a 16-byte traceId and an 8-byte spanId")
        }
        return SpanLink(
            traceID: traceID, spanID: spanID,
            traceState: try string(fields.member("traceState", "trace_state"), at: "\(path).traceState"),
            attributes: try attributes(fields.member("attributes"), at: "\(path).attributes"),
            droppedAttributesCount: try uint32(fields.member("droppedAttributesCount", "dropped_attributes_count"),
                                               at: "\(path).droppedAttributesCount"),
            flags: try uint32(fields.member("flags"), at: "\(path).flags")
        )
    }

    func attributes(_ value: ParsedJSON?, at path: String) throws(OTLPDecodingError) -> [Attribute] {
        let elements = try array(value, at: path)
        var result: [Attribute] = []
        result.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            let fields = try object(element, at: "\(path)[\(index)]")
            let key = try string(fields.member("key"), at: "\(path)[\(index)].key")
            let attributeValue = try fields.member("value").map { (value) throws(OTLPDecodingError) in
                try anyValue(value, at: "\(path)[\(index)].value")
            } ?? .empty
            result.append(Attribute(key, attributeValue))
        }
        return result
    }

    func anyValue(_ value: ParsedJSON, at path: String) throws(OTLPDecodingError) -> AttributeValue {
        let fields = try object(value, at: path)
        if let text = fields.member("stringValue", "string_value") {
            return .string(try string(text, at: "\(path).stringValue"))
        }
        if let flag = fields.member("boolValue", "bool_value") {
            return .bool(try bool(flag, at: "\(path).boolValue"))
        }
        if let integer = fields.member("intValue", "int_value") {
            return .int(try int64(integer, at: "\(path).intValue"))
        }
        if let real = fields.member("doubleValue", "double_value") {
            return .double(try double(real, at: "\(path).doubleValue"))
        }
        if let encoded = fields.member("bytesValue", "bytes_value") {
            guard let bytes = Base64.decode(try string(encoded, at: "\(path).bytesValue")) else {
                throw OTLPDecodingError("\(path).bytesValue: not base64")
            }
            return .bytes(bytes)
        }
        if let arrayValue = fields.member("arrayValue", "array_value") {
            let container = try object(arrayValue, at: "\(path).arrayValue")
            var elements: [AttributeValue] = []
            for (index, element) in try array(container.member("values"), at: "\(path).arrayValue.values").enumerated() {
                elements.append(try anyValue(element, at: "\(path).arrayValue.values[\(index)]"))
            }
            return .array(elements)
        }
        if let listValue = fields.member("kvlistValue", "kvlist_value") {
            let container = try object(listValue, at: "\(path).kvlistValue")
            return .keyValueList(try attributes(container.member("values"), at: "\(path).kvlistValue.values"))
        }
        return .empty
    }
}

enum OTLPJSONEncoder {
    static func request(_ batch: SpanBatch, into writer: inout JSONWriter) {
        writer.beginObject()
        if !batch.resourceSpans.isEmpty {
            writer.key("resourceSpans")
            writer.beginArray()
            for resourceSpans in batch.resourceSpans { self.resourceSpans(resourceSpans, into: &writer) }
            writer.endArray()
        }
        writer.endObject()
    }

    static func resourceSpans(_ value: ResourceSpans, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("resource")
        writer.beginObject()
        attributes(value.resource.attributes, into: &writer)
        uint32("droppedAttributesCount", value.resource.droppedAttributesCount, into: &writer)
        writer.endObject()
        if !value.scopeSpans.isEmpty {
            writer.key("scopeSpans")
            writer.beginArray()
            for scopeSpans in value.scopeSpans { self.scopeSpans(scopeSpans, into: &writer) }
            writer.endArray()
        }
        string("schemaUrl", value.schemaURL, into: &writer)
        writer.endObject()
    }

    static func scopeSpans(_ value: ScopeSpans, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("scope")
        writer.beginObject()
        string("name", value.scope.name, into: &writer)
        string("version", value.scope.version, into: &writer)
        attributes(value.scope.attributes, into: &writer)
        uint32("droppedAttributesCount", value.scope.droppedAttributesCount, into: &writer)
        writer.endObject()
        if !value.spans.isEmpty {
            writer.key("spans")
            writer.beginArray()
            for span in value.spans { self.span(span, into: &writer) }
            writer.endArray()
        }
        string("schemaUrl", value.schemaURL, into: &writer)
        writer.endObject()
    }

    static func span(_ span: Span, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("traceId")
        writer.hex(span.traceID.high, span.traceID.low)
        writer.key("spanId")
        writer.hex(span.spanID.value)
        string("traceState", span.traceState, into: &writer)
        if span.parentSpanID.isValid {
            writer.key("parentSpanId")
            writer.hex(span.parentSpanID.value)
        }
        uint32("flags", span.flags, into: &writer)
        string("name", span.name, into: &writer)
        if span.kind != .unspecified {
            writer.key("kind")
            writer.integer(span.kind.rawValue)
        }
        uint64("startTimeUnixNano", span.startTimeUnixNano, into: &writer)
        uint64("endTimeUnixNano", span.endTimeUnixNano, into: &writer)
        attributes(span.attributes, into: &writer)
        uint32("droppedAttributesCount", span.droppedAttributesCount, into: &writer)
        if !span.events.isEmpty {
            writer.key("events")
            writer.beginArray()
            for event in span.events {
                writer.beginObject()
                uint64("timeUnixNano", event.timeUnixNano, into: &writer)
                string("name", event.name, into: &writer)
                attributes(event.attributes, into: &writer)
                uint32("droppedAttributesCount", event.droppedAttributesCount, into: &writer)
                writer.endObject()
            }
            writer.endArray()
        }
        uint32("droppedEventsCount", span.droppedEventsCount, into: &writer)
        if !span.links.isEmpty {
            writer.key("links")
            writer.beginArray()
            for link in span.links {
                writer.beginObject()
                writer.key("traceId")
                writer.hex(link.traceID.high, link.traceID.low)
                writer.key("spanId")
                writer.hex(link.spanID.value)
                string("traceState", link.traceState, into: &writer)
                attributes(link.attributes, into: &writer)
                uint32("droppedAttributesCount", link.droppedAttributesCount, into: &writer)
                uint32("flags", link.flags, into: &writer)
                writer.endObject()
            }
            writer.endArray()
        }
        uint32("droppedLinksCount", span.droppedLinksCount, into: &writer)
        writer.key("status")
        writer.beginObject()
        string("message", span.status.message, into: &writer)
        if span.status.code != .unset {
            writer.key("code")
            writer.integer(span.status.code.rawValue)
        }
        writer.endObject()
        writer.endObject()
    }

    static func attributes(_ attributes: [Attribute], into writer: inout JSONWriter) {
        guard !attributes.isEmpty else { return }
        writer.key("attributes")
        keyValues(attributes, into: &writer)
    }

    static func keyValues(_ attributes: [Attribute], into writer: inout JSONWriter) {
        writer.beginArray()
        for attribute in attributes {
            writer.beginObject()
            writer.key("key")
            writer.string(attribute.key)
            writer.key("value")
            anyValue(attribute.value, into: &writer)
            writer.endObject()
        }
        writer.endArray()
    }

    static func anyValue(_ value: AttributeValue, into writer: inout JSONWriter) {
        writer.beginObject()
        switch value {
        case .string(let text):
            writer.key("stringValue")
            writer.string(text)
        case .bool(let flag):
            writer.key("boolValue")
            writer.bool(flag)
        case .int(let integer):
            writer.key("intValue")
            writer.quotedInteger(integer)
        case .double(let real):
            writer.key("doubleValue")
            writer.double(real)
        case .bytes(let bytes):
            writer.key("bytesValue")
            writer.string(Base64.encode(bytes))
        case .array(let elements):
            writer.key("arrayValue")
            writer.beginObject()
            if !elements.isEmpty {
                writer.key("values")
                writer.beginArray()
                for element in elements { anyValue(element, into: &writer) }
                writer.endArray()
            }
            writer.endObject()
        case .keyValueList(let attributes):
            writer.key("kvlistValue")
            writer.beginObject()
            if !attributes.isEmpty {
                writer.key("values")
                keyValues(attributes, into: &writer)
            }
            writer.endObject()
        case .empty:
            break
        }
        writer.endObject()
    }

    static func string(_ key: StaticString, _ value: String, into writer: inout JSONWriter) {
        guard !value.isEmpty else { return }
        writer.key(key)
        writer.string(value)
    }

    static func uint32(_ key: StaticString, _ value: UInt32, into writer: inout JSONWriter) {
        guard value != 0 else { return }
        writer.key(key)
        writer.integer(value)
    }

    static func uint64(_ key: StaticString, _ value: UInt64, into writer: inout JSONWriter) {
        guard value != 0 else { return }
        writer.key(key)
        writer.quotedInteger(value)
    }
}
