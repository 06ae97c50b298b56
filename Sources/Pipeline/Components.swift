import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import TraceModel

/// The name of a configured component instance: its type and an optional suffix (`zipkin/backup`).
public struct ComponentID: Sendable, Hashable, CustomStringConvertible {
    /// The component type, which picks the factory (`zipkin`).
    public var type: String
    /// The instance name after the slash; empty when there is none.
    public var name: String

    /// Parses `type` or `type/name`.
    public init(_ text: String) {
        if let slash = text.firstIndex(of: "/") {
            type = String(text[..<slash])
            name = String(text[text.index(after: slash)...])
        } else {
            type = text
            name = ""
        }
    }

    public var description: String { name.isEmpty ? type : "\(type)/\(name)" }
}

/// What every component factory gets besides its own configuration.
public struct ComponentContext: Sendable {
    /// The instance being built.
    public var id: ComponentID
    /// A logger labelled with the component.
    public var logger: Logger
    /// The collector's own metrics.
    public var metrics: SelfMetrics
    /// Resources the collector's components share (`SharedResources`).
    public var shared: SharedResources
    /// Receivers call this once a listener is bound: the protocol (`http`) and the bound `host:port`.
    public var announceListening: @Sendable (_ protocolName: String, _ address: String) -> Void

    /// What a factory gets; `shared` defaults to resources of this component's own (tests, tools).
    public init(id: ComponentID, logger: Logger, metrics: SelfMetrics, shared: SharedResources = SharedResources(),
                announceListening: @escaping @Sendable (String, String) -> Void = { _, _ in }) {
        self.id = id
        self.logger = logger
        self.metrics = metrics
        self.shared = shared
        self.announceListening = announceListening
    }
}

/// Builds receivers of one type from configuration.
public protocol ReceiverFactory: Sendable {
    /// The type name used in configuration (`otlp`).
    var type: String { get }
    /// Builds the receiver's listeners, one service each, feeding `sink`; reads its settings from
    /// `section` and must call `section.finish()`.
    func makeReceiver(section: ConfigSection, context: ComponentContext, sink: any BatchSink) throws -> [any Service]
}

/// Hands accepted batches to the pipeline. Receivers call it from event-loop threads, so it never blocks.
public protocol BatchSink: Sendable {
    /// Offers a batch, from `eventLoop`'s thread or a thread of the caller's own; `.refused` when the
    /// pipeline is full and the sender should retry later. A durable pipeline answers `.pending`: the
    /// batch is being written ahead, off the event loop, and the future (on `eventLoop`) says whether
    /// it was taken.
    func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome
    /// True when an offer would be refused now: receivers then wait for room, or answer "retry later"
    /// before spending time decoding a request that cannot be taken.
    var isFull: Bool { get }
    /// How long receivers hold a request for room while the sink is full before answering "retry later";
    /// zero refuses at once.
    var waitWhenFull: Duration { get }
    /// Completes on `eventLoop` with true once there may be room (the offer that follows can still find it
    /// taken, and then waits again), false at `deadline`, when the sink closes, or when requests of too
    /// many `bytes` wait already.
    func waitForRoom(bytes: Int, until deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<Bool>
}

extension BatchSink {
    public var isFull: Bool { false }
    public var waitWhenFull: Duration { .zero }
    public func waitForRoom(bytes: Int, until deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        eventLoop.makeSucceededFuture(!isFull)
    }
}

/// What became of an offer.
public enum OfferOutcome: Sendable {
    /// Taken.
    case accepted
    /// Not taken: the sender should retry later.
    case refused
    /// Being made durable; true once taken.
    case pending(EventLoopFuture<Bool>)

    /// `accepted` when `taken`, else `refused`.
    public init(taken: Bool) {
        self = taken ? .accepted : .refused
    }

    /// The outcome as a future on `eventLoop`.
    public func future(on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        switch self {
        case .accepted: eventLoop.makeSucceededFuture(true)
        case .refused: eventLoop.makeSucceededFuture(false)
        case .pending(let taken): taken
        }
    }
}

/// Something that transforms, holds back or observes batches. The pipeline calls one processor from one
/// task at a time, in order, so results come back as data rather than through callbacks, and a virtual
/// clock (replay) or the wall clock can drive it the same way.
///
/// A processor or exporter may also be a swift-service-lifecycle `Service` (run with the collector:
/// started before the pipelines, shut down after they drained) and an `AdminRouteProvider`.
public protocol SpanProcessor: AnyObject, Sendable {
    /// Handles a batch arriving at `now` (Unix nanoseconds); returns what passes on, possibly nothing.
    func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch]
    /// Lets time pass; returns what became due (a batch timeout, a sampling decision).
    func tick(now: UInt64) -> [SpanBatch]
    /// Returns everything still held, at shutdown.
    func flush() -> [SpanBatch]
    /// The `now` of the `process` call that handed over the oldest span this processor still holds to
    /// pass on later; nil when it holds none (a processor that only transforms, drops or observes).
    /// Required, with no default: a durable pipeline keeps the write-ahead-log records of whatever a
    /// processor may still hold by this answer alone (`DurableLedger`).
    var oldestHeldArrival: UInt64? { get }
}

extension SpanProcessor {
    public func tick(now: UInt64) -> [SpanBatch] { [] }
    public func flush() -> [SpanBatch] { [] }
}

/// A processor that hands its work to threads of its own, holding a bounded amount: the pipeline awaits
/// `waitForRoom()` before each `process` and `tick`, and `drain()` before `flush()`, so it waits for the
/// processor without blocking a thread it does not own.
public protocol HandOffSpanProcessor: SpanProcessor {
    /// Returns once the processor can take one more batch (or tick) without going past its bound.
    func waitForRoom() async
    /// Returns once everything handed over so far has been done.
    func drain() async
}

/// Sends batches out of the collector.
public protocol SpanExporter: Sendable {
    /// Prepares (opens files, connects); called once before the first export.
    func start() async throws
    /// Sends one batch. Throwing counts the batch's spans as failed.
    func export(_ batch: SpanBatch) async throws
    /// Flushes and releases resources; called once after the last export.
    func shutdown() async
    /// Exporters that deliver later, behind a queue, or that learn from the backend which spans it
    /// rejected, keep `reporter` and count sent and failed spans themselves, returning true; for the others the pipeline counts a batch as sent when `export` returns.
    func reportsDelivery(to reporter: DeliveryReporter) -> Bool
    /// The folder of the exporter's disk queue, when it has one: the pipeline then writes accepted
    /// batches ahead to disk too, before receivers acknowledge them.
    var durableStorage: String? { get }
}

extension SpanExporter {
    public func reportsDelivery(to reporter: DeliveryReporter) -> Bool { false }
    public var durableStorage: String? { nil }
}

/// Counts an exporter's delivered and failed spans, in /metrics and in a readable tally.
public struct DeliveryReporter: Sendable {
    let sentSpans: Counter
    let failedSpans: Counter
    let tally: ExportTally

    public init(sentSpans: Counter, failedSpans: Counter, tally: ExportTally) {
        self.sentSpans = sentSpans
        self.failedSpans = failedSpans
        self.tally = tally
    }

    /// `spans` reached the backend.
    public func delivered(_ spans: Int) {
        sentSpans.increment(by: Int64(spans))
        tally.sent.add(spans, ordering: .relaxed)
    }

    /// `spans` were given up on.
    public func failed(_ spans: Int) {
        failedSpans.increment(by: Int64(spans))
        tally.failed.add(spans, ordering: .relaxed)
    }
}

/// Builds processors of one type from configuration.
public protocol ProcessorFactory: Sendable {
    /// The type name used in configuration (`batch`).
    var type: String { get }
    /// Builds an instance; reads its settings from `section` and must call `section.finish()`.
    func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor
}

/// Builds exporters of one type from configuration.
public protocol ExporterFactory: Sendable {
    /// The type name used in configuration (`file`).
    var type: String { get }
    /// Builds an instance; reads its settings from `section` and must call `section.finish()`.
    func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter
}
