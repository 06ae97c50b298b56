import Exporters
import NIOCore
import NIOPosix
import Pipeline
import Processors
import Receivers
import ServiceGraph

/// The factories for every component type, keyed by the type name used in configuration.
/// A new component registers its factory here and nothing else in the wiring changes: one that is a
/// `Service` is run with the collector, one that is an `AdminRouteProvider` is served on the admin API.
public struct ComponentRegistry: Sendable {
    public var receivers: [String: any ReceiverFactory] = [:]
    public var processors: [String: any ProcessorFactory] = [:]
    public var exporters: [String: any ExporterFactory] = [:]

    public init() {}

    /// Every built-in component.
    public static func standard(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) -> ComponentRegistry {
        var registry = ComponentRegistry()
        registry.register(ServiceGraphProcessorFactory())
        registry.register(AgentEnrichmentProcessorFactory())
        registry.register(ThresholdTriggersProcessorFactory())
        registry.register(AnomalyDetectionProcessorFactory())
        registry.register(OTLPReceiverFactory(group: group))
        registry.register(BatchProcessorFactory())
        registry.register(SpanLimitsProcessorFactory())
        registry.register(TailSamplingProcessorFactory(codec: .otlp()))
        registry.register(FileExporterFactory())
        registry.register(MemoryExporterFactory())
        registry.register(DebugExporterFactory())
        registry.register(NopExporterFactory())
        registry.register(ZipkinExporterFactory())
        registry.register(JaegerExporterFactory())
        registry.register(OTLPExporterFactory())
        registry.register(LoadBalancingExporterFactory())
        return registry
    }

    public mutating func register(_ factory: any ReceiverFactory) { receivers[factory.type] = factory }
    public mutating func register(_ factory: any ProcessorFactory) { processors[factory.type] = factory }
    public mutating func register(_ factory: any ExporterFactory) { exporters[factory.type] = factory }
}
