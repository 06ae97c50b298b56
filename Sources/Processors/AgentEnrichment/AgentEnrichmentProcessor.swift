import Foundation
import Logging
import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// `agent_enrichment`: adds agent identity and metadata to every span's resource (`agent.name`,
/// `agent.type`, `agent.critical`, `agent.<key>` from `metadata_file`, `set:`), so every backend and the
/// service graph can group by agent; optionally copies or renames attributes (`from_attributes`).
///
/// The work is per resource, not per span: each distinct resource is enriched once and the result
/// remembered (up to `max_cached_resources`; the memory is cleared when full or when the metadata
/// changes). Only span-level `from_attributes` look at each span, and only spans they change are copied.
public final class AgentEnrichmentProcessor: SpanProcessor {
    private struct State {
        var enricher: AgentEnricher
        /// Resource → its enriched form, or nil when enrichment changes nothing.
        var cache: [Resource: Resource?] = [:]
        var watcher: FileChangeWatcher?
        var nextCheck: UInt64 = 0
    }

    private let state: Mutex<State>
    private let configuration: Configuration
    private let spanMappings: Bool
    private let logger: Logger
    private let reloads: Counter
    private let reloadFailures: Counter

    /// Builds the processor; loads `metadata_file` now, failing (naming the key) when it is unreadable or invalid.
    public init(configuration: Configuration, context: ComponentContext) throws(ConfigurationError) {
        self.configuration = configuration
        logger = context.logger
        let labels = [("processor", context.id.description)]
        reloads = context.metrics.counter("agenttrace_processor_agent_enrichment_metadata_reloads_total",
                                          help: "Times the agent metadata file was reloaded after it changed.", labels: labels)
        reloadFailures = context.metrics.counter("agenttrace_processor_agent_enrichment_metadata_reload_failures_total",
                                                 help: "Reloads of the agent metadata file that failed; the last good metadata stays.",
                                                 labels: labels)
        var metadata = AgentMetadata()
        var watcher: FileChangeWatcher?
        if let path = configuration.metadataFile {
            var fileWatcher = FileChangeWatcher(path: path)
            fileWatcher.accept(FileChangeWatcher.stamp(of: path))
            do {
                metadata = try AgentMetadata.load(path: path)
            } catch {
                throw ConfigurationError(key: "processors.\(context.id).metadata_file", error.description)
            }
            watcher = fileWatcher
        }
        let enricher = AgentEnricher(configuration: configuration, metadata: metadata)
        spanMappings = !enricher.spanMappings.isEmpty
        state = Mutex(State(enricher: enricher, watcher: watcher))
    }

    /// Nil: every span passes on in the call that brought it.
    public var oldestHeldArrival: UInt64? { nil }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        var output = batch
        let enricher: AgentEnricher? = state.withLock { state in
            for index in output.resourceSpans.indices {
                let resource = output.resourceSpans[index].resource
                let enriched: Resource?
                if let cached = state.cache[resource] {
                    enriched = cached
                } else {
                    enriched = state.enricher.enrich(resource)
                    if state.cache.count >= configuration.maxCachedResources { state.cache.removeAll(keepingCapacity: true) }
                    state.cache[resource] = .some(enriched)
                }
                if let enriched { output.resourceSpans[index].resource = enriched }
            }
            return spanMappings ? state.enricher : nil
        }
        if let enricher { Self.mapSpans(&output, enricher) }
        return [output]
    }

    /// Applies span-level `from_attributes` to the spans they change.
    private static func mapSpans(_ batch: inout SpanBatch, _ enricher: AgentEnricher) {
        for r in batch.resourceSpans.indices {
            for s in batch.resourceSpans[r].scopeSpans.indices {
                for k in batch.resourceSpans[r].scopeSpans[s].spans.indices
                where enricher.spanNeedsMapping(batch.resourceSpans[r].scopeSpans[s].spans[k].attributes) {
                    enricher.mapSpan(&batch.resourceSpans[r].scopeSpans[s].spans[k].attributes)
                }
            }
        }
    }

    /// Checks the metadata file every `metadata_check_interval` and reloads it when it changed; a bad file
    /// logs one error (per change) and the last good metadata stays.
    public func tick(now: UInt64) -> [SpanBatch] {
        state.withLock { state in
            guard var watcher = state.watcher, now >= state.nextCheck else { return }
            state.nextCheck = now &+ UInt64(clamping: configuration.metadataCheckInterval.nanoseconds)
            guard let stamp = watcher.changed() else { return }
            watcher.accept(stamp)
            state.watcher = watcher
            do {
                let metadata = try AgentMetadata.load(path: watcher.path)
                state.enricher.metadata = metadata
                state.cache.removeAll()
                reloads.increment()
                logger.info("agent metadata reloaded", metadata: ["file": "\(watcher.path)", "agents": "\(metadata.entries.count)"])
            } catch {
                reloadFailures.increment()
                logger.error("agent metadata file is invalid; keeping the last good metadata",
                             metadata: ["file": "\(watcher.path)", "error": "\(error)"])
            }
        }
        return []
    }

    /// The metadata in use now.
    public var metadata: AgentMetadata { state.withLock { $0.enricher.metadata } }

    /// Distinct resources remembered now; never more than `max_cached_resources`.
    public var cachedResourceCount: Int { state.withLock { $0.cache.count } }
}

/// Builds `agent_enrichment` processors.
public struct AgentEnrichmentProcessorFactory: ProcessorFactory {
    public let type = "agent_enrichment"

    public init() {}

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        try AgentEnrichmentProcessor(configuration: try AgentEnrichmentProcessor.Configuration(section: section), context: context)
    }
}
