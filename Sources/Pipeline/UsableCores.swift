import Foundation
import NIOCore

/// The cores this process may run on: NIO's count (all online cores, or fewer under a cgroup CPU
/// limit) capped by the process's CPU affinity (`taskset`, `numactl`, a cpuset), which NIO does not
/// read. Go's runtime sizes GOMAXPROCS and Rust's `available_parallelism` by the same mask. Sizes the
/// event loops, the pipeline's stages and the service graph's shards: threads beyond the cores only
/// hand work to each other.
public enum UsableCores {
    /// Worked out once, at first use.
    public static let count: Int = {
        let online = System.coreCount
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let allowed = cpusAllowed(status: status) else { return online }
        return max(1, min(online, allowed))
    }()

    /// Sizes NIO's shared event loops and blocking pool to `count` threads, unless the user set theirs
    /// (`NIO_SINGLETON_GROUP_LOOP_COUNT`, `NIO_SINGLETON_BLOCKING_POOL_THREAD_COUNT`). Once per process,
    /// before anything uses them (the command line's first step): NIO stops the process otherwise.
    public static func sizeNIOSingletons() {
        let environment = ProcessInfo.processInfo.environment
        if environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] == nil { NIOSingletons.groupLoopCountSuggestion = count }
        if environment["NIO_SINGLETON_BLOCKING_POOL_THREAD_COUNT"] == nil { NIOSingletons.blockingPoolThreadCountSuggestion = count }
    }

    /// The number of cores in the `Cpus_allowed_list:` line of a `/proc/<pid>/status` text ("0-3,8,10-11"
    /// is 7); nil when there is no such line or it cannot be read.
    static func cpusAllowed(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        var count = 0
        for part in list.split(separator: ",") {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count <= 2, let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]), low <= high else { return nil }
            count += high - low + 1
        }
        return count > 0 ? count : nil
    }
}
