import ConfigYAML
import Foundation
import Logging
import Pipeline
import Synchronization
import Testing
import TestSupport
import TraceModel
@testable import Exporters

/// Trace ids spread over the whole id space, reproducibly.
private func traceIDs(_ count: Int, seed: UInt64 = 7) -> [TraceID] {
    var random = SplitMix64(seed: seed)
    return (0..<count).map { _ in TraceID(high: random.next(), low: random.next()) }
}

/// A batch of `spansPerTrace` spans for each trace, interleaved, under two resources and two scopes.
private func interleaved(_ traces: [TraceID], spansPerTrace: Int) -> SpanBatch {
    var resources: [ResourceSpans] = []
    for (resourceIndex, service) in ["planner", "tools"].enumerated() {
        var scopes: [ScopeSpans] = []
        for scopeName in ["a", "b"] {
            var spans: [Span] = []
            for round in 0..<spansPerTrace {
                for trace in traces {
                    spans.append(Span(traceID: trace, spanID: SpanID(UInt64(resourceIndex * 1_000_000 + round * 10_000 + spans.count + 1))))
                }
            }
            scopes.append(ScopeSpans(scope: InstrumentationScope(name: scopeName), spans: spans))
        }
        resources.append(ResourceSpans(resource: Resource(attributes: [Attribute("service.name", .string(service))]), scopeSpans: scopes))
    }
    return SpanBatch(resourceSpans: resources)
}

/// A backend double recording what it was sent; `down` answers retryably.
final class RecordingBackend: BatchSender {
    let address: String
    let down = Atomic<Bool>(false)
    let received = Mutex<[SpanBatch]>([])

    init(address: String) { self.address = address }

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        if down.load(ordering: .sequentiallyConsistent) { throw .retryable("\(address) is down") }
        received.withLock { $0.append(payload.batch) }
        return .accepted
    }

    func shutdown() async {}

    var spans: [Span] {
        received.withLock { batches in
            var spans: [Span] = []
            for batch in batches { batch.forEachSpan { span, _, _ in spans.append(span) } }
            return spans
        }
    }
}

/// A resolver whose answer the test changes.
final class ScriptedResolver: BackendResolver {
    let answer: Mutex<[String]>
    let interval: Duration?
    init(_ answer: [String], interval: Duration? = nil) {
        self.answer = Mutex(answer)
        self.interval = interval
    }
    func resolve() async throws -> [String] { answer.withLock { $0 } }
}

/// The recording backends a test's exporter made, by address.
final class MadeBackends: Sendable {
    let backends = Mutex<[String: RecordingBackend]>([:])
    func all() -> [String: RecordingBackend] { backends.withLock { $0 } }
}

/// A loadbalancing exporter over recording backends, each with a fast-retrying queue.
private func makeExporter(_ resolver: any BackendResolver, routingKey: LoadBalancingConfiguration.RoutingKey = .traceID,
                          metrics: SelfMetrics = SelfMetrics(), downAtStart: Set<String> = []) -> (LoadBalancingExporter, MadeBackends) {
    let made = MadeBackends()
    let exporter = LoadBalancingExporter(id: ComponentID("loadbalancing"), routingKey: routingKey, resolver: resolver,
                                         metrics: metrics, logger: Logger(label: "test")) { address in
        let sender = made.backends.withLock { backends in
            if let existing = backends[address] { return existing }
            let sender = RecordingBackend(address: address)
            sender.down.store(downAtStart.contains(address), ordering: .sequentiallyConsistent)
            backends[address] = sender
            return sender
        }
        var queue = QueueConfiguration()
        queue.numConsumers = 2
        return QueuedExporter(id: ComponentID("loadbalancing/\(address)"), sender: sender, queue: queue, retry: fastRetry(),
                              metrics: metrics, logger: Logger(label: "test"), drainDeadline: .seconds(2))
    }
    return (exporter, made)
}

@Suite("loadbalancing exporter: the ring")
struct HashRingTests {
    let keys = traceIDs(20_000)

    @Test("adding a fifth backend moves about 1/5 of the keys, all of them to the new backend")
    func addingMovesOneNth() {
        let before = HashRing(backends: ["r1:4317", "r2:4317", "r3:4317", "r4:4317"])
        let after = HashRing(backends: ["r1:4317", "r2:4317", "r3:4317", "r4:4317", "r5:4317"])
        var moved = 0
        for key in keys {
            let old = before.backend(for: key), new = after.backend(for: key)
            if old != new {
                moved += 1
                // Consistent hashing: a key only moves to the backend that joined.
                #expect(new == "r5:4317")
            }
        }
        // Expected share 1/(N+1) = 20%; with 256 points per backend the arc a backend owns varies by a few percent.
        let share = Double(moved) / Double(keys.count)
        #expect(abs(share - 0.20) < 0.05, "moved \(share)")
    }

    @Test("removing one of five moves exactly the keys it had, about 1/5")
    func removingMovesOnlyItsKeys() {
        let all = HashRing(backends: ["r1:4317", "r2:4317", "r3:4317", "r4:4317", "r5:4317"])
        let fewer = HashRing(backends: ["r1:4317", "r2:4317", "r4:4317", "r5:4317"])
        var moved = 0
        for key in keys {
            let old = all.backend(for: key), new = fewer.backend(for: key)
            #expect((old == new) == (old != "r3:4317"))
            if old != new { moved += 1 }
        }
        #expect(abs(Double(moved) / Double(keys.count) - 0.20) < 0.05)
    }

    @Test("shares are even: each of four backends gets 25% ± 6% of the traces")
    func balanced() {
        let ring = HashRing(backends: ["10.0.0.1:4317", "10.0.0.2:4317", "10.0.0.3:4317", "10.0.0.4:4317"])
        var counts: [String: Int] = [:]
        for key in keys { counts[ring.backend(for: key)!, default: 0] += 1 }
        #expect(counts.count == 4)
        for (_, count) in counts { #expect(abs(Double(count) / Double(keys.count) - 0.25) < 0.06) }
    }

    @Test("the same backends in any order make the same ring; an empty ring has no backend")
    func orderIndependent() {
        let one = HashRing(backends: ["a:1", "b:1", "c:1"]), other = HashRing(backends: ["c:1", "a:1", "b:1", "a:1"])
        #expect(one == other)
        for key in keys.prefix(500) { #expect(one.backend(for: key) == other.backend(for: key)) }
        #expect(HashRing(backends: []).backend(for: keys[0]) == nil)
    }
}

@Suite("loadbalancing exporter: splitting")
struct LoadBalancingSplitTests {
    let ring = HashRing(backends: ["r1:4317", "r2:4317", "r3:4317"])

    @Test("by trace id: every span of a trace is in one part, the part of its backend, with its resource and scope")
    func byTrace() {
        let traces = traceIDs(60)
        let batch = interleaved(traces, spansPerTrace: 3)
        let parts = LoadBalancingExporter.split(batch, by: .traceID, on: ring)
        #expect(parts.count == 3)
        #expect(parts.reduce(0) { $0 + $1.batch.spanCount } == batch.spanCount)
        var partOfTrace: [TraceID: String] = [:]
        for (backend, part) in parts {
            part.forEachSpan { span, resource, scope in
                #expect(ring.backend(for: span.traceID) == backend)
                #expect(partOfTrace.updateValue(backend, forKey: span.traceID) ?? backend == backend)
                // The span keeps the resource and scope it came with (span ids encode the resource).
                #expect((span.spanID.value >= 1_000_000) == (resource.serviceName == "tools"))
                #expect(["a", "b"].contains(scope.name))
            }
        }
        #expect(partOfTrace.count == traces.count)
    }

    @Test("by service: each resource goes whole to its service's backend")
    func byService() {
        let batch = interleaved(traceIDs(10), spansPerTrace: 1)
        let parts = LoadBalancingExporter.split(batch, by: .service, on: ring)
        for (backend, part) in parts {
            for resourceSpans in part.resourceSpans {
                #expect(ring.backend(forService: resourceSpans.resource.serviceName ?? "") == backend)
                #expect(resourceSpans.spanCount == 20)  // 10 traces, one span each, in two scopes
            }
        }
        #expect(parts.reduce(0) { $0 + $1.batch.spanCount } == batch.spanCount)
    }
}

@Suite("loadbalancing exporter: configuration")
struct LoadBalancingConfigurationTests {
    private func configuration(_ yaml: String) throws(ConfigurationError) -> LoadBalancingConfiguration {
        try LoadBalancingConfiguration(section: ConfigSection(ConfigValue.parse(yaml: yaml, environment: [:]), path: "exporters.loadbalancing"))
    }

    private func problem(_ yaml: String) -> String? {
        do {
            _ = try configuration(yaml)
            return nil
        } catch {
            return error.key
        }
    }

    @Test("a Collector block works: defaults are traceID, port 4317, interval 5s, timeout 1s; tls insecure is plaintext")
    func collectorBlock() throws {
        let fixed = try configuration("""
            protocol:
              otlp:
                timeout: 1s
                tls: {insecure_skip_verify: false}
            resolver:
              static:
                hostnames: [backend-1:4317, backend-2, "10.0.0.3:55690"]
            """)
        #expect(fixed.routingKey == .traceID)
        #expect(fixed.resolver == .fixed(hostnames: ["backend-1:4317", "backend-2:4317", "10.0.0.3:55690"]))
        #expect(fixed.otlp.common.timeout == .seconds(1))
        let dns = try configuration("""
            routing_key: service
            protocol: {otlp: {}}
            resolver: {dns: {hostname: replicas.internal}}
            """)
        #expect(dns.routingKey == .service)
        #expect(dns.resolver == .dns(hostname: "replicas.internal", port: 4317, interval: .seconds(5), timeout: .seconds(1)))
        #expect(dns.otlp.forBackend("10.0.0.7:4317").endpoint == "10.0.0.7:4317")
        // The Collector's `tls: {insecure: true}` is a plaintext connection.
        let plaintext = try configuration("protocol: {otlp: {tls: {insecure: true}}}\nresolver: {static: {hostnames: [a]}}\n")
        #expect(plaintext.otlp.common.tls == nil)
        #expect(fixed.otlp.common.tls != nil)
    }

    @Test("mistakes fail fast naming the key")
    func mistakes() {
        let resolver = "resolver: {static: {hostnames: [a:4317]}}\n"
        #expect(problem("routing_key: metric\nprotocol: {otlp: {}}\n" + resolver) == "exporters.loadbalancing.routing_key")
        #expect(problem(resolver) == "exporters.loadbalancing.protocol")
        #expect(problem("protocol: {}\n" + resolver) == "exporters.loadbalancing.protocol.otlp")
        #expect(problem("protocol: {otlp: {endpoint: x:4317}}\n" + resolver) == "exporters.loadbalancing.protocol.otlp.endpoint")
        #expect(problem("protocol: {otlp: {}}\n") == "exporters.loadbalancing.resolver")
        #expect(problem("protocol: {otlp: {}}\nresolver: {}\n") == "exporters.loadbalancing.resolver.static")
        #expect(problem("protocol: {otlp: {}}\nresolver: {static: {hostnames: [a:1]}, dns: {hostname: b}}\n") == "exporters.loadbalancing.resolver.dns")
        #expect(problem("protocol: {otlp: {}}\nresolver: {static: {hostnames: []}}\n") == "exporters.loadbalancing.resolver.static.hostnames")
        #expect(problem("protocol: {otlp: {}}\nresolver: {static: {hostnames: [\"a:x\"]}}\n") == "exporters.loadbalancing.resolver.static.hostnames[0]")
        #expect(problem("protocol: {otlp: {}}\nresolver: {dns: {port: 4317}}\n") == "exporters.loadbalancing.resolver.dns.hostname")
        #expect(problem("protocol: {otlp: {}}\nresolver: {dns: {hostname: b, port: 0}}\n") == "exporters.loadbalancing.resolver.dns.port")
        #expect(problem("protocol: {otlp: {}}\nresolver: {k8s: {service: lb}}\n") == "exporters.loadbalancing.resolver.k8s")
        #expect(problem("protocol: {otlp: {}}\n" + resolver + "extra: 1\n") == "exporters.loadbalancing.extra")
    }
}

@Suite("loadbalancing exporter: routing")
struct LoadBalancingExporterTests {
    @Test("every span reaches the backend its trace hashes to, and no trace is split")
    func routesByTrace() async throws {
        let backends = ["r1:4317", "r2:4317", "r3:4317"]
        let (exporter, made) = makeExporter(StaticBackendResolver(hostnames: backends))
        let metrics = SelfMetrics()
        let (delivery, tally) = reporter(metrics)
        #expect(exporter.reportsDelivery(to: delivery))
        try await exporter.start()
        let traces = traceIDs(90)
        for slice in stride(from: 0, to: traces.count, by: 30) {
            try await exporter.export(interleaved(Array(traces[slice..<slice + 30]), spansPerTrace: 2))
        }
        await exporter.shutdown()
        let ring = HashRing(backends: backends)
        var seen: [TraceID: String] = [:]
        for (address, backend) in made.all() {
            for span in backend.spans {
                #expect(ring.backend(for: span.traceID) == address)
                #expect(seen.updateValue(address, forKey: span.traceID) ?? address == address)
            }
        }
        #expect(seen.count == 90)
        #expect(tally.sent.load(ordering: .relaxed) == 90 * 2 * 4)
    }

    @Test("when the resolver drops a backend, its queued batches go to the others: none lost; its series go")
    func reroutesDroppedBackend() async throws {
        let resolver = ScriptedResolver(["r1:4317", "r2:4317", "r3:4317"])
        let metrics = SelfMetrics()
        let (exporter, made) = makeExporter(resolver, metrics: metrics, downAtStart: ["r2:4317"])
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        let traces = traceIDs(120, seed: 11)
        let batch = interleaved(traces, spansPerTrace: 1)
        try await exporter.export(batch)
        let ring = HashRing(backends: ["r1:4317", "r2:4317", "r3:4317"])
        let onDead = traces.filter { ring.backend(for: $0) == "r2:4317" }
        #expect(!onDead.isEmpty)
        // r2 is down: its share waits in its queue, retrying. Then r2 leaves the ring.
        resolver.answer.withLock { $0 = ["r1:4317", "r3:4317"] }
        await exporter.resolveOnce()
        #expect(exporter.backends == ["r1:4317", "r3:4317"])
        await exporter.shutdown()
        let delivered = made.all().filter { $0.key != "r2:4317" }.flatMap { $0.value.spans }
        #expect(delivered.count == batch.spanCount)
        #expect(Set(delivered.map(\.traceID)) == Set(traces))
        #expect(tally.sent.load(ordering: .relaxed) == batch.spanCount)
        #expect(tally.failed.load(ordering: .relaxed) == 0)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_loadbalancer_rerouted_spans_total{exporter=\"loadbalancing\"} \(onDead.count * 4)"))
        #expect(text.contains("agenttrace_loadbalancer_backends{exporter=\"loadbalancing\"} 2"))
        // The dropped backend's queue series are gone; the others' stay.
        #expect(!text.contains("loadbalancing/r2:4317"))
        #expect(text.contains("agenttrace_exporter_queue_size{exporter=\"loadbalancing/r1:4317\"}"))
    }

    @Test("a backend added by the resolver takes its share of new traces")
    func addsBackend() async throws {
        let resolver = ScriptedResolver(["r1:4317"])
        let (exporter, made) = makeExporter(resolver)
        try await exporter.start()
        resolver.answer.withLock { $0 = ["r1:4317", "r2:4317"] }
        await exporter.resolveOnce()
        let traces = traceIDs(200, seed: 3)
        try await exporter.export(interleaved(traces, spansPerTrace: 1))
        await exporter.shutdown()
        let r2 = made.all()["r2:4317"]?.spans.count ?? 0
        #expect(r2 == traces.filter { HashRing(backends: ["r1:4317", "r2:4317"]).backend(for: $0) == "r2:4317" }.count * 4)
        #expect(r2 > 0)
    }

    @Test("the DNS resolver asks again every interval; several addresses are several backends")
    func dnsInterval() async throws {
        let addresses = Mutex(["127.0.0.3", "127.0.0.2"])
        let resolver = DNSBackendResolver(hostname: "replicas", port: 4317, interval: .milliseconds(20), timeout: .seconds(1)) { name in
            #expect(name == "replicas")
            return addresses.withLock { $0 }
        }
        let (exporter, _) = makeExporter(resolver)
        try await exporter.start()
        #expect(exporter.backends == ["127.0.0.2:4317", "127.0.0.3:4317"])
        addresses.withLock { $0 = ["127.0.0.2", "127.0.0.4", "127.0.0.3"] }
        let deadline = ContinuousClock.now + .seconds(10)
        while exporter.backends.count != 3, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(exporter.backends == ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"])
        await exporter.shutdown()
    }

    @Test("a DNS lookup that fails, finds nothing or passes its timeout keeps the previous backends")
    func dnsFailures() async throws {
        let empty = DNSBackendResolver(hostname: "gone", port: 1, interval: .seconds(5), timeout: .seconds(1)) { _ in [] }
        await #expect(throws: DNSLookupError.self) { try await empty.resolve() }
        let slow = DNSBackendResolver(hostname: "slow", port: 1, interval: .seconds(5), timeout: .milliseconds(20)) { _ in
            try await Task.sleep(for: .seconds(5))
            return ["10.0.0.1"]
        }
        await #expect(throws: DNSLookupError.self) { try await slow.resolve() }
        let answers = Mutex<[[String]?]>([["10.0.0.1", "::1"], nil])
        let flaky = DNSBackendResolver(hostname: "flaky", port: 4317, interval: .seconds(5), timeout: .seconds(1)) { _ in
            guard let answer = answers.withLock({ $0.removeFirst() }) else { throw DNSLookupError.noAddresses(hostname: "flaky") }
            return answer
        }
        let (exporter, _) = makeExporter(flaky)
        try await exporter.start()
        #expect(exporter.backends == ["10.0.0.1:4317", "[::1]:4317"])
        await exporter.resolveOnce()
        #expect(exporter.backends == ["10.0.0.1:4317", "[::1]:4317"])
        await exporter.shutdown()
    }

    @Test("the system resolver reads /etc/hosts: localhost is 127.0.0.1")
    func systemLookup() async throws {
        let addresses = try await DNSBackendResolver.systemLookup("localhost")
        #expect(addresses.contains("127.0.0.1"))
    }

    @Test("a disk queue an earlier run left for a backend no longer resolved is sent on the ring there is")
    func orphanedQueue() async throws {
        let storage = scratchDirectory("loadbalancing")
        let orphan = DurableLog.otlp(directory: storage.appendingPathComponent(LoadBalancingExporter.folderName("10.0.0.9:4317")))
        _ = try await orphan.open()
        let traces = traceIDs(12, seed: 5)
        _ = try await orphan.append(interleaved(traces, spansPerTrace: 1))
        await orphan.close()
        let made = MadeBackends()
        let exporter = LoadBalancingExporter(id: ComponentID("loadbalancing"), routingKey: .traceID,
                                             resolver: StaticBackendResolver(hostnames: ["r1:4317", "r2:4317"]), storage: storage.path,
                                             metrics: SelfMetrics(), logger: Logger(label: "test")) { address in
            let sender = RecordingBackend(address: address)
            made.backends.withLock { $0[address] = sender }
            return QueuedExporter(id: ComponentID("loadbalancing/\(address)"), sender: sender, queue: QueueConfiguration(), retry: fastRetry(),
                                  metrics: SelfMetrics(), logger: Logger(label: "test"))
        }
        try await exporter.start()
        await exporter.shutdown()
        let delivered = made.all().values.flatMap(\.spans)
        #expect(delivered.count == traces.count * 4)
        // Gone from the orphaned queue: a second start sends nothing again.
        let again = DurableLog.otlp(directory: storage.appendingPathComponent(LoadBalancingExporter.folderName("10.0.0.9:4317")))
        #expect(try await again.open().isEmpty)
        await again.close()
    }

    @Test("with no backend resolved, export fails retryably rather than dropping silently")
    func noBackends() async throws {
        let resolver = DNSBackendResolver(hostname: "none", port: 1, interval: .seconds(60), timeout: .seconds(1)) { _ in [] }
        let (exporter, _) = makeExporter(resolver)
        try await exporter.start()
        await #expect(throws: ExportError.self) { try await exporter.export(interleaved(traceIDs(1), spansPerTrace: 1)) }
        await exporter.shutdown()
    }
}
