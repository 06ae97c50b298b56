import Synchronization

/// Objects that the components of one collector share, made on first use: the log of recent alerts
/// that every alerting processor writes to and `/api/alerts` reads, say. A resource that is an
/// `AdminRouteProvider` has its routes served, and one that is a `Service` is run, like a component's;
/// so a shared concern lives in its own module and needs no field in the collector.
public final class SharedResources: Sendable {
    private let resources = Mutex<[(key: ObjectIdentifier, value: any Sendable)]>([])

    /// No resource yet.
    public init() {}

    /// The collector's one `Resource`, made by `make` the first time it is asked for.
    public func resource<Resource: AnyObject & Sendable>(_ type: Resource.Type, make: () -> Resource) -> Resource {
        resources.withLock { resources in
            let key = ObjectIdentifier(type)
            if let existing = resources.first(where: { $0.key == key })?.value as? Resource { return existing }
            let made = make()
            resources.append((key, made))
            return made
        }
    }

    /// Every resource made so far, in the order they were first asked for.
    public var all: [any Sendable] { resources.withLock { $0.map(\.value) } }
}
