import Foundation
import Pipeline
import Synchronization

/// `auth:` settings of a listener: the bearer tokens a request must present in
/// `Authorization: Bearer TOKEN` (the `authorization` metadata over gRPC).
public struct BearerAuthConfiguration: Sendable, Equatable {
    /// `bearer_tokens`: tokens written in the configuration, usually `${env:NAME}`. Default none.
    public var tokens: [String] = []
    /// `bearer_tokens_file`: a file with one token a line (blank lines and `#` comments ignored), read
    /// at start-up and again when it changes. Default none.
    public var tokensFile: String?

    public init(tokens: [String] = [], tokensFile: String? = nil) {
        self.tokens = tokens
        self.tokensFile = tokensFile
    }

    /// Reads `auth:`; needs `bearer_tokens` or `bearer_tokens_file`, and every token non-empty.
    public init(section: ConfigSection) throws(ConfigurationError) {
        tokens = try section.stringList("bearer_tokens", default: [])
        tokensFile = try section.optionalString("bearer_tokens_file")
        try section.finish()
        for (index, token) in tokens.enumerated() where token.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ConfigurationError(key: "\(section.keyPath("bearer_tokens"))[\(index)]",
                                     "is empty (an unset environment variable?); a token must not be empty")
        }
        if let tokensFile {
            do {
                guard try !BearerTokens.read(file: tokensFile).isEmpty else {
                    throw ConfigurationError(key: section.keyPath("bearer_tokens_file"), "\(tokensFile) holds no token")
                }
            } catch let error as ConfigurationError {
                throw error
            } catch {
                throw ConfigurationError(key: section.keyPath("bearer_tokens_file"), "cannot read \(tokensFile): \(error.localizedDescription)")
            }
        }
        guard !tokens.isEmpty || tokensFile != nil else {
            throw ConfigurationError(key: section.keyPath("bearer_tokens"), "set bearer_tokens or bearer_tokens_file")
        }
    }
}

/// Checks bearer tokens. Tokens are compared in constant time (no early exit on the first differing
/// byte, and every configured token is compared), never logged, and a tokens file is read again when
/// its modification time changes (looked at most once a second).
public final class BearerTokens: Sendable {
    private struct State {
        var fileTokens: [[UInt8]] = []
        var fileModified: Date?
        var lastLook: ContinuousClock.Instant?
    }

    private let inlineTokens: [[UInt8]]
    private let file: String?
    private let state = Mutex(State())

    /// Loads the tokens `configuration` names.
    public init(_ configuration: BearerAuthConfiguration) {
        inlineTokens = configuration.tokens.map { Array($0.trimmingCharacters(in: .whitespaces).utf8) }
        file = configuration.tokensFile
        reloadIfChanged(force: true)
    }

    /// The tokens of a tokens file: one a line, blank lines and `#` comments skipped.
    static func read(file: String) throws -> [String] {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        return text.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// Whether an `Authorization` header value carries a configured token (`Bearer TOKEN`, scheme case-insensitive).
    public func allows(authorization: String?) -> Bool {
        guard let authorization else { return false }
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let presented = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        reloadIfChanged(force: false)
        let fileTokens = state.withLock { $0.fileTokens }
        var matches = 0
        for token in inlineTokens + fileTokens {
            // Counted rather than returned at the first match: every token is compared.
            matches += Self.constantTimeEquals(presented, token) ? 1 : 0
        }
        return matches > 0
    }

    /// Compares every byte of the longer input, whatever differs first.
    static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference = UInt64(lhs.count ^ rhs.count)
        let length = max(lhs.count, rhs.count)
        guard length > 0 else { return false }
        for index in 0..<length {
            let left = lhs.isEmpty ? 0 : lhs[index % lhs.count]
            let right = rhs.isEmpty ? 0 : rhs[index % rhs.count]
            difference |= UInt64(left ^ right)
        }
        return difference == 0
    }

    private func reloadIfChanged(force: Bool) {
        guard let file else { return }
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            if !force, let last = state.lastLook, now - last < .seconds(1) { return false }
            state.lastLook = now
            return true
        }
        guard due else { return }
        let modified = (try? FileManager.default.attributesOfItem(atPath: file))?[.modificationDate] as? Date
        guard force || modified != state.withLock({ $0.fileModified }) else { return }
        // An unreadable file keeps the tokens read last: a half-written file must not lock everyone out.
        guard let tokens = try? Self.read(file: file), !tokens.isEmpty else { return }
        state.withLock {
            $0.fileTokens = tokens.map { Array($0.utf8) }
            $0.fileModified = modified
        }
    }
}
