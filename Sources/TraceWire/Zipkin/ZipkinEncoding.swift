import CProtobufC
import CTraceProto
import JSONText
import TraceModel

/// Zipkin v2 encodings of a list of spans: JSON (zipkin2-api.yaml `ListOfSpans`) and proto3
/// (`zipkin.proto3.ListOfSpans`, packed by libprotobuf-c). Not thread-safe: one per sender task.
public final class ZipkinEncoder {
    private let arena = ProtobufArena(initialCapacity: 64 << 10)

    public init() {}

    /// `[{"traceId":…},…]`, absent fields omitted.
    public static func json(_ spans: [ZipkinSpan]) -> [UInt8] {
        var writer = JSONWriter(capacity: 600 * max(spans.count, 1))
        writer.beginArray()
        for span in spans {
            writer.beginObject()
            writer.key("traceId")
            writer.hex(span.traceID.high, span.traceID.low)
            if let parent = span.parentID {
                writer.key("parentId")
                writer.hex(parent.value)
            }
            writer.key("id")
            writer.hex(span.id.value)
            if let kind = span.kind {
                writer.key("kind")
                writer.string(kind.rawValue)
            }
            if !span.name.isEmpty {
                writer.key("name")
                writer.string(span.name)
            }
            if let timestamp = span.timestamp {
                writer.key("timestamp")
                writer.integer(timestamp)
            }
            if let duration = span.duration {
                writer.key("duration")
                writer.integer(duration)
            }
            writer.key("localEndpoint")
            endpoint(span.localEndpoint, into: &writer)
            if let remote = span.remoteEndpoint {
                writer.key("remoteEndpoint")
                endpoint(remote, into: &writer)
            }
            if !span.annotations.isEmpty {
                writer.key("annotations")
                writer.beginArray()
                for annotation in span.annotations {
                    writer.beginObject()
                    writer.key("timestamp")
                    writer.integer(annotation.timestamp)
                    writer.key("value")
                    writer.string(annotation.value)
                    writer.endObject()
                }
                writer.endArray()
            }
            if !span.tags.isEmpty {
                writer.key("tags")
                writer.beginObject()
                for tag in span.tags {
                    writer.dynamicKey(tag.key)
                    writer.string(tag.value)
                }
                writer.endObject()
            }
            writer.endObject()
        }
        writer.endArray()
        return writer.bytes
    }

    private static func endpoint(_ endpoint: ZipkinSpan.Endpoint, into writer: inout JSONWriter) {
        writer.beginObject()
        if let name = endpoint.serviceName {
            writer.key("serviceName")
            writer.string(name)
        }
        if let v4 = endpoint.ipv4 {
            writer.key("ipv4")
            writer.string(IPAddress.text(v4: v4))
        }
        if let v6 = endpoint.ipv6 {
            writer.key("ipv6")
            writer.string(IPAddress.text(v6: v6))
        }
        if let port = endpoint.port {
            writer.key("port")
            writer.integer(port)
        }
        writer.endObject()
    }

    /// `zipkin.proto3.ListOfSpans`.
    public func proto(_ spans: [ZipkinSpan]) -> [UInt8] {
        arena.withReset { _ in
            let list = arena.allocate(Zipkin__Proto3__ListOfSpans.self)
            zipkin__proto3__list_of_spans__init(list)
            list.pointee.n_spans = spans.count
            list.pointee.spans = arena.pointerArray(spans.count) { protoSpan(spans[$0]) }
            return ProtobufPacking.pack(list)
        }
    }

    private func protoSpan(_ span: ZipkinSpan) -> UnsafeMutablePointer<Zipkin__Proto3__Span> {
        let result = arena.allocate(Zipkin__Proto3__Span.self)
        zipkin__proto3__span__init(result)
        result.pointee.trace_id = arena.binaryData(span.traceID.bytes)
        if let parent = span.parentID { result.pointee.parent_id = arena.binaryData(parent.bytes) }
        result.pointee.id = arena.binaryData(span.id.bytes)
        let kind: UInt32 = switch span.kind {
        case nil: 0
        case .client?: 1
        case .server?: 2
        case .producer?: 3
        case .consumer?: 4
        }
        result.pointee.kind = Zipkin__Proto3__Span__Kind(rawValue: numericCast(kind))
        result.pointee.name = arena.cString(span.name)
        result.pointee.timestamp = span.timestamp ?? 0
        result.pointee.duration = span.duration ?? 0
        result.pointee.local_endpoint = protoEndpoint(span.localEndpoint)
        if let remote = span.remoteEndpoint { result.pointee.remote_endpoint = protoEndpoint(remote) }
        result.pointee.n_annotations = span.annotations.count
        result.pointee.annotations = arena.pointerArray(span.annotations.count) { index in
            let annotation = arena.allocate(Zipkin__Proto3__Annotation.self)
            zipkin__proto3__annotation__init(annotation)
            annotation.pointee.timestamp = span.annotations[index].timestamp
            annotation.pointee.value = arena.cString(span.annotations[index].value)
            return annotation
        }
        result.pointee.n_tags = span.tags.count
        result.pointee.tags = arena.pointerArray(span.tags.count) { index in
            let entry = arena.allocate(Zipkin__Proto3__Span__TagsEntry.self)
            zipkin__proto3__span__tags_entry__init(entry)
            entry.pointee.key = arena.cString(span.tags[index].key)
            entry.pointee.value = arena.cString(span.tags[index].value)
            return entry
        }
        return result
    }

    private func protoEndpoint(_ endpoint: ZipkinSpan.Endpoint) -> UnsafeMutablePointer<Zipkin__Proto3__Endpoint> {
        let result = arena.allocate(Zipkin__Proto3__Endpoint.self)
        zipkin__proto3__endpoint__init(result)
        result.pointee.service_name = arena.cString(endpoint.serviceName ?? "")
        if let v4 = endpoint.ipv4 { result.pointee.ipv4 = arena.binaryData(v4) }
        if let v6 = endpoint.ipv6 { result.pointee.ipv6 = arena.binaryData(v6) }
        result.pointee.port = Int32(endpoint.port ?? 0)
        return result
    }
}
