import ConfigYAML
import NIOCore
import NIOEmbedded
import Synchronization
import Testing
import TraceModel
@testable import Pipeline

@Suite("memory_limiter")
struct MemoryLimiterTests {
    final class FakeMemory: Sendable {
        let resident = Atomic<Int>(0)
        let trims = Atomic<Int>(0)
    }

    final class AlwaysAccepts: BatchSink {
        func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome { .accepted }
    }

    @Test("refuses from the soft limit (limit_mib - spike_limit_mib) and accepts again below it")
    func softLimit() {
        let memory = FakeMemory()
        let limiter = MemoryLimiter(configuration: MemoryLimiterConfiguration(limitMiB: 100, spikeLimitMiB: 20), metrics: SelfMetrics(),
                                    readResident: { memory.resident.load(ordering: .relaxed) },
                                    releaseFreedMemory: { memory.trims.add(1, ordering: .relaxed) })
        let sink = MemoryLimitedSink(inner: AlwaysAccepts(), limiter: limiter)
        memory.resident.store(79 << 20, ordering: .relaxed)
        limiter.sample()
        #expect(!sink.isFull && sink.offersNow(SpanBatch()))
        memory.resident.store(80 << 20, ordering: .relaxed)
        limiter.sample()
        #expect(sink.isFull && !sink.offersNow(SpanBatch()))
        #expect(memory.trims.load(ordering: .relaxed) == 1)
        memory.resident.store(60 << 20, ordering: .relaxed)
        limiter.sample()
        #expect(!sink.isFull)
    }

    @Test("over the soft limit requests are not held for room (that would hold their bodies): refused at once")
    func noWaitingOverTheLimit() {
        let memory = FakeMemory()
        let limiter = MemoryLimiter(configuration: MemoryLimiterConfiguration(limitMiB: 100, spikeLimitMiB: 20), metrics: SelfMetrics(),
                                    readResident: { memory.resident.load(ordering: .relaxed) }, releaseFreedMemory: {})
        let sink = MemoryLimitedSink(inner: BoundedBatchQueue(maxBatches: 1, maxSpans: 100, waitWhenFull: .seconds(2)), limiter: limiter)
        memory.resident.store(10 << 20, ordering: .relaxed)
        limiter.sample()
        #expect(sink.waitWhenFull == .seconds(2))
        memory.resident.store(90 << 20, ordering: .relaxed)
        limiter.sample()
        #expect(sink.waitWhenFull == .zero)
        #expect(answer(sink.waitForRoom(bytes: 1, until: .now() + .seconds(2), on: EmbeddedEventLoop())) == false)
    }

    @Test("configuration: limit_mib is required, spike_limit_mib defaults to a fifth and stays below it")
    func configuration() throws {
        func parse(_ yaml: String) throws -> MemoryLimiterConfiguration {
            try MemoryLimiterConfiguration(section: ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "m"))
        }
        #expect(try parse("limit_mib: 500").spikeLimitMiB == 100)
        #expect { try parse("spike_limit_mib: 5") } throws: { ($0 as? ConfigurationError)?.key == "m.limit_mib" }
        #expect { try parse("limit_mib: 100\nspike_limit_mib: 100") } throws: { ($0 as? ConfigurationError)?.key == "m.spike_limit_mib" }
    }
}
