/// A parsed configuration document: YAML reduced to scalars, sequences and mappings,
/// with `${env:NAME}` (and `${NAME}`) already expanded. `ConfigYAML` makes one from YAML text, so
/// only what loads configuration links the YAML parser.
public indirect enum ConfigValue: Sendable, Equatable {
    case scalar(String)
    case sequence([ConfigValue])
    /// Keys in document order.
    case mapping([ConfigEntry])
    case null
}

/// One key of a mapping.
public struct ConfigEntry: Sendable, Equatable {
    public var key: String
    public var value: ConfigValue

    public init(_ key: String, _ value: ConfigValue) {
        self.key = key
        self.value = value
    }
}

/// A configuration mistake, naming the offending key (`exporters.file.path`), and any further mistakes
/// found in the same pass (`more`), so one run reports every one of them.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    /// The dotted path of the (first) key at fault.
    public var key: String
    /// What is wrong with it.
    public var message: String
    /// The other mistakes found in the same pass, in document order.
    public var more: [ConfigurationError] = []

    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }

    /// All of `problems` as one error: the first, with the rest in `more`. `problems` must not be empty.
    public init(collecting problems: [ConfigurationError]) {
        let flat = problems.flatMap(\.all)
        self.init(key: flat.first?.key ?? "", flat.first?.message ?? "invalid configuration")
        more = Array(flat.dropFirst())
    }

    /// Every mistake, one key each, this one first.
    public var all: [ConfigurationError] {
        [ConfigurationError(key: key, message)] + more.flatMap(\.all)
    }

    /// One line per mistake: `key: message`.
    public var description: String {
        all.map { $0.key.isEmpty ? $0.message : "\($0.key): \($0.message)" }.joined(separator: "\n")
    }
}

/// Gathers configuration mistakes while reading goes on, so that every component and section is checked
/// and all the mistakes are reported together.
public struct ConfigurationProblems: Sendable {
    /// The mistakes so far, in the order found, without repeats.
    public private(set) var all: [ConfigurationError] = []

    public init(_ initial: [ConfigurationError] = []) {
        for problem in initial { record(problem) }
    }

    /// True when nothing was found.
    public var isEmpty: Bool { all.isEmpty }

    /// Adds one mistake (and those it carries), skipping exact repeats (a processor used by two pipelines).
    public mutating func record(_ error: ConfigurationError) {
        for problem in error.all where !all.contains(where: { $0.key == problem.key && $0.message == problem.message }) {
            all.append(problem)
        }
    }

    /// Runs `body`; a failure is recorded (any other error under `key`) and nil returned.
    public mutating func check<T>(_ key: String, _ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch let error as ConfigurationError {
            record(error)
        } catch {
            record(ConfigurationError(key: key, "\(error)"))
        }
        return nil
    }

    /// Builds a component from `value` (its settings at `path`) with `build`, recording every mistake in it:
    /// after a mistake the faulty key is left out (so its default applies) and the component is read again,
    /// until it builds or a mistake names no key that can be left out. Returns the component only when its
    /// settings had no mistake. Building has no side effects (house rule), so reading again is safe.
    public mutating func build<T>(_ path: String, _ value: ConfigValue, _ build: (ConfigSection) throws -> T) -> T? {
        var value = value
        var reported: [String] = []
        // Each round leaves out at least one key, so the rounds are bounded by the keys present.
        while true {
            do {
                let built = try build(try ConfigSection(value, path: path))
                return reported.isEmpty ? built : nil
            } catch let error as ConfigurationError {
                var progressed = false
                for problem in error.all {
                    // A key left out may then be reported missing: the first word on a key stands.
                    if !reported.contains(where: { Self.overlaps($0, problem.key) }) {
                        record(problem)
                        reported.append(problem.key)
                    }
                    if problem.key.hasPrefix(path + "."), let rest = value.removing(problem.key.dropFirst(path.count + 1)) {
                        value = rest
                        progressed = true
                    }
                }
                guard progressed else { return nil }
            } catch {
                record(ConfigurationError(key: path, "\(error)"))
                return nil
            }
        }
    }

    /// True when one key is the other or inside it (`a.b` and `a.b.c`, `a.b[0]`).
    private static func overlaps(_ a: String, _ b: String) -> Bool {
        func inside(_ x: String, _ y: String) -> Bool { x == y || x.hasPrefix(y + ".") || x.hasPrefix(y + "[") }
        return inside(a, b) || inside(b, a)
    }

    /// Throws every mistake found, as one error, if there is any.
    public func finish() throws(ConfigurationError) {
        if !all.isEmpty { throw ConfigurationError(collecting: all) }
    }
}

extension ConfigValue {
    /// This value without the entry at `path` (dotted keys and `[n]` list indices, as errors name them,
    /// relative to this value); nil when there is no such entry or it is a list element itself (removing
    /// one would renumber the rest). Keys may contain dots (`set: {pipeline.name: a}`): the longest key the
    /// path starts with is taken.
    public func removing(_ path: Substring) -> ConfigValue? {
        switch self {
        case .mapping(let entries):
            let candidates = entries.indices.filter { path.hasPrefix(entries[$0].key) }
                .sorted { entries[$0].key.count > entries[$1].key.count }
            for index in candidates {
                let rest = path.dropFirst(entries[index].key.count)
                var copy = entries
                if rest.isEmpty {
                    copy.remove(at: index)
                    return .mapping(copy)
                }
                guard rest.first == "." || rest.first == "[" else { continue }
                if let inner = entries[index].value.removing(rest.first == "." ? rest.dropFirst() : rest) {
                    copy[index].value = inner
                    return .mapping(copy)
                }
            }
            return nil
        case .sequence(let elements):
            guard path.first == "[", let close = path.firstIndex(of: "]"),
                  let index = Int(path[path.index(after: path.startIndex)..<close]), elements.indices.contains(index) else { return nil }
            var rest = path[path.index(after: close)...]
            if rest.first == "." { rest = rest.dropFirst() }
            guard !rest.isEmpty, let inner = elements[index].removing(rest) else { return nil }
            var copy = elements
            copy[index] = inner
            return .sequence(copy)
        case .scalar, .null:
            return nil
        }
    }

    /// Replaces `${env:NAME}`, `${NAME}` (and `${env:NAME:-default}`) with the variable's value; `$$` is a literal `$`.
    public static func expand(_ text: String, path: String, environment: [String: String]) throws(ConfigurationError) -> String {
        guard text.contains("$") else { return text }
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            guard character == "$", next < text.endIndex else {
                result.append(character)
                index = next
                continue
            }
            if text[next] == "$" {
                result.append("$")
                index = text.index(after: next)
            } else if text[next] == "{" {
                guard let close = text[next...].firstIndex(of: "}") else {
                    throw ConfigurationError(key: path, "unterminated ${ in \"\(text)\"")
                }
                var reference = String(text[text.index(after: next)..<close])
                if reference.hasPrefix("env:") { reference.removeFirst(4) }
                var fallback: String?
                if let range = reference.range(of: ":-") {
                    fallback = String(reference[range.upperBound...])
                    reference = String(reference[..<range.lowerBound])
                }
                guard !reference.isEmpty, reference.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw ConfigurationError(key: path, "invalid environment reference ${\(reference)}")
                }
                result += environment[reference] ?? fallback ?? ""
                index = text.index(after: close)
            } else {
                result.append(character)
                index = next
            }
        }
        return result
    }
}
