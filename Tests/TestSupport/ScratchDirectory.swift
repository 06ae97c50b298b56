import Foundation

/// Every scratch folder of one test process lives under this one, removed when the process exits, so
/// test runs leave nothing behind in the system's temporary folder.
private let scratchRoot: URL = {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("agenttrace-tests-\(getpid())")
    atexit {
        try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory.appendingPathComponent("agenttrace-tests-\(getpid())"))
    }
    return root
}()

/// A new, empty-named path for a test's files (`name` plus a unique suffix), not yet created.
public func scratchDirectory(_ name: String) -> URL {
    scratchRoot.appendingPathComponent("\(name)-\(UUID().uuidString)")
}
