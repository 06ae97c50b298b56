/// The role of a span in a request, as OTLP's `Span.SpanKind` numbers it.
public enum SpanKind: Int32, Sendable, Hashable, CaseIterable {
    case unspecified = 0
    case `internal` = 1
    case server = 2
    case client = 3
    case producer = 4
    case consumer = 5

    /// Maps an OTLP enum number; numbers this version does not know become `.unspecified`.
    public init(otlpValue: Int32) { self = SpanKind(rawValue: otlpValue) ?? .unspecified }
}

/// A span's outcome, as OTLP's `Status` carries it.
public struct SpanStatus: Sendable, Hashable {
    /// OTLP's `Status.StatusCode`.
    public enum Code: Int32, Sendable, Hashable {
        case unset = 0
        case ok = 1
        case error = 2
    }

    /// The status code; unknown numbers decode as `.unset`.
    public var code: Code
    /// A developer-facing message, usually set only with `.error`.
    public var message: String

    /// Creates a status.
    public init(code: Code = .unset, message: String = "") {
        self.code = code
        self.message = message
    }
}

/// A time-stamped event inside a span (OTLP `Span.Event`).
public struct SpanEvent: Sendable, Hashable {
    /// Nanoseconds since the Unix epoch.
    public var timeUnixNano: UInt64
    /// The event's name, such as `exception`.
    public var name: String
    /// The event's attributes.
    public var attributes: [Attribute]
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32

    /// Creates an event.
    public init(timeUnixNano: UInt64 = 0, name: String = "", attributes: [Attribute] = [], droppedAttributesCount: UInt32 = 0) {
        self.timeUnixNano = timeUnixNano
        self.name = name
        self.attributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
    }
}

/// A link from a span to another span, possibly in another trace (OTLP `Span.Link`).
public struct SpanLink: Sendable, Hashable {
    /// The linked span's trace.
    public var traceID: TraceID
    /// The linked span.
    public var spanID: SpanID
    /// The linked span's W3C tracestate.
    public var traceState: String
    /// The link's attributes.
    public var attributes: [Attribute]
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32
    /// W3C trace flags in the low byte, OTLP's `SpanFlags` above it.
    public var flags: UInt32

    /// Creates a link.
    public init(traceID: TraceID, spanID: SpanID, traceState: String = "", attributes: [Attribute] = [],
                droppedAttributesCount: UInt32 = 0, flags: UInt32 = 0) {
        self.traceID = traceID
        self.spanID = spanID
        self.traceState = traceState
        self.attributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
        self.flags = flags
    }
}

/// One operation in a trace: the OTLP `Span` message as a value.
public struct Span: Sendable, Hashable {
    /// The trace this span belongs to.
    public var traceID: TraceID
    /// This span's id.
    public var spanID: SpanID
    /// The parent's id; `.zero` for a root span.
    public var parentSpanID: SpanID
    /// The W3C tracestate header value.
    public var traceState: String
    /// W3C trace flags in the low byte, OTLP's `SpanFlags` above it.
    public var flags: UInt32
    /// The operation's name.
    public var name: String
    /// The span's role.
    public var kind: SpanKind
    /// Start, in nanoseconds since the Unix epoch.
    public var startTimeUnixNano: UInt64
    /// End, in nanoseconds since the Unix epoch.
    public var endTimeUnixNano: UInt64
    /// The span's attributes.
    public var attributes: [Attribute]
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32
    /// The span's events.
    public var events: [SpanEvent]
    /// Events the sender had to drop.
    public var droppedEventsCount: UInt32
    /// The span's links.
    public var links: [SpanLink]
    /// Links the sender had to drop.
    public var droppedLinksCount: UInt32
    /// The outcome.
    public var status: SpanStatus

    /// Creates a span; every field but the ids has OTLP's default.
    public init(traceID: TraceID, spanID: SpanID, parentSpanID: SpanID = .zero, traceState: String = "",
                flags: UInt32 = 0, name: String = "", kind: SpanKind = .unspecified,
                startTimeUnixNano: UInt64 = 0, endTimeUnixNano: UInt64 = 0, attributes: [Attribute] = [],
                droppedAttributesCount: UInt32 = 0, events: [SpanEvent] = [], droppedEventsCount: UInt32 = 0,
                links: [SpanLink] = [], droppedLinksCount: UInt32 = 0, status: SpanStatus = SpanStatus()) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        self.traceState = traceState
        self.flags = flags
        self.name = name
        self.kind = kind
        self.startTimeUnixNano = startTimeUnixNano
        self.endTimeUnixNano = endTimeUnixNano
        self.attributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
        self.events = events
        self.droppedEventsCount = droppedEventsCount
        self.links = links
        self.droppedLinksCount = droppedLinksCount
        self.status = status
    }

    /// True for a span without a parent.
    public var isRoot: Bool { !parentSpanID.isValid }

    /// End minus start in nanoseconds; zero when the clock went backwards.
    public var durationNanos: UInt64 { endTimeUnixNano >= startTimeUnixNano ? endTimeUnixNano - startTimeUnixNano : 0 }
}
