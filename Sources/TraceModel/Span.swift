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
    public var traceID: TraceID { didSet { received = .none } }
    /// This span's id.
    public var spanID: SpanID { didSet { received = .none } }
    /// The parent's id; `.zero` for a root span.
    public var parentSpanID: SpanID { didSet { received = .none } }
    /// The W3C tracestate header value.
    public var traceState: String {
        get { storedTraceState }
        _modify {
            received = .none
            yield &storedTraceState
        }
        set {
            received = .none
            storedTraceState = newValue
        }
    }
    /// W3C trace flags in the low byte, OTLP's `SpanFlags` above it.
    public var flags: UInt32 { didSet { received = .none } }
    /// The operation's name.
    public var name: String {
        get { storedName }
        _modify {
            received = .none
            yield &storedName
        }
        set {
            received = .none
            storedName = newValue
        }
    }
    /// The span's role.
    public var kind: SpanKind { didSet { received = .none } }
    /// Start, in nanoseconds since the Unix epoch.
    public var startTimeUnixNano: UInt64 { didSet { received = .none } }
    /// End, in nanoseconds since the Unix epoch.
    public var endTimeUnixNano: UInt64 { didSet { received = .none } }
    /// The span's attributes.
    public var attributes: [Attribute] {
        get { storedAttributes }
        _modify {
            received = .none
            yield &storedAttributes
        }
        set {
            received = .none
            storedAttributes = newValue
        }
    }
    /// Attributes the sender had to drop.
    public var droppedAttributesCount: UInt32 { didSet { received = .none } }
    /// The span's events.
    public var events: [SpanEvent] {
        get { storedEvents }
        _modify {
            received = .none
            yield &storedEvents
        }
        set {
            received = .none
            storedEvents = newValue
        }
    }
    /// Events the sender had to drop.
    public var droppedEventsCount: UInt32 { didSet { received = .none } }
    /// The span's links.
    public var links: [SpanLink] {
        get { storedLinks }
        _modify {
            received = .none
            yield &storedLinks
        }
        set {
            received = .none
            storedLinks = newValue
        }
    }
    /// Links the sender had to drop.
    public var droppedLinksCount: UInt32 { didSet { received = .none } }
    /// The outcome.
    public var status: SpanStatus {
        get { storedStatus }
        _modify {
            received = .none
            yield &storedStatus
        }
        set {
            received = .none
            storedStatus = newValue
        }
    }
    /// Where the span sits in the binary OTLP request it was decoded from; forgotten when any field changes.
    public var received = ReceivedSpanBytes.none
    // Strings, arrays and the status behind accessors that forget `received` and still change them in
    // place (a `didSet` would copy an array for every append through `inout`).
    private var storedTraceState: String
    private var storedName: String
    private var storedAttributes: [Attribute]
    private var storedEvents: [SpanEvent]
    private var storedLinks: [SpanLink]
    private var storedStatus: SpanStatus

    /// Creates a span; every field but the ids has OTLP's default.
    public init(traceID: TraceID, spanID: SpanID, parentSpanID: SpanID = .zero, traceState: String = "",
                flags: UInt32 = 0, name: String = "", kind: SpanKind = .unspecified,
                startTimeUnixNano: UInt64 = 0, endTimeUnixNano: UInt64 = 0, attributes: [Attribute] = [],
                droppedAttributesCount: UInt32 = 0, events: [SpanEvent] = [], droppedEventsCount: UInt32 = 0,
                links: [SpanLink] = [], droppedLinksCount: UInt32 = 0, status: SpanStatus = SpanStatus()) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentSpanID = parentSpanID
        storedTraceState = traceState
        self.flags = flags
        storedName = name
        self.kind = kind
        self.startTimeUnixNano = startTimeUnixNano
        self.endTimeUnixNano = endTimeUnixNano
        storedAttributes = attributes
        self.droppedAttributesCount = droppedAttributesCount
        storedEvents = events
        self.droppedEventsCount = droppedEventsCount
        storedLinks = links
        self.droppedLinksCount = droppedLinksCount
        storedStatus = status
    }

    /// True for a span without a parent.
    public var isRoot: Bool { !parentSpanID.isValid }

    /// End minus start in nanoseconds; zero when the clock went backwards.
    public var durationNanos: UInt64 { endTimeUnixNano >= startTimeUnixNano ? endTimeUnixNano - startTimeUnixNano : 0 }
}

/// Where a span decoded from binary OTLP sits in the request it arrived in (`SpanBatch.received`), so
/// what keeps spans as bytes copies them instead of encoding them again. Not part of the span's value:
/// any two compare equal and hash alike.
public struct ReceivedSpanBytes: Sendable, Hashable {
    /// The request's `ReceivedRequest.serial`; 0: none.
    public var request: UInt64
    /// The span message's first byte in the request.
    public var offset: UInt32
    /// The span message's length.
    public var length: UInt32

    /// Not from a received request (or changed since).
    public static let none = ReceivedSpanBytes(request: 0, offset: 0, length: 0)

    /// Creates a location.
    public init(request: UInt64, offset: UInt32, length: UInt32) {
        self.request = request
        self.offset = offset
        self.length = length
    }

    public static func == (lhs: ReceivedSpanBytes, rhs: ReceivedSpanBytes) -> Bool { true }
    public func hash(into hasher: inout Hasher) {}
}
