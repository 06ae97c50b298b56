import DequeModule
import TraceModel
import TraceWire

/// The recent traces the `memory` exporter keeps, as plain data (no locks, no clock): bounded by a trace
/// count and an estimate of their bytes, the trace whose first span came earliest evicted first. Spans of
/// one trace that arrive in several batches join one stored trace. Spans are kept already in Jaeger's
/// model (`JaegerTranslator`, docs/exporter-mappings.md §2), the shape the query API answers in.
public struct TraceStore: Sendable {
    /// A Jaeger process: a service and its resource's other attributes.
    public struct Process: Sendable, Equatable {
        /// `service.name`.
        public var serviceName: String
        /// The resource's other attributes.
        public var tags: [JaegerTag]
    }

    /// One span and the index of its process in its trace's `processes`.
    public struct StoredSpan: Sendable {
        /// The span in Jaeger's model.
        public var span: JaegerBatch.JaegerSpan
        /// Index into `StoredTrace.processes`.
        public var process: Int
    }

    /// One trace: its spans in arrival order and the processes they name.
    public struct StoredTrace: Sendable {
        /// The trace's id.
        public var traceID: TraceID
        /// Spans, in arrival order.
        public var spans: [StoredSpan] = []
        /// Distinct processes, in order of first use.
        public var processes: [Process] = []
        /// The estimate of this trace's bytes that counts against `maxBytes`.
        public var estimatedBytes = 0
        /// Arrival order of the trace's first span (larger is newer).
        var sequence: UInt64

        /// The earliest span start, in Unix nanoseconds.
        public var startUnixNano: UInt64 { spans.map(\.span.startTimeUnixNano).min() ?? 0 }
    }

    /// At most this many traces. Default 10,000.
    public let maxTraces: Int
    /// At most this many estimated bytes. Default 256 MiB.
    public let maxBytes: Int
    /// Traces by id.
    private(set) var traces: [TraceID: StoredTrace] = [:]
    /// Trace ids in the order their first span arrived, oldest first.
    private var order: Deque<TraceID> = []
    private var nextSequence: UInt64 = 0
    /// How many stored spans each service has per span name: `/api/services` and its operations read
    /// this instead of every trace. It holds no more names than the stored spans have.
    private var spanNames: [String: [String: Int]] = [:]
    /// Estimated bytes of every stored trace.
    public private(set) var estimatedBytes = 0
    /// Traces evicted to stay within the bounds, since the store was made.
    public private(set) var evictedTraces = 0

    /// An empty store with these bounds.
    public init(maxTraces: Int, maxBytes: Int) {
        self.maxTraces = maxTraces
        self.maxBytes = maxBytes
    }

    /// The number of stored traces.
    public var count: Int { traces.count }

    /// Adds a batch's spans, then evicts the oldest traces until both bounds hold; returns how many were evicted.
    @discardableResult
    public mutating func insert(_ batch: SpanBatch) -> Int {
        for jaeger in JaegerTranslator.batches(from: batch) {
            let process = Process(serviceName: jaeger.serviceName, tags: jaeger.processTags)
            for span in jaeger.spans {
                var trace: StoredTrace
                if let stored = traces.removeValue(forKey: span.traceID) {
                    trace = stored
                } else {
                    order.append(span.traceID)
                    trace = StoredTrace(traceID: span.traceID, sequence: nextSequence)
                    nextSequence += 1
                }
                var processIndex = trace.processes.firstIndex(of: process)
                if processIndex == nil {
                    processIndex = trace.processes.count
                    trace.processes.append(process)
                    trace.estimatedBytes += Self.estimate(process)
                    estimatedBytes += Self.estimate(process)
                }
                spanNames[process.serviceName, default: [:]][span.operationName, default: 0] += 1
                let size = Self.estimate(span)
                trace.spans.append(StoredSpan(span: span, process: processIndex ?? 0))
                trace.estimatedBytes += size
                estimatedBytes += size
                traces[span.traceID] = trace
            }
        }
        var evicted = 0
        while traces.count > maxTraces || estimatedBytes > maxBytes, let oldest = order.popFirst() {
            if let trace = traces.removeValue(forKey: oldest) {
                estimatedBytes -= trace.estimatedBytes
                evicted += 1
                for stored in trace.spans { forget(service: trace.processes[stored.process].serviceName, name: stored.span.operationName) }
            }
        }
        evictedTraces += evicted
        return evicted
    }

    /// The trace with `traceID`, if stored.
    public func trace(_ traceID: TraceID) -> StoredTrace? { traces[traceID] }

    /// Every service that a stored span came from, sorted.
    public func services() -> [String] {
        spanNames.keys.sorted()
    }

    /// The span names of `service`, sorted.
    public func operations(service: String) -> [String] {
        spanNames[service]?.keys.sorted() ?? []
    }

    private mutating func forget(service: String, name: String) {
        guard let count = spanNames[service]?[name] else { return }
        if count > 1 {
            spanNames[service]?[name] = count - 1
        } else {
            spanNames[service]?[name] = nil
            if spanNames[service]?.isEmpty == true { spanNames[service] = nil }
        }
    }

    /// The traces in which at least one span matches every condition of `query`, newest first, at most `query.limit`.
    /// With `query.traceIDs`, the stored ones of those traces in the order asked, the other conditions unread
    /// (Jaeger's `tracesByIDs`).
    public func search(_ query: TraceQuery) -> [StoredTrace] {
        if !query.traceIDs.isEmpty {
            var seen: Set<TraceID> = []
            return query.traceIDs.compactMap { seen.insert($0).inserted ? traces[$0] : nil }
        }
        var found: [StoredTrace] = []
        for id in order.reversed() {
            guard found.count < query.limit else { break }
            guard let trace = traces[id] else { continue }
            if trace.spans.contains(where: { query.matches($0, in: trace) }) { found.append(trace) }
        }
        return found
    }

    /// A rough size of a process: its strings and a fixed overhead.
    static func estimate(_ process: Process) -> Int {
        64 + process.serviceName.utf8.count + process.tags.reduce(0) { $0 + estimate($1) }
    }

    /// A rough size of a span: its strings, tags, references and logs, and a fixed overhead per part.
    static func estimate(_ span: JaegerBatch.JaegerSpan) -> Int {
        var size = 160 + span.operationName.utf8.count + span.references.count * 40
        for tag in span.tags { size += estimate(tag) }
        for log in span.logs { size += 32 + log.fields.reduce(0) { $0 + estimate($1) } }
        return size
    }

    static func estimate(_ tag: JaegerTag) -> Int {
        let value = switch tag.value {
        case .string(let text): text.utf8.count
        case .binary(let bytes): bytes.count
        case .bool, .int64, .float64: 8
        }
        return 32 + tag.key.utf8.count + value
    }
}

/// What `GET /api/traces` asks for: Jaeger's trace query parameters. A trace matches when one of its
/// spans matches every condition given.
public struct TraceQuery: Sendable, Equatable {
    /// `service`: the span's process.
    public var service: String?
    /// `operation`: the span's name.
    public var operation: String?
    /// `tags`: each key's value, compared as text, on the span's tags, its process's tags or a log field.
    public var tags: [String: String] = [:]
    /// `start`, Unix microseconds: the span starts at or after it.
    public var startMinMicros: UInt64?
    /// `end`, Unix microseconds: the span starts at or before it.
    public var startMaxMicros: UInt64?
    /// `minDuration`, nanoseconds.
    public var durationMinNanos: UInt64?
    /// `maxDuration`, nanoseconds.
    public var durationMaxNanos: UInt64?
    /// `traceID` (repeatable): these traces, whatever the other conditions.
    public var traceIDs: [TraceID] = []
    /// `limit`: at most this many traces. Jaeger's default is 100.
    public var limit = 100

    /// A query with no conditions.
    public init() {}

    func matches(_ stored: TraceStore.StoredSpan, in trace: TraceStore.StoredTrace) -> Bool {
        let span = stored.span
        let process = trace.processes[stored.process]
        if let service, process.serviceName != service { return false }
        if let operation, span.operationName != operation { return false }
        let startMicros = span.startTimeUnixNano / 1000
        if let startMinMicros, startMicros < startMinMicros { return false }
        if let startMaxMicros, startMicros > startMaxMicros { return false }
        if let durationMinNanos, span.durationNanos < durationMinNanos { return false }
        if let durationMaxNanos, span.durationNanos > durationMaxNanos { return false }
        for (key, value) in tags {
            let found = span.tags.contains { $0.key == key && Self.text($0.value) == value }
                || process.tags.contains { $0.key == key && Self.text($0.value) == value }
                || span.logs.contains { $0.fields.contains { $0.key == key && Self.text($0.value) == value } }
            if !found { return false }
        }
        return true
    }

    /// A tag's value as text, as Jaeger compares it: `true`, `42`, `0.5`, binary as lowercase hex.
    static func text(_ value: JaegerTagValue) -> String {
        switch value {
        case .string(let text): text
        case .bool(let flag): flag ? "true" : "false"
        case .int64(let integer): String(integer)
        case .float64(let real): real == real.rounded() && abs(real) < 1e15 ? String(Int64(real)) : String(real)
        case .binary(let bytes): String(decoding: bytes.flatMap { [HexDigit.lowercase[Int($0 >> 4)], HexDigit.lowercase[Int($0 & 15)]] }, as: UTF8.self)
        }
    }
}
