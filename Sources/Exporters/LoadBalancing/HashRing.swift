import TraceModel

/// A consistent-hashing ring of backends (Karger et al.), as the OpenTelemetry Collector's loadbalancing
/// exporter keeps one: each backend sits at many points of a 64-bit circle, and a key goes to the backend of
/// the first point at or after the key's own hash. Adding or removing one of N backends moves only the keys
/// of the arcs it gains or loses, about 1/N of them ("around R/N of the routes will be rerouted
/// differently", the Collector's README). A plain value: built once per resolved list, never mutated.
public struct HashRing: Sendable, Equatable {
    /// Points per backend. The Collector uses 100; more points even out the shares (a backend's share
    /// varies by about 1/sqrt(points)).
    public static let pointsPerBackend = 256

    /// The points, sorted by position; ties go to the backend listed first.
    private let points: [(position: UInt64, backend: Int)]
    /// The backends, sorted, so the same set in any order makes the same ring.
    public let backends: [String]

    /// A ring of `backends` (duplicates are ignored).
    public init(backends: [String]) {
        let sorted = Array(Set(backends)).sorted()
        self.backends = sorted
        var points: [(position: UInt64, backend: Int)] = []
        points.reserveCapacity(sorted.count * Self.pointsPerBackend)
        for (index, backend) in sorted.enumerated() {
            let base = Self.hash(backend)
            for point in 0..<Self.pointsPerBackend {
                points.append((Self.mix(base &+ UInt64(point) &* 0x9E37_79B9_7F4A_7C15), index))
            }
        }
        points.sort { $0.position != $1.position ? $0.position < $1.position : $0.backend < $1.backend }
        self.points = points
    }

    public static func == (lhs: HashRing, rhs: HashRing) -> Bool { lhs.backends == rhs.backends }

    /// True when there is no backend.
    public var isEmpty: Bool { backends.isEmpty }

    /// The backend for a key already hashed to `position`; nil when the ring is empty.
    public func backend(at position: UInt64) -> String? {
        guard !points.isEmpty else { return nil }
        // The first point at or after `position`, wrapping round to the first point.
        var low = 0
        var high = points.count
        while low < high {
            let middle = (low + high) / 2
            if points[middle].position < position { low = middle + 1 } else { high = middle }
        }
        return backends[points[low == points.count ? 0 : low].backend]
    }

    /// The backend for a trace.
    public func backend(for traceID: TraceID) -> String? { backend(at: Self.position(of: traceID)) }

    /// The backend for a service name.
    public func backend(forService name: String) -> String? { backend(at: Self.mix(Self.hash(name))) }

    /// Where a trace id falls on the circle.
    public static func position(of traceID: TraceID) -> UInt64 {
        mix(traceID.high ^ mix(traceID.low))
    }

    /// FNV-1a, 64 bits.
    static func hash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// SplitMix64's finaliser: spreads nearby inputs over the whole circle.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
