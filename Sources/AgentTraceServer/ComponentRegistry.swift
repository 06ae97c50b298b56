import Alerting
import Exporters
import NIOCore
import NIOPosix
import Pipeline
import Processors
import Receivers
import ServiceGraph

/// The factories for every component type, keyed by the type name used in configuration.
/// A new component registers its factory here and nothing else in the wiring changes.
public struct ComponentRegistry: Sendable {
    public var receivers: [String: any ReceiverFactory] = [:]
    public var processors: [String: any ProcessorFactory] = [:]
    public var exporters: [String: any ExporterFactory] = [:]
    /// Where `service_graph` processors register, for the admin API.
    public var serviceGraphs = ServiceGraphs()
    /// Where `threshold_triggers` processors record alerts (for `/api/alerts`) and register their delivery
    /// services (for the collector to run).
    public var triggeredAlerts = TriggeredAlerts()

    public init() {}

    /// Every built-in component.
    public static func standard(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                                graphs: ServiceGraphs = ServiceGraphs(),
                                alerts: TriggeredAlerts = TriggeredAlerts()) -> ComponentRegistry {
        var registry = ComponentRegistry()
        registry.serviceGraphs = graphs
        registry.triggeredAlerts = alerts
        registry.register(ServiceGraphProcessorFactory(graphs: graphs))
        registry.register(AgentEnrichmentProcessorFactory())
        registry.register(ThresholdTriggersProcessorFactory(alerts: alerts))
        registry.register(OTLPReceiverFactory(group: group))
        registry.register(BatchProcessorFactory())
        registry.register(SpanLimitsProcessorFactory())
        registry.register(TailSamplingProcessorFactory(codec: .otlp()))
        registry.register(FileExporterFactory())
        registry.register(DebugExporterFactory())
        registry.register(NopExporterFactory())
        registry.register(ZipkinExporterFactory())
        registry.register(JaegerExporterFactory())
        registry.register(OTLPExporterFactory())
        return registry
    }

    public mutating func register(_ factory: any ReceiverFactory) { receivers[factory.type] = factory }
    public mutating func register(_ factory: any ProcessorFactory) { processors[factory.type] = factory }
    public mutating func register(_ factory: any ExporterFactory) { exporters[factory.type] = factory }
}
