import Foundation
import Logging
import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// The routing tier: sends each span to the backend its trace (or service) hashes to on a consistent-hashing
/// ring, so every span of a trace reaches the same tail sampler and service graph, as the OpenTelemetry
/// Collector's loadbalancing exporter does. Each backend is an otlp exporter with its own bounded, retrying
/// (optionally persistent) queue; a backend that fails is retried as the otlp exporter retries. When the
/// resolver drops a backend, what its queue still holds is taken back and routed again on the new ring.
public final class LoadBalancingExporter: SpanExporter {
    /// Makes the exporter for the backend at `host:port` (tests give a fake sender).
    public typealias BackendFactory = @Sendable (_ address: String) throws -> QueuedExporter

    /// The ring and the exporter of each backend on it, swapped together.
    struct Routing {
        var ring = HashRing(backends: [])
        var backends: [String: QueuedExporter] = [:]
    }

    private let id: ComponentID
    private let routingKey: LoadBalancingConfiguration.RoutingKey
    private let resolver: any BackendResolver
    private let makeBackend: BackendFactory
    private let storage: String?
    private let logger: Logger
    private let routing = Mutex(Routing())
    private let reporter = Mutex<DeliveryReporter?>(nil)
    private let resolving = Mutex<Task<Void, Never>?>(nil)
    /// Ring changes, one at a time (the first resolution and the resolver's loop).
    private let updates = RingUpdates()
    private let backendCount: Gauge
    private let resolutions: (succeeded: Counter, failed: Counter)
    private let backendUpdates: Counter
    private let reroutedSpans: Counter

    /// An exporter routing over the backends `resolver` names, each made by `makeBackend`; `storage` is the
    /// disk queue's folder when there is one (the pipeline then writes ahead too).
    public init(id: ComponentID, routingKey: LoadBalancingConfiguration.RoutingKey, resolver: any BackendResolver,
                storage: String? = nil, metrics: SelfMetrics, logger: Logger, makeBackend: @escaping BackendFactory) {
        self.id = id
        self.routingKey = routingKey
        self.resolver = resolver
        self.storage = storage
        self.logger = logger
        self.makeBackend = makeBackend
        let labels = [("exporter", id.description)]
        backendCount = metrics.gauge("agenttrace_loadbalancer_backends", help: "Backends on the loadbalancing exporter's ring.", labels: labels)
        let resolutionsHelp = "Resolutions of the loadbalancing exporter's backends, by outcome."
        resolutions = (metrics.counter("agenttrace_loadbalancer_resolutions_total", help: resolutionsHelp, labels: labels + [("success", "true")]),
                       metrics.counter("agenttrace_loadbalancer_resolutions_total", help: resolutionsHelp, labels: labels + [("success", "false")]))
        backendUpdates = metrics.counter("agenttrace_loadbalancer_backend_updates_total",
                                         help: "Resolutions that changed the loadbalancing exporter's ring.", labels: labels)
        reroutedSpans = metrics.counter("agenttrace_loadbalancer_rerouted_spans_total",
                                        help: "Queued spans of a dropped backend sent again on the new ring.", labels: labels)
    }

    /// Builds the exporter `configuration` describes.
    public convenience init(id: ComponentID, configuration: LoadBalancingConfiguration, metrics: SelfMetrics, logger: Logger,
                            resolver: (any BackendResolver)? = nil) {
        let template = configuration.otlp
        let storage = template.common.queue.enabled ? template.common.queue.storage : nil
        let chosen: any BackendResolver = resolver ?? {
            switch configuration.resolver {
            case .fixed(let hostnames): StaticBackendResolver(hostnames: hostnames)
            case .dns(let hostname, let port, let interval, let timeout):
                DNSBackendResolver(hostname: hostname, port: port, interval: interval, timeout: timeout)
            }
        }()
        self.init(id: id, routingKey: configuration.routingKey, resolver: chosen, storage: storage, metrics: metrics,
                  logger: logger) { address in
            let backend = template.forBackend(address)
            var queue = backend.common.queue
            // Each backend's disk queue in a folder of its own, named after its address.
            queue.storage = queue.storage.map { URL(fileURLWithPath: $0).appendingPathComponent(Self.folderName(address)).path }
            return QueuedExporter(id: ComponentID("\(id)/\(address)"), sender: try OTLPExporterFactory.makeSender(backend),
                                  queue: queue, retry: backend.common.retry, metrics: metrics, logger: logger)
        }
    }

    /// `backend-10.0.0.7_4317` for `10.0.0.7:4317`.
    static func folderName(_ address: String) -> String {
        "backend-" + String(address.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
    }

    public var durableStorage: String? { storage }

    public func reportsDelivery(to reporter: DeliveryReporter) -> Bool {
        self.reporter.withLock { $0 = reporter }
        return true
    }

    /// The backends on the ring now, sorted.
    public var backends: [String] { routing.withLock { $0.ring.backends } }

    public func start() async throws {
        await resolveOnce()
        try await recoverOrphanedQueues()
        guard let interval = resolver.interval else { return }
        let task = Task { [self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: interval) } catch { return }
                await resolveOnce()
            }
        }
        resolving.withLock { $0 = task }
    }

    /// With disk queues: the queues an earlier run left for backends that are not on the ring now (the
    /// resolver's answer changed while the router was down) are sent on the ring there is, then removed, so
    /// what that run acknowledged is not stranded in a folder nobody reads.
    func recoverOrphanedQueues() async throws {
        guard let storage else { return }
        let root = URL(fileURLWithPath: storage)
        let onRing = Set(backends.map(Self.folderName))
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        for folder in folders.sorted() where folder.hasPrefix("backend-") && !onRing.contains(folder) {
            let log = DurableLog.otlp(directory: root.appendingPathComponent(folder))
            let recovered = try await log.open()
            var spans = 0
            for (sequence, batch) in recovered {
                do {
                    try await export(batch)
                } catch {
                    // Kept on disk for the next start; the rest still go.
                    logger.warning("cannot route a batch left queued for a backend no longer resolved",
                                   metadata: ["exporter": "\(id)", "queue": "\(folder)", "error": "\(error)"])
                    continue
                }
                await log.remove(sequence)
                spans += batch.spanCount
            }
            await log.close()
            if spans > 0 {
                reroutedSpans.increment(by: Int64(spans))
                logger.info("routed what an earlier run left queued for a backend no longer resolved",
                            metadata: ["exporter": "\(id)", "queue": "\(folder)", "spans": "\(spans)"])
            }
        }
    }

    /// Asks the resolver and applies its answer; a failure keeps the backends there are.
    func resolveOnce() async {
        do {
            let found = try await resolver.resolve()
            resolutions.succeeded.increment()
            await apply(found)
        } catch {
            resolutions.failed.increment()
            logger.warning("cannot resolve the backends; keeping the current ones",
                           metadata: ["exporter": "\(id)", "error": "\(error)", "backends": "\(backends.count)"])
        }
    }

    /// Makes `addresses` the ring: new backends are started, and the queued batches of dropped ones are
    /// taken back and routed again on the new ring before those are shut down.
    func apply(_ addresses: [String]) async {
        await updates.oneAtATime {
            let ring = HashRing(backends: addresses)
            let current = routing.withLock { $0 }
            guard ring != current.ring else { return }
            var added: [String: QueuedExporter] = [:]
            for address in ring.backends where current.backends[address] == nil {
                do {
                    let backend = try makeBackend(address)
                    if let reporter = reporter.withLock({ $0 }) { _ = backend.reportsDelivery(to: reporter) }
                    try await backend.start()
                    added[address] = backend
                } catch {
                    logger.error("cannot start a backend; leaving it off the ring",
                                 metadata: ["exporter": "\(id)", "backend": "\(address)", "error": "\(error)"])
                }
            }
            let kept = ring.backends.filter { current.backends[$0] != nil || added[$0] != nil }
            let removed = current.backends.filter { !kept.contains($0.key) }
            routing.withLock { routing in
                routing.ring = kept.count == ring.backends.count ? ring : HashRing(backends: kept)
                routing.backends = routing.backends.filter { kept.contains($0.key) }.merging(added) { old, _ in old }
            }
            backendCount.set(Double(kept.count))
            backendUpdates.increment()
            logger.info("backends changed", metadata: ["exporter": "\(id)", "backends": "\(kept.joined(separator: ","))",
                                                       "added": "\(added.count)", "removed": "\(removed.count)"])
            for (address, backend) in removed {
                let batches = await backend.withdraw()
                var spans = 0
                for batch in batches {
                    do {
                        try await export(batch)
                        spans += batch.spanCount
                    } catch {
                        reporter.withLock { $0 }?.failed(batch.spanCount)
                        logger.warning("cannot re-route a dropped backend's batch",
                                       metadata: ["exporter": "\(id)", "backend": "\(address)", "error": "\(error)"])
                    }
                }
                reroutedSpans.increment(by: Int64(spans))
                await backend.forgetWithdrawn()
                await backend.shutdown()
                // Pod addresses come and go: a dropped backend's series go with it.
                backend.removeMetrics()
            }
        }
    }

    public func export(_ batch: SpanBatch) async throws {
        var pending = [batch]
        // A part whose backend left the ring while it was being queued is routed again on the new ring;
        // a ring that keeps changing under one batch gives up after a few rounds.
        for _ in 0..<4 {
            let current = routing.withLock { $0 }
            guard !current.ring.isEmpty else { throw ExportError.retryable("no backend is resolved yet") }
            var left: [SpanBatch] = []
            for part in pending {
                for (address, piece) in Self.split(part, by: routingKey, on: current.ring) {
                    guard let backend = current.backends[address] else { left.append(piece); continue }
                    do {
                        try await backend.export(piece)
                    } catch {
                        guard routing.withLock({ $0.backends[address] == nil }) else { throw error }
                        left.append(piece)
                    }
                }
            }
            guard !left.isEmpty else { return }
            pending = left
        }
        throw ExportError.retryable("the backends kept changing while a batch was routed")
    }

    public func shutdown() async {
        resolving.withLock { $0 }?.cancel()
        await resolving.withLock { $0 }?.value
        let backends = routing.withLock { routing in
            defer { routing = Routing() }
            return Array(routing.backends.values)
        }
        await withDiscardingTaskGroup { group in
            for backend in backends { group.addTask { await backend.shutdown() } }
        }
    }

    /// `batch` in one part per backend, each span with its resource and scope; parts in the order their
    /// first span came. By trace id, every span of a trace is in one part; by service, every resource.
    public static func split(_ batch: SpanBatch, by key: LoadBalancingConfiguration.RoutingKey,
                             on ring: HashRing) -> [(backend: String, batch: SpanBatch)] {
        var order: [String] = []
        var parts: [String: SpanBatch] = [:]
        func add(_ resourceSpans: ResourceSpans, to backend: String) {
            if parts[backend] == nil {
                order.append(backend)
                parts[backend] = SpanBatch()
            }
            parts[backend]?.resourceSpans.append(resourceSpans)
        }
        for resourceSpans in batch.resourceSpans {
            switch key {
            case .service:
                guard let backend = ring.backend(forService: resourceSpans.resource.serviceName ?? "") else { continue }
                add(resourceSpans, to: backend)
            case .traceID:
                // This resource's spans, by backend, keeping scopes.
                var byBackend: [String: ResourceSpans] = [:]
                var localOrder: [String] = []
                for scopeSpans in resourceSpans.scopeSpans {
                    var scoped: [String: ScopeSpans] = [:]
                    var scopeOrder: [String] = []
                    for span in scopeSpans.spans {
                        guard let backend = ring.backend(for: span.traceID) else { continue }
                        if scoped[backend] == nil {
                            scopeOrder.append(backend)
                            scoped[backend] = ScopeSpans(scope: scopeSpans.scope, spans: [], schemaURL: scopeSpans.schemaURL)
                        }
                        scoped[backend]?.spans.append(span)
                    }
                    for backend in scopeOrder {
                        if byBackend[backend] == nil {
                            localOrder.append(backend)
                            byBackend[backend] = ResourceSpans(resource: resourceSpans.resource, scopeSpans: [],
                                                               schemaURL: resourceSpans.schemaURL)
                        }
                        if let scopeSpans = scoped[backend] { byBackend[backend]?.scopeSpans.append(scopeSpans) }
                    }
                }
                for backend in localOrder {
                    if let part = byBackend[backend] { add(part, to: backend) }
                }
            }
        }
        return order.compactMap { backend in parts[backend].map { (backend, $0) } }
    }
}

/// Runs ring changes one after another (the first resolution and the resolver's loop may overlap).
actor RingUpdates {
    private var running = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func oneAtATime(_ body: @Sendable () async -> Void) async {
        while running { await withCheckedContinuation { waiting.append($0) } }
        running = true
        await body()
        running = false
        if !waiting.isEmpty { waiting.removeFirst().resume() }
    }
}

/// Builds `loadbalancing` exporters.
public struct LoadBalancingExporterFactory: ExporterFactory {
    /// `loadbalancing`, the Collector's name.
    public let type = "loadbalancing"

    /// The factory.
    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        let configuration = try LoadBalancingConfiguration(section: section)
        // TLS settings are read now, not at the first resolution (building makes no connection).
        _ = try configuration.otlp.common.tls?.configuration(alpn: ["h2"])
        return LoadBalancingExporter(id: context.id, configuration: configuration, metrics: context.metrics, logger: context.logger)
    }
}
