import TraceModel

/// Estimates of the OTLP protobuf size of spans, for `maximum_trace_size_bytes` and `bytes_limiting`:
/// field bytes plus a small allowance for tags and lengths, without encoding anything.
enum SpanSize {
    static func estimate(_ resourceSpans: ResourceSpans) -> Int {
        var size = attributes(resourceSpans.resource.attributes) + 8
        for scope in resourceSpans.scopeSpans {
            size += scope.scope.name.utf8.count + scope.scope.version.utf8.count + 8
            for span in scope.spans { size += estimate(span) }
        }
        return size
    }

    static func estimate(_ span: Span) -> Int {
        // Ids (16 + 8 + 8), two fixed64 times, kind, flags, tags and lengths.
        var size = 70 + span.name.utf8.count + span.traceState.utf8.count + span.status.message.utf8.count
        size += attributes(span.attributes)
        for event in span.events { size += 14 + event.name.utf8.count + attributes(event.attributes) }
        for link in span.links { size += 30 + link.traceState.utf8.count + attributes(link.attributes) }
        return size
    }

    static func attributes(_ attributes: [Attribute]) -> Int {
        attributes.reduce(0) { $0 + 6 + $1.key.utf8.count + value($1.value) }
    }

    static func value(_ value: AttributeValue) -> Int {
        switch value {
        case .string(let text): text.utf8.count + 2
        case .bool: 2
        case .int: 10
        case .double: 9
        case .bytes(let bytes): bytes.count + 2
        case .array(let values): values.reduce(2) { $0 + 2 + Self.value($1) }
        case .keyValueList(let list): attributes(list) + 2
        case .empty: 0
        }
    }
}
