import Synchronization

/// The calls between nodes that the collector's `service_graph` has seen, as (caller, callee) pairs, for the
/// components that correlate along them (`anomaly_detection`'s incidents) without importing the graph:
/// `service_graph` provides them, the others ask. One per collector (`SharedResources`).
public final class ServiceGraphEdges: Sendable {
    private let source = Mutex<(@Sendable () -> [(String, String)])?>(nil)

    /// No provider yet.
    public init() {}

    /// The collector's one, made on first use.
    public static func shared(in context: ComponentContext) -> ServiceGraphEdges {
        context.shared.resource(ServiceGraphEdges.self) { ServiceGraphEdges() }
    }

    /// Sets where the edges come from (the first `service_graph` processor's graph; later ones are ignored).
    public func provide(_ edges: @escaping @Sendable () -> [(String, String)]) {
        source.withLock { source in
            if source == nil { source = edges }
        }
    }

    /// The edges now; nil when the collector has no `service_graph`.
    public func edges() -> [(String, String)]? {
        source.withLock { $0 }?()
    }
}
