import Foundation
import NIOPosix
import Pipeline
import Synchronization

/// Where a loadbalancing exporter's backends come from: a list of `host:port`, asked for at start and,
/// when `interval` is set, again every interval.
public protocol BackendResolver: Sendable {
    /// The backends now, as `host:port`; throws when they cannot be found (the previous list then stays).
    func resolve() async throws -> [String]
    /// How often to ask again; nil for a list that never changes.
    var interval: Duration? { get }
}

/// `resolver: static:`: the configured list, always.
public struct StaticBackendResolver: BackendResolver {
    /// The backends, `host:port`.
    public let hostnames: [String]
    /// A resolver that always answers `hostnames`.
    public init(hostnames: [String]) { self.hostnames = hostnames }
    /// The configured list.
    public func resolve() async throws -> [String] { hostnames }
    /// Nil: the list never changes.
    public var interval: Duration? { nil }
}

/// `resolver: dns:`: every address a name resolves to (several A/AAAA records are several backends), on
/// one port, looked up again every `interval`.
public struct DNSBackendResolver: BackendResolver {
    /// Looks a name up, returning its addresses as text (`10.0.0.7`, `fd00::7`).
    public typealias Lookup = @Sendable (_ hostname: String) async throws -> [String]

    /// The name whose addresses are the backends.
    public let hostname: String
    /// The port every address gets.
    public let port: Int
    /// How often the name is looked up again.
    public let interval: Duration?
    /// How long one lookup may take.
    public let timeout: Duration
    private let lookup: Lookup

    /// A resolver of `hostname`; `lookup` defaults to the system's resolver (`getaddrinfo`, which reads
    /// /etc/hosts and DNS), run on NIO's blocking-I/O thread pool, never a thread it does not own.
    public init(hostname: String, port: Int, interval: Duration, timeout: Duration, lookup: Lookup? = nil) {
        self.hostname = hostname
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.lookup = lookup ?? DNSBackendResolver.systemLookup
    }

    /// Every address of `hostname`, sorted, as `host:port`; throws when the lookup fails, times out or finds none.
    public func resolve() async throws -> [String] {
        let addresses = try await Self.withTimeout(timeout, hostname: hostname) { [lookup, hostname] in try await lookup(hostname) }
        // No address at all is treated as a failed lookup: the previous backends stay rather than every
        // span failing while a name is briefly missing.
        guard !addresses.isEmpty else { throw DNSLookupError.noAddresses(hostname: hostname) }
        return Set(addresses).sorted().map { Endpoint(host: $0, port: port).description }
    }

    /// The system resolver, on the blocking-I/O pool.
    public static let systemLookup: Lookup = { hostname in
        try await NIOThreadPool.singleton.runIfActive {
            let host = Host(name: hostname)
            return host.addresses
        }
    }

    /// `operation`'s result, or `DNSLookupError.timedOut` once `timeout` passed (the lookup itself, on a
    /// thread of the pool, is left to finish on its own).
    static func withTimeout(_ timeout: Duration, hostname: String,
                            _ operation: @escaping @Sendable () async throws -> [String]) async throws -> [String] {
        let once = Mutex<CheckedContinuation<[String], any Error>?>(nil)
        return try await withCheckedThrowingContinuation { continuation in
            once.withLock { $0 = continuation }
            let finish: @Sendable (Result<[String], any Error>) -> Void = { result in
                once.withLock { pending in
                    pending?.resume(with: result)
                    pending = nil
                }
            }
            Task {
                do { finish(.success(try await operation())) } catch { finish(.failure(error)) }
            }
            Task {
                try? await Task.sleep(for: timeout)
                finish(.failure(DNSLookupError.timedOut(hostname: hostname, after: timeout)))
            }
        }
    }
}

/// Why a DNS resolution failed.
public enum DNSLookupError: Error, CustomStringConvertible {
    /// The lookup took longer than the resolver's `timeout`.
    case timedOut(hostname: String, after: Duration)
    /// The name has no address.
    case noAddresses(hostname: String)

    public var description: String {
        switch self {
        case .timedOut(let hostname, let after): "looking up \(hostname) took longer than \(after)"
        case .noAddresses(let hostname): "\(hostname) has no addresses"
        }
    }
}
