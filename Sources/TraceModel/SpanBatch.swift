import Synchronization

/// The entity that produced spans (OTLP `Resource`).
public struct Resource: Sendable, Hashable {
    /// Resource attributes, such as `service.name`.
    public var attributes: [Attribute]
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32

    /// Creates a resource.
    public init(attributes: [Attribute] = [], droppedAttributesCount: UInt32 = 0) {
        self.attributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
    }

    /// `service.name`, or nil when absent or not a string.
    public var serviceName: String? { attributes["service.name"]?.stringValue }
}

/// The library that produced spans (OTLP `InstrumentationScope`).
public struct InstrumentationScope: Sendable, Hashable {
    /// The scope's name.
    public var name: String
    /// The scope's version.
    public var version: String
    /// Scope attributes.
    public var attributes: [Attribute]
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32

    /// Creates a scope.
    public init(name: String = "", version: String = "", attributes: [Attribute] = [], droppedAttributesCount: UInt32 = 0) {
        self.name = name
        self.version = version
        self.attributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
    }
}

/// Spans of one instrumentation scope (OTLP `ScopeSpans`).
public struct ScopeSpans: Sendable, Hashable {
    /// The scope.
    public var scope: InstrumentationScope
    /// The spans.
    public var spans: [Span]
    /// The scope's schema URL.
    public var schemaURL: String

    /// Creates a group of spans.
    public init(scope: InstrumentationScope = InstrumentationScope(), spans: [Span] = [], schemaURL: String = "") {
        self.scope = scope
        self.spans = spans
        self.schemaURL = schemaURL
    }
}

/// Spans of one resource (OTLP `ResourceSpans`).
public struct ResourceSpans: Sendable, Hashable {
    /// The resource.
    public var resource: Resource
    /// The spans, grouped by scope.
    public var scopeSpans: [ScopeSpans]
    /// The resource's schema URL.
    public var schemaURL: String

    /// Creates a group of spans.
    public init(resource: Resource = Resource(), scopeSpans: [ScopeSpans] = [], schemaURL: String = "") {
        self.resource = resource
        self.scopeSpans = scopeSpans
        self.schemaURL = schemaURL
    }

    /// Spans in all scopes.
    public var spanCount: Int { scopeSpans.reduce(0) { $0 + $1.spans.count } }
}

/// The unit that moves through the pipeline: one export request's worth of spans
/// (OTLP `ExportTraceServiceRequest` / `TracesData`).
public struct SpanBatch: Sendable, Hashable {
    /// The spans, grouped by resource and scope.
    public var resourceSpans: [ResourceSpans]
    /// The binary OTLP request the batch was decoded from, while it moves through the processors:
    /// spans that still match their bytes (`Span.received`) are copied from it, not encoded again.
    public var received = ReceivedRequest.none

    /// Creates a batch.
    public init(resourceSpans: [ResourceSpans] = []) {
        self.resourceSpans = resourceSpans
    }

    /// Spans in all resources.
    public var spanCount: Int { resourceSpans.reduce(0) { $0 + $1.spanCount } }

    /// True when there is no span.
    public var isEmpty: Bool { resourceSpans.allSatisfy { $0.scopeSpans.allSatisfy { $0.spans.isEmpty } } }

    /// Calls `body` for every span with its resource and scope.
    public func forEachSpan(_ body: (Span, Resource, InstrumentationScope) throws -> Void) rethrows {
        for resourceSpans in resourceSpans {
            for scopeSpans in resourceSpans.scopeSpans {
                for span in scopeSpans.spans {
                    try body(span, resourceSpans.resource, scopeSpans.scope)
                }
            }
        }
    }

    /// Keeps the spans for which `isIncluded` is true, dropping scopes and resources left empty.
    public mutating func filterSpans(_ isIncluded: (Span) throws -> Bool) rethrows {
        for resourceIndex in resourceSpans.indices {
            for scopeIndex in resourceSpans[resourceIndex].scopeSpans.indices {
                try resourceSpans[resourceIndex].scopeSpans[scopeIndex].spans.removeAll { try !isIncluded($0) }
            }
            resourceSpans[resourceIndex].scopeSpans.removeAll { $0.spans.isEmpty }
        }
        resourceSpans.removeAll { $0.scopeSpans.isEmpty }
    }

    /// Appends another batch's groups; groups are not merged, so order is kept.
    public mutating func append(contentsOf other: SpanBatch) {
        resourceSpans.append(contentsOf: other.resourceSpans)
    }
}

extension SpanBatch {
    /// Splits into batches of at most `maxSpans` spans each, keeping order and each span's resource and scope.
    public func split(maxSpans: Int) -> [SpanBatch] {
        precondition(maxSpans > 0, "maxSpans must be positive")
        guard spanCount > maxSpans else { return [self] }
        var result: [SpanBatch] = []
        var current = SpanBatch()
        var currentSpans = 0
        for resourceSpans in resourceSpans {
            // The group this resource has in `current`, once it has one.
            var openGroup: Int?
            for scopeSpans in resourceSpans.scopeSpans {
                var remaining = scopeSpans.spans[...]
                while !remaining.isEmpty {
                    let take = min(maxSpans - currentSpans, remaining.count)
                    var chunk = scopeSpans
                    chunk.spans = Array(remaining.prefix(take))
                    remaining = remaining.dropFirst(take)
                    if let openGroup {
                        current.resourceSpans[openGroup].scopeSpans.append(chunk)
                    } else {
                        current.resourceSpans.append(ResourceSpans(resource: resourceSpans.resource, scopeSpans: [chunk],
                                                                   schemaURL: resourceSpans.schemaURL))
                        openGroup = current.resourceSpans.count - 1
                    }
                    currentSpans += take
                    if currentSpans == maxSpans {
                        result.append(current)
                        current = SpanBatch()
                        currentSpans = 0
                        openGroup = nil
                    }
                }
            }
        }
        if currentSpans > 0 { result.append(current) }
        return result
    }
}

/// The bytes of a binary OTLP request, kept with the batch decoded from it. Not part of the batch's
/// value: any two compare equal and hash alike.
public struct ReceivedRequest: Sendable, Hashable {
    /// Unique per request in the process (`Span.received` names it); 0: none.
    public let serial: UInt64
    /// The request's bytes.
    public let bytes: [UInt8]

    /// No request.
    public static let none = ReceivedRequest(serial: 0, bytes: [])

    private init(serial: UInt64, bytes: [UInt8]) {
        self.serial = serial
        self.bytes = bytes
    }

    /// Keeps `bytes` under a serial no other request in the process has.
    public init(_ bytes: [UInt8]) {
        self.init(serial: ReceivedRequest.serials.add(1, ordering: .relaxed).newValue, bytes: bytes)
    }

    private static let serials = Atomic<UInt64>(0)

    /// The bytes of a span at `place` (its `Span.received`), when it came in this request. (Given the
    /// place rather than the span, so that a span in an array is read where it lies, not copied.)
    public func bytes(at place: ReceivedSpanBytes) -> ArraySlice<UInt8>? {
        guard serial != 0, place.request == serial else { return nil }
        let start = Int(place.offset)
        return bytes[start..<start + Int(place.length)]
    }

    public static func == (lhs: ReceivedRequest, rhs: ReceivedRequest) -> Bool { true }
    public func hash(into hasher: inout Hasher) {}
}
