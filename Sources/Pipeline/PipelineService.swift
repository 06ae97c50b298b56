import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TraceModel

/// Unix time in nanoseconds from the system clock.
public func wallClockNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// The long-running traces pipeline: takes batches off the bounded queue, runs them through the
/// processors and exporters, lets time pass every `queue.tickInterval`, and on graceful shutdown drains the
/// queue, flushes the processors and shuts the exporters down.
public final class PipelineService: Service, Sendable {
    /// The queue receivers offer to.
    public let queue: BoundedBatchQueue
    private let runner: PipelineRunner
    private let logger: Logger
    private let started = Mutex(false)

    public init(name: String, queue: BoundedBatchQueue, runner: PipelineRunner, metrics: SelfMetrics, logger: Logger) {
        self.queue = queue
        self.runner = runner
        self.logger = logger
        let labels = [("pipeline", name)]
        let size = metrics.gauge("agenttrace_pipeline_queue_size", help: "Batches waiting in the pipeline queue.", labels: labels)
        let spans = metrics.gauge("agenttrace_pipeline_queue_spans", help: "Spans waiting in the pipeline queue.", labels: labels)
        metrics.gauge("agenttrace_pipeline_queue_capacity", help: "The most batches the pipeline queue holds.", labels: labels)
            .set(Double(queue.maxBatches))
        metrics.onScrape { [queue] in
            size.set(Double(queue.count))
            spans.set(Double(queue.spanCount))
        }
    }

    /// True once every exporter has started.
    public var isStarted: Bool { started.withLock { $0 } }

    public func run() async throws {
        try await runner.start()
        if let log = queue.durableLog {
            // The log's folder and thread are made now, not when the configuration was built. Batches
            // acknowledged before a crash and not yet handed to the exporters run again.
            let recovered = try await log.open()
            if !recovered.isEmpty {
                logger.info("replaying batches from the write-ahead log", metadata: ["batches": "\(recovered.count)"])
            }
            for (sequence, batch) in recovered {
                await runner.process(batch, record: sequence, now: wallClockNanos())
            }
        }
        started.withLock { $0 = true }
        // Graceful shutdown and cancellation both close the queue: the consumer then drains what was
        // accepted and stops.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    // Wakes an idle consumer; a busy one gets its ticks from the queue itself.
                    group.addTask { [queue] in
                        while !Task.isCancelled {
                            try? await Task.sleep(for: queue.tickInterval)
                            queue.offerTick()
                        }
                    }
                    await consume()
                    group.cancelAll()
                }
            } onGracefulShutdown: { [queue] in
                queue.close()
            }
        } onCancel: { [queue] in
            queue.close()
        }
        await runner.shutdown(now: wallClockNanos())
        await queue.durableLog?.close()
        logger.info("pipeline drained")
    }

    private func consume() async {
        while let item = await queue.next() {
            switch item {
            case .batch(let batch): await runner.process(batch, now: wallClockNanos())
            case .recorded(let batch, let record): await runner.process(batch, record: record, now: wallClockNanos())
            case .tick: await runner.tick(now: wallClockNanos())
            }
        }
    }
}
