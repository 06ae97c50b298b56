import Foundation
import JSONText
import TraceModel
import TraceWire

/// Jaeger's query-service JSON (`model/json` of jaegertracing/jaeger, served by its v1 HTTP API): the
/// envelope `{"data", "total", "limit", "offset", "errors"}`, traces with `spans` and `processes`
/// (`p1`, `p2`, … in order of first use), tags as `{key, type, value}`.
enum JaegerQueryJSON {
    /// `{"data": [names], "total": n, "limit": 0, "offset": 0, "errors": null}`.
    static func names(_ names: [String]) -> [UInt8] {
        envelope(total: names.count) { writer in
            writer.beginArray()
            for name in names { writer.string(name) }
            writer.endArray()
        }
    }

    /// The envelope around traces.
    static func traces(_ traces: [TraceStore.StoredTrace]) -> [UInt8] {
        envelope(total: traces.count) { writer in
            writer.beginArray()
            for trace in traces { write(trace, into: &writer) }
            writer.endArray()
        }
    }

    /// Jaeger's error answer: `data` null and `errors: [{"code": status, "msg": message}]`.
    static func error(_ message: String, status: Int) -> [UInt8] {
        var writer = JSONWriter(capacity: 128)
        writer.beginObject()
        writer.key("data"); writer.null()
        writer.key("total"); writer.integer(0)
        writer.key("limit"); writer.integer(0)
        writer.key("offset"); writer.integer(0)
        writer.key("errors")
        writer.beginArray()
        writer.beginObject()
        writer.key("code"); writer.integer(status)
        writer.key("msg"); writer.string(message)
        writer.endObject()
        writer.endArray()
        writer.endObject()
        return writer.bytes
    }

    private static func envelope(total: Int, data: (inout JSONWriter) -> Void) -> [UInt8] {
        var writer = JSONWriter(capacity: 4096)
        writer.beginObject()
        writer.key("data"); data(&writer)
        writer.key("total"); writer.integer(total)
        writer.key("limit"); writer.integer(0)
        writer.key("offset"); writer.integer(0)
        writer.key("errors"); writer.null()
        writer.endObject()
        return writer.bytes
    }

    /// Jaeger writes a trace id with a zero high half as 16 hex digits (`model.TraceID.String`).
    static func traceIDText(_ id: TraceID) -> String {
        id.high == 0 ? SpanID(id.low).hex : id.hex
    }

    static func write(_ trace: TraceStore.StoredTrace, into writer: inout JSONWriter) {
        writer.beginObject()
        writer.key("traceID"); writer.string(traceIDText(trace.traceID))
        writer.key("spans")
        writer.beginArray()
        for stored in trace.spans { write(stored, into: &writer) }
        writer.endArray()
        writer.key("processes")
        writer.beginObject()
        for (index, process) in trace.processes.enumerated() {
            writer.dynamicKey("p\(index + 1)")
            writer.beginObject()
            writer.key("serviceName"); writer.string(process.serviceName)
            writer.key("tags"); write(process.tags, into: &writer)
            writer.endObject()
        }
        writer.endObject()
        writer.key("warnings"); writer.null()
        writer.endObject()
    }

    static func write(_ stored: TraceStore.StoredSpan, into writer: inout JSONWriter) {
        let span = stored.span
        writer.beginObject()
        writer.key("traceID"); writer.string(traceIDText(span.traceID))
        writer.key("spanID"); writer.hex(span.spanID.value)
        writer.key("flags"); writer.integer(span.flags)
        writer.key("operationName"); writer.string(span.operationName)
        writer.key("references")
        writer.beginArray()
        for reference in span.references {
            writer.beginObject()
            writer.key("refType"); writer.string(reference.followsFrom ? "FOLLOWS_FROM" : "CHILD_OF")
            writer.key("traceID"); writer.string(traceIDText(reference.traceID))
            writer.key("spanID"); writer.hex(reference.spanID.value)
            writer.endObject()
        }
        writer.endArray()
        writer.key("startTime"); writer.integer(span.startTimeUnixNano / 1000)
        writer.key("duration"); writer.integer(span.durationNanos / 1000)
        writer.key("tags"); write(span.tags, into: &writer)
        writer.key("logs")
        writer.beginArray()
        for log in span.logs {
            writer.beginObject()
            writer.key("timestamp"); writer.integer(log.timeUnixNano / 1000)
            writer.key("fields"); write(log.fields, into: &writer)
            writer.endObject()
        }
        writer.endArray()
        writer.key("processID"); writer.string("p\(stored.process + 1)")
        writer.key("warnings"); writer.null()
        writer.endObject()
    }

    static func write(_ tags: [JaegerTag], into writer: inout JSONWriter) {
        writer.beginArray()
        for tag in tags {
            writer.beginObject()
            writer.key("key"); writer.string(tag.key)
            switch tag.value {
            case .string(let text):
                writer.key("type"); writer.string("string")
                writer.key("value"); writer.string(text)
            case .bool(let flag):
                writer.key("type"); writer.string("bool")
                writer.key("value"); writer.bool(flag)
            case .int64(let integer):
                writer.key("type"); writer.string("int64")
                writer.key("value"); writer.integer(integer)
            case .float64(let real):
                writer.key("type"); writer.string("float64")
                writer.key("value"); writer.number(real)
            case .binary(let bytes):
                // Go's encoding/json writes []byte as standard base64.
                writer.key("type"); writer.string("binary")
                writer.key("value"); writer.string(Data(bytes).base64EncodedString())
            }
            writer.endObject()
        }
        writer.endArray()
    }
}
