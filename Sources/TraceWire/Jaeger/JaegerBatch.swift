import CProtobufC
import CTraceProto
import TraceModel

/// A Jaeger api_v2 tag value (`KeyValue` with its `ValueType`).
public enum JaegerTagValue: Sendable, Equatable {
    case string(String), bool(Bool), int64(Int64), float64(Double), binary([UInt8])
}

/// A Jaeger api_v2 `Batch`: one process and its spans.
public struct JaegerBatch: Sendable, Equatable {
    public struct Reference: Sendable, Equatable {
        public var traceID: TraceID
        public var spanID: SpanID
        public var followsFrom: Bool
    }

    public struct Log: Sendable, Equatable {
        public var timeUnixNano: UInt64
        public var fields: [JaegerTag]
    }

    public struct JaegerSpan: Sendable, Equatable {
        public var traceID: TraceID
        public var spanID: SpanID
        public var operationName: String
        public var references: [Reference]
        public var flags: UInt32
        public var startTimeUnixNano: UInt64
        public var durationNanos: UInt64
        public var tags: [JaegerTag]
        public var logs: [Log]
    }

    public var serviceName: String
    public var processTags: [JaegerTag]
    public var spans: [JaegerSpan]
}

/// A key and a typed value.
public struct JaegerTag: Sendable, Equatable {
    public var key: String
    public var value: JaegerTagValue

    public init(_ key: String, _ value: JaegerTagValue) {
        self.key = key
        self.value = value
    }
}

/// Maps OTLP spans to Jaeger api_v2, as docs/exporter-mappings.md §2 sets out (the OpenTelemetry
/// specification's Jaeger rules, following the Collector's reference translator).
public enum JaegerTranslator {
    /// One batch per resource.
    public static func batches(from batch: SpanBatch) -> [JaegerBatch] {
        batch.resourceSpans.map { resourceSpans in
            let serviceName = resourceSpans.resource.serviceName.flatMap { $0.isEmpty ? nil : $0 } ?? "unknown_service"
            var spans: [JaegerBatch.JaegerSpan] = []
            for scopeSpans in resourceSpans.scopeSpans {
                var scopeTags = TypedTags()
                let scope = scopeSpans.scope
                if !scope.name.isEmpty {
                    scopeTags.set("otel.scope.name", .string(scope.name))
                    scopeTags.set("otel.library.name", .string(scope.name))
                }
                if !scope.version.isEmpty {
                    scopeTags.set("otel.scope.version", .string(scope.version))
                    scopeTags.set("otel.library.version", .string(scope.version))
                }
                for attribute in scope.attributes { scopeTags.set(attribute.key, tagValue(attribute.value)) }
                for span in scopeSpans.spans where span.traceID.isValid && span.spanID.isValid {
                    spans.append(self.span(span, scopeTags: scopeTags))
                }
            }
            return JaegerBatch(
                serviceName: serviceName,
                processTags: resourceSpans.resource.attributes.filter { $0.key != "service.name" }.map { JaegerTag($0.key, tagValue($0.value)) },
                spans: spans)
        }
    }

    static func span(_ span: Span, scopeTags: TypedTags) -> JaegerBatch.JaegerSpan {
        var tags = scopeTags
        for attribute in span.attributes { tags.set(attribute.key, tagValue(attribute.value)) }
        let kind: String? = switch span.kind {
        case .client: "client"
        case .server: "server"
        case .producer: "producer"
        case .consumer: "consumer"
        case .internal: "internal"
        case .unspecified: nil
        }
        if let kind { tags.set("span.kind", .string(kind)) }
        switch span.status.code {
        case .ok: tags.set("otel.status_code", .string("OK"))
        case .error:
            tags.set("otel.status_code", .string("ERROR"))
            tags.set("error", .bool(true))
        case .unset: break
        }
        if span.status.code != .unset, !span.status.message.isEmpty {
            tags.set("otel.status_description", .string(span.status.message))
        }
        if !span.traceState.isEmpty { tags.set("w3c.tracestate", .string(span.traceState)) }
        if span.droppedAttributesCount > 0 { tags.set("otel.dropped_attributes_count", .int64(Int64(span.droppedAttributesCount))) }
        if span.droppedEventsCount > 0 { tags.set("otel.dropped_events_count", .int64(Int64(span.droppedEventsCount))) }
        if span.droppedLinksCount > 0 { tags.set("otel.dropped_links_count", .int64(Int64(span.droppedLinksCount))) }

        var references: [JaegerBatch.Reference] = []
        if span.parentSpanID.isValid {
            references.append(.init(traceID: span.traceID, spanID: span.parentSpanID, followsFrom: false))
        }
        for link in span.links {
            // The Collector's refTypeFromLink: CHILD_OF only for `opentracing.ref_type = child_of`.
            let followsFrom = link.attributes["opentracing.ref_type"]?.stringValue != "child_of"
            if span.parentSpanID.isValid, link.traceID == span.traceID, link.spanID == span.parentSpanID {
                // A link to the parent is not repeated; as in the Collector's makeJaegerProtoReferences
                // ("maybe with the wrong type, so override") it sets the parent reference's type.
                references[0].followsFrom = followsFrom
                continue
            }
            references.append(.init(traceID: link.traceID, spanID: link.spanID, followsFrom: followsFrom))
        }
        let logs = span.events.map { event in
            var fields = TypedTags()
            if !event.name.isEmpty, event.attributes["event"] == nil { fields.set("event", .string(event.name)) }
            for attribute in event.attributes { fields.set(attribute.key, tagValue(attribute.value)) }
            if event.droppedAttributesCount > 0 { fields.set("otel.dropped_attributes_count", .int64(Int64(event.droppedAttributesCount))) }
            return JaegerBatch.Log(timeUnixNano: event.timeUnixNano, fields: fields.tags)
        }
        return JaegerBatch.JaegerSpan(
            traceID: span.traceID, spanID: span.spanID, operationName: span.name, references: references,
            flags: 1,  // sampled: SDKs export sampled spans only
            startTimeUnixNano: span.startTimeUnixNano, durationNanos: span.durationNanos, tags: tags.tags, logs: logs)
    }

    static func tagValue(_ value: AttributeValue) -> JaegerTagValue {
        switch value {
        case .string(let text): .string(text)
        case .bool(let flag): .bool(flag)
        case .int(let integer): .int64(integer)
        case .double(let real): .float64(real)
        case .bytes(let bytes): .binary(bytes)
        case .array, .keyValueList, .empty: .string(AttributeText.string(value))
        }
    }
}

/// Typed tags with one value per key, in the order keys were first set.
struct TypedTags {
    private(set) var tags: [JaegerTag] = []
    private var index: [String: Int] = [:]

    mutating func set(_ key: String, _ value: JaegerTagValue) {
        if let position = index[key] {
            tags[position].value = value
        } else {
            index[key] = tags.count
            tags.append(JaegerTag(key, value))
        }
    }
}

/// Packs `jaeger.api_v2.PostSpansRequest`s with libprotobuf-c. Not thread-safe: one per sender task.
public final class JaegerEncoder {
    private let arena = ProtobufArena(initialCapacity: 64 << 10)

    public init() {}

    /// A `PostSpansRequest` carrying `batch`.
    public func postSpansRequest(_ batch: JaegerBatch) -> [UInt8] {
        arena.withReset { _ in
            let request = arena.allocate(Jaeger__ApiV2__PostSpansRequest.self)
            jaeger__api_v2__post_spans_request__init(request)
            let cBatch = arena.allocate(Jaeger__ApiV2__Batch.self)
            jaeger__api_v2__batch__init(cBatch)
            let process = arena.allocate(Jaeger__ApiV2__Process.self)
            jaeger__api_v2__process__init(process)
            process.pointee.service_name = arena.cString(batch.serviceName)
            (process.pointee.n_tags, process.pointee.tags) = keyValues(batch.processTags)
            cBatch.pointee.process = process
            cBatch.pointee.n_spans = batch.spans.count
            cBatch.pointee.spans = arena.pointerArray(batch.spans.count) { span(batch.spans[$0]) }
            request.pointee.batch = cBatch
            return ProtobufPacking.pack(request)
        }
    }

    private func span(_ span: JaegerBatch.JaegerSpan) -> UnsafeMutablePointer<Jaeger__ApiV2__Span> {
        let result = arena.allocate(Jaeger__ApiV2__Span.self)
        jaeger__api_v2__span__init(result)
        result.pointee.trace_id = arena.binaryData(span.traceID.bytes)
        result.pointee.span_id = arena.binaryData(span.spanID.bytes)
        result.pointee.operation_name = arena.cString(span.operationName)
        result.pointee.n_references = span.references.count
        result.pointee.references = arena.pointerArray(span.references.count) { index in
            let reference = span.references[index]
            let cReference = arena.allocate(Jaeger__ApiV2__SpanRef.self)
            jaeger__api_v2__span_ref__init(cReference)
            cReference.pointee.trace_id = arena.binaryData(reference.traceID.bytes)
            cReference.pointee.span_id = arena.binaryData(reference.spanID.bytes)
            cReference.pointee.ref_type = reference.followsFrom ? JAEGER__API_V2__SPAN_REF_TYPE__FOLLOWS_FROM : JAEGER__API_V2__SPAN_REF_TYPE__CHILD_OF
            return cReference
        }
        result.pointee.flags = span.flags
        result.pointee.start_time = timestamp(span.startTimeUnixNano)
        let duration = arena.allocate(Google__Protobuf__Duration.self)
        google__protobuf__duration__init(duration)
        duration.pointee.seconds = Int64(span.durationNanos / 1_000_000_000)
        duration.pointee.nanos = Int32(span.durationNanos % 1_000_000_000)
        result.pointee.duration = duration
        (result.pointee.n_tags, result.pointee.tags) = keyValues(span.tags)
        result.pointee.n_logs = span.logs.count
        result.pointee.logs = arena.pointerArray(span.logs.count) { index in
            let log = arena.allocate(Jaeger__ApiV2__Log.self)
            jaeger__api_v2__log__init(log)
            log.pointee.timestamp = timestamp(span.logs[index].timeUnixNano)
            (log.pointee.n_fields, log.pointee.fields) = keyValues(span.logs[index].fields)
            return log
        }
        result.pointee.process_id = arena.cString("")
        return result
    }

    private func timestamp(_ unixNanos: UInt64) -> UnsafeMutablePointer<Google__Protobuf__Timestamp> {
        let result = arena.allocate(Google__Protobuf__Timestamp.self)
        google__protobuf__timestamp__init(result)
        result.pointee.seconds = Int64(unixNanos / 1_000_000_000)
        result.pointee.nanos = Int32(unixNanos % 1_000_000_000)
        return result
    }

    private func keyValues(_ tags: [JaegerTag]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Jaeger__ApiV2__KeyValue>?>?) {
        (tags.count, arena.pointerArray(tags.count) { index in
            let tag = tags[index]
            let keyValue = arena.allocate(Jaeger__ApiV2__KeyValue.self)
            jaeger__api_v2__key_value__init(keyValue)
            keyValue.pointee.key = arena.cString(tag.key)
            switch tag.value {
            case .string(let text):
                keyValue.pointee.v_type = JAEGER__API_V2__VALUE_TYPE__STRING
                keyValue.pointee.v_str = arena.cString(text)
            case .bool(let flag):
                keyValue.pointee.v_type = JAEGER__API_V2__VALUE_TYPE__BOOL
                keyValue.pointee.v_bool = flag ? 1 : 0
            case .int64(let integer):
                keyValue.pointee.v_type = JAEGER__API_V2__VALUE_TYPE__INT64
                keyValue.pointee.v_int64 = integer
            case .float64(let real):
                keyValue.pointee.v_type = JAEGER__API_V2__VALUE_TYPE__FLOAT64
                keyValue.pointee.v_float64 = real
            case .binary(let bytes):
                keyValue.pointee.v_type = JAEGER__API_V2__VALUE_TYPE__BINARY
                keyValue.pointee.v_binary = arena.binaryData(bytes)
            }
            return keyValue
        })
    }
}
