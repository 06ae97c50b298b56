import Alerting
import Foundation
import HTTP2
import Logging
import NIOCore
import NIOPosix
import Exporters
import Pipeline
import Processors
import Receivers
import ServerSupport
import ServiceGraph
import ServiceLifecycle
import Synchronization
import TraceModel
import TraceWire

/// One built traces pipeline.
public struct BuiltPipeline: Sendable {
    public var name: String
    public var queue: BoundedBatchQueue
    public var runner: PipelineRunner
}

/// Offers each batch to several pipelines (a receiver shared by pipelines). Refused when any is full.
struct FanOutSink: BatchSink {
    let sinks: [any BatchSink]

    func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome {
        var all = true
        var pending: [EventLoopFuture<Bool>] = []
        for sink in sinks {
            switch sink.offer(batch, on: eventLoop) {
            case .accepted: break
            case .refused: all = false
            case .pending(let taken): pending.append(taken)
            }
        }
        guard !pending.isEmpty else { return OfferOutcome(taken: all) }
        return .pending(EventLoopFuture.whenAllSucceed(pending, on: eventLoop).map { all && $0.allSatisfy { $0 } })
    }

    var isFull: Bool { sinks.contains { $0.isFull } }

    var waitWhenFull: Duration { sinks.map(\.waitWhenFull).max() ?? .zero }

    /// Room in every pipeline, one after the other.
    func waitForRoom(bytes: Int, until deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        sinks.reduce(eventLoop.makeSucceededFuture(true)) { room, sink in
            room.flatMap { $0 ? sink.waitForRoom(bytes: bytes, until: deadline, on: eventLoop) : eventLoop.makeSucceededFuture(false) }
        }
    }
}

/// Lines on standard output that tell scripts and tests where the collector listens and when it is ready.
public struct StartupAnnouncer: Sendable {
    private let write: @Sendable (String) -> Void

    public init(write: @escaping @Sendable (String) -> Void = { line in
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }) {
        self.write = write
    }

    func listening(receiver: String, protocolName: String, address: String) {
        write("agenttrace: listening receiver=\(receiver) protocol=\(protocolName) address=\(address)")
    }

    func listeningAdmin(address: String) {
        write("agenttrace: listening admin address=\(address)")
    }

    func ready() {
        write("agenttrace: ready")
    }
}

/// Listeners bound so far.
final class BoundListeners: Sendable {
    let count = Atomic<Int>(0)
}

/// Builds the components a configuration names and runs them as one service group.
public final class Collector: Sendable {
    public let configuration: CollectorConfiguration
    public let metrics: SelfMetrics
    public let pipelines: [BuiltPipeline]
    /// Resources the components share (the alert log, …).
    public let shared: SharedResources
    /// The processors and exporters (and shared resources) that are `Service`s (alert delivery, …), run
    /// between the admin API and the pipelines: started before the pipelines, shut down after they drained.
    private let componentServices: [any Service]
    private let receiverServices: [any Service]
    /// Every processor and exporter, once each, in configuration order.
    private let components: [(id: ComponentID, component: any Sendable)]
    private let pipelineServices: [PipelineService]
    private let admin: HTTP1Server
    /// Samples resident memory when `service: memory_limiter:` is set.
    public let memoryLimiter: MemoryLimiter?
    private let listenersExpected: Int
    private let listenersBound: BoundListeners
    private let announcer: StartupAnnouncer
    private let logger: Logger

    /// Builds everything; configuration mistakes fail here, all of them at once (those `configuration`
    /// carries in `problems` first), each naming its key.
    public init(configuration: CollectorConfiguration, registry: ComponentRegistry = .standard(), metrics: SelfMetrics = SelfMetrics(),
                logger: Logger, announcer: StartupAnnouncer = StartupAnnouncer(),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.configuration = configuration
        self.metrics = metrics
        let shared = SharedResources()
        self.shared = shared
        self.logger = logger
        self.announcer = announcer
        var problems = ConfigurationProblems(configuration.problems)

        // Each exporter once, however many pipelines list it: "multiple pipelines can include the same
        // exporter" (the OpenTelemetry Collector's architecture). They all feed that one instance and its queue.
        var exporters: [ComponentID: ExporterInstance] = [:]
        for (id, value) in configuration.exporters {
            let users = configuration.pipelines.filter { $0.exporters.contains(id) }.count
            guard users > 0 else { continue }
            guard let factory = registry.exporters[id.type] else {
                problems.record(ConfigurationError(key: "exporters.\(id)", "unknown exporter type \"\(id.type)\"; known: \(registry.exporters.keys.sorted().joined(separator: ", "))"))
                continue
            }
            let context = ComponentContext(id: id, logger: logger.with(component: "exporter", id.description), metrics: metrics, shared: shared)
            exporters[id] = problems.build("exporters.\(id)", value) { section in
                ExporterInstance(id: id, exporter: try factory.makeExporter(section: section, context: context), metrics: metrics, pipelines: users)
            }
        }
        var pipelines: [BuiltPipeline] = []
        for pipeline in configuration.pipelines {
            let processors = Self.makeProcessors(pipeline, configuration, registry, metrics, shared, logger, &problems)
            let pipelineExporters = pipeline.exporters.compactMap { exporters[$0] }
            guard let processors, pipelineExporters.count == pipeline.exporters.count else { continue }
            // An exporter with a disk queue makes the pipeline durable: accepted batches are written
            // ahead, next to that queue, before receivers acknowledge them.
            // Its folder is made when the pipeline starts (building touches nothing).
            let durableLog = pipelineExporters.lazy.compactMap(\.exporter.durableStorage).first.map { storage in
                DurableLog.otlp(directory: URL(fileURLWithPath: storage)
                    .appendingPathComponent("pipeline-\(pipeline.name.replacingOccurrences(of: "/", with: "_"))"))
            }
            let queue = BoundedBatchQueue(maxBatches: configuration.queue.maxBatches, maxSpans: configuration.queue.maxSpans,
                                          durableLog: durableLog, waitWhenFull: configuration.queue.waitWhenFull)
            let runner = PipelineRunner(processors: processors, exporters: pipelineExporters, durableLog: durableLog,
                                        logger: logger.with(component: "pipeline", pipeline.name))
            pipelines.append(BuiltPipeline(name: pipeline.name, queue: queue, runner: runner))
        }

        // Each receiver once, feeding every pipeline that lists it ("the same receiver can be included in
        // multiple pipelines"): it offers each batch to all of their queues.
        var receiverServices: [any Service] = []
        let usedReceivers = configuration.receivers.filter { declared in
            configuration.pipelines.contains { $0.receivers.contains(declared.id) }
        }
        let listenersBound = BoundListeners()
        let memoryLimiter = configuration.memoryLimiter.map {
            MemoryLimiter(configuration: $0, metrics: metrics, releaseFreedMemory: NativeMemory.releaseFreeMemory)
        }
        for (id, value) in usedReceivers {
            let sinks = pipelines.filter { built in
                configuration.pipelines.contains { $0.name == built.name && $0.receivers.contains(id) }
            }.map { $0.queue as any BatchSink }
            let context = ComponentContext(id: id, logger: logger.with(component: "receiver", id.description), metrics: metrics,
                                           shared: shared) { protocolName, address in
                announcer.listening(receiver: id.description, protocolName: protocolName, address: address)
                listenersBound.count.add(1, ordering: .relaxed)
            }
            var sink: any BatchSink = sinks.count == 1 ? sinks[0] : FanOutSink(sinks: sinks)
            if let memoryLimiter { sink = MemoryLimitedSink(inner: sink, limiter: memoryLimiter) }
            guard let factory = registry.receivers[id.type] else {
                problems.record(ConfigurationError(key: "receivers.\(id)", "unknown receiver type \"\(id.type)\"; known: \(registry.receivers.keys.sorted().joined(separator: ", "))"))
                continue
            }
            receiverServices += problems.build("receivers.\(id)", value) { section in
                try factory.makeReceiver(section: section, context: context, sink: sink)
            } ?? []
        }
        let adminTLS = problems.check("service.admin.tls") {
            try configuration.adminTLS.map { try TLSServer(configuration: $0, alpn: ["http/1.1"]) }
        } ?? nil
        try problems.finish()

        self.pipelines = pipelines
        self.listenersBound = listenersBound
        self.memoryLimiter = memoryLimiter
        self.receiverServices = receiverServices
        // Each component once (an exporter may serve several pipelines), in configuration order.
        let processorInstances = pipelines.flatMap(\.runner.processors)
        let exporterInstances = configuration.exporters.compactMap { exporters[$0.id] }
        let components: [(kind: String, id: ComponentID, component: any Sendable)] =
            processorInstances.map { ("processor", $0.id, $0.processor) } + exporterInstances.map { ("exporter", $0.id, $0.exporter) }
        self.components = components.map { ($0.id, $0.component) }
        componentServices = components.compactMap { $0.component as? any Service } + shared.all.compactMap { $0 as? any Service }
        let routes = components.flatMap { component in
            (component.component as? any AdminRouteProvider)?.adminRoutes.map {
                AdminRouteEntry(kind: component.kind, id: component.id.description, route: $0)
            } ?? []
        } + shared.all.flatMap { resource in
            (resource as? any AdminRouteProvider)?.adminRoutes.map { AdminRouteEntry(kind: nil, id: "\(type(of: resource))", route: $0) } ?? []
        }
        let pipelineServices = pipelines.map {
            PipelineService(name: $0.name, queue: $0.queue, runner: $0.runner, metrics: metrics,
                            logger: logger.with(component: "pipeline", $0.name))
        }
        self.pipelineServices = pipelineServices
        let expected = receiverServices.count + 1
        listenersExpected = expected
        let adminResponder = AdminResponder(metrics: metrics, routes: routes, tokens: configuration.adminAuth.map(BearerTokens.init)) {
            listenersBound.count.load(ordering: .relaxed) >= expected && pipelineServices.allSatisfy(\.isStarted)
        }
        let adminEvents = ConnectionEvents.counting(metrics: metrics, labels: [("receiver", "admin"), ("transport", "http")])
        admin = HTTP1Server(endpoint: configuration.adminEndpoint, responder: adminResponder, group: group,
                            limits: configuration.adminLimits, events: adminEvents,
                            configureTransport: adminTLS?.configureTransport(events: adminEvents),
                            logger: logger.with(component: "admin", "admin"), name: "service.admin") { address in
            announcer.listeningAdmin(address: address)
            listenersBound.count.add(1, ordering: .relaxed)
        }
    }

    /// The processors and exporters of type `Component`, in configuration order (`service_graph` for
    /// `replay --graph-out`, tests).
    public func components<Component>(_ type: Component.Type) -> [Component] {
        components.compactMap { $0.component as? Component }
    }

    /// True once every listener is bound and every exporter started.
    public var isReady: Bool {
        listenersBound.count.load(ordering: .relaxed) >= listenersExpected && pipelineServices.allSatisfy(\.isStarted)
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully: receivers stop accepting first,
    /// pipelines drain and flush, exporters finish, alert delivery sends what the pipelines' last spans
    /// fired, the admin API closes last.
    ///
    /// Every listener is bound before anything starts: when one cannot bind, those bound before it are
    /// closed without having accepted a connection, no exporter or pipeline has started, and the
    /// `ListenError` names the listener, its address and the cause.
    public func run() async throws {
        try await bindListeners()
        // Shutdown goes in reverse order of this list.
        let services: [any Service] = [admin] + (memoryLimiter.map { [$0] } ?? []) + componentServices
            + pipelineServices.map { $0 as any Service } + receiverServices
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                                           failureTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Past the deadline whatever still runs is cancelled: exporters stop retrying, and what a durable
        // pipeline holds stays on disk for the next start.
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)
        try await withThrowingDiscardingTaskGroup { tasks in
            tasks.addTask { [self] in
                while !isReady {
                    try await Task.sleep(for: .milliseconds(5))
                }
                announcer.ready()
                logger.info("ready")
            }
            try await group.run()
            tasks.cancelAll()
        }
    }

    /// Binds the receivers' listeners, then the admin API's; on the first failure closes what was bound.
    func bindListeners() async throws(ListenError) {
        var bound: [any Listener] = []
        for listener in receiverServices.compactMap({ $0 as? any Listener }) + [admin as any Listener] {
            do throws(ListenError) {
                try await listener.bind()
                bound.append(listener)
            } catch {
                for other in bound { await other.closeUnserved() }
                throw error
            }
        }
    }

    /// The pipeline's processors, one instance each for this pipeline (as in the Collector, processors are
    /// never shared); every one is built, so all their mistakes are recorded.
    private static func makeProcessors(_ pipeline: CollectorConfiguration.PipelineConfiguration, _ configuration: CollectorConfiguration,
                                       _ registry: ComponentRegistry, _ metrics: SelfMetrics, _ shared: SharedResources, _ logger: Logger,
                                       _ problems: inout ConfigurationProblems) -> [ProcessorInstance]? {
        var built: [ProcessorInstance] = []
        var failed = false
        for id in pipeline.processors {
            guard let value = configuration.processors.first(where: { $0.id == id })?.value else {
                problems.record(ConfigurationError(key: "service.pipelines.\(pipeline.name).processors", "\(id) is not declared"))
                failed = true
                continue
            }
            guard let factory = registry.processors[id.type] else {
                problems.record(ConfigurationError(key: "processors.\(id)", "unknown processor type \"\(id.type)\"; known: \(registry.processors.keys.sorted().joined(separator: ", "))"))
                failed = true
                continue
            }
            let context = ComponentContext(id: id, logger: logger.with(component: "processor", id.description), metrics: metrics,
                                           shared: shared)
            let instance = problems.build("processors.\(id)", value) { section in
                ProcessorInstance(id: id, processor: try factory.makeProcessor(section: section, context: context))
            }
            if let instance { built.append(instance) } else { failed = true }
        }
        return failed ? nil : built
    }

}

extension Logger {
    /// A copy with the component's kind and name as metadata.
    func with(component kind: String, _ name: String) -> Logger {
        var copy = self
        copy[metadataKey: kind] = "\(name)"
        return copy
    }
}
