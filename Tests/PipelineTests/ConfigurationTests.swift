import ConfigYAML
import Testing
@testable import Pipeline

@Suite("configuration reading")
struct ConfigurationTests {
    @Test("environment references expand, with defaults and $$ escapes")
    func environment() throws {
        let environment = ["PORT": "4318", "HOST": "0.0.0.0"]
        #expect(try ConfigValue.expand("${env:HOST}:${PORT}", path: "x", environment: environment) == "0.0.0.0:4318")
        #expect(try ConfigValue.expand("${env:MISSING:-fallback}", path: "x", environment: environment) == "fallback")
        #expect(try ConfigValue.expand("cost $$5", path: "x", environment: environment) == "cost $5")
        #expect(throws: ConfigurationError.self) { try ConfigValue.expand("${env:oops", path: "x", environment: environment) }
    }

    @Test("unknown keys fail naming the full key path")
    func unknownKey() throws {
        let value = try ConfigValue.parse(yaml: "file:\n  path: /tmp/x\n  pathh: /tmp/y\n", environment: [:])
        let root = try ConfigSection(value, path: "exporters")
        let file = try #require(try root.section("file"))
        _ = try file.string("path", default: "")
        #expect(throws: ConfigurationError.self) { try file.finish() }
        do {
            try file.finish()
        } catch {
            #expect(error.key == "exporters.file.pathh")
        }
    }

    @Test("every unknown key of a section is named, not only the first")
    func everyUnknownKey() throws {
        let value = try ConfigValue.parse(yaml: "path: /tmp/x\npathh: /tmp/y\nformatt: json\n", environment: [:])
        let file = try ConfigSection(value, path: "exporters.file")
        _ = try file.string("path", default: "")
        do {
            try file.finish()
            Issue.record("finish() accepted unknown keys")
        } catch {
            #expect(error.all.map(\.key) == ["exporters.file.pathh", "exporters.file.formatt"])
            #expect(error.description == "exporters.file.pathh: unknown key\nexporters.file.formatt: unknown key")
        }
    }

    @Test("problems gather across checks, without repeats")
    func problemsGather() {
        var problems = ConfigurationProblems()
        _ = problems.check("a") { () throws in throw ConfigurationError(key: "a.x", "bad") }
        _ = problems.check("b") { 1 }
        _ = problems.check("a") { () throws in throw ConfigurationError(key: "a.x", "bad") }
        _ = problems.check("c") { () throws in throw CancellationError() }
        #expect(problems.all.map(\.key) == ["a.x", "c"])
        #expect(throws: ConfigurationError.self) { try problems.finish() }
    }

    @Test("a component is read again past each mistake, so all of its mistakes are found")
    func everyMistakeInOneComponent() throws {
        let value = try ConfigValue.parse(yaml: "size: many\ntimeout: soon\nnested: {flag: maybe, extra: 1}\ncolour: red\n", environment: [:])
        var problems = ConfigurationProblems()
        let built = problems.build("processors.p", value) { section in
            let size = try section.int("size", default: 1)
            _ = try section.duration("timeout", default: .seconds(1))
            if let nested = try section.section("nested") {
                _ = try nested.bool("flag", default: false)
                try nested.finish()
            }
            try section.finish()
            return size
        }
        #expect(built == nil)
        #expect(problems.all.map(\.key) == ["processors.p.size", "processors.p.timeout", "processors.p.nested.flag",
                                             "processors.p.nested.extra", "processors.p.colour"])
    }

    @Test("removing an entry by the path an error names; list elements are never removed")
    func removing() throws {
        let value = try ConfigValue.parse(yaml: "a: {b: 1, c.d: 2}\nrules: [{name: x, bad: y}]\n", environment: [:])
        #expect(value.removing("a.b") == (try ConfigValue.parse(yaml: "a: {c.d: 2}\nrules: [{name: x, bad: y}]\n", environment: [:])))
        #expect(value.removing("a.c.d") == (try ConfigValue.parse(yaml: "a: {b: 1}\nrules: [{name: x, bad: y}]\n", environment: [:])))
        #expect(value.removing("rules[0].bad") == (try ConfigValue.parse(yaml: "a: {b: 1, c.d: 2}\nrules: [{name: x}]\n", environment: [:])))
        #expect(value.removing("rules[0]") == nil)
        #expect(value.removing("a.zzz") == nil)
    }

    @Test("typed readers reject bad values naming the key")
    func typedValues() throws {
        let value = try ConfigValue.parse(yaml: "size: many\ntimeout: 5 parsecs\nflag: maybe\nport: x:99999\n", environment: [:])
        let section = try ConfigSection(value, path: "p")
        #expect(throws: ConfigurationError.self) { try section.int("size", default: 1) }
        #expect(throws: ConfigurationError.self) { try section.duration("timeout", default: .seconds(1)) }
        #expect(throws: ConfigurationError.self) { try section.bool("flag", default: false) }
        #expect(throws: ConfigurationError.self) { try section.endpoint("port", default: Endpoint(host: "a", port: 1)) }
    }

    @Test("durations read as Go writes them", arguments: [
        ("200ms", Duration.milliseconds(200)), ("5s", .seconds(5)), ("1m30s", .seconds(90)), ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)), ("250us", .microseconds(250)), ("2", .seconds(2)),
    ])
    func durations(text: String, expected: Duration) {
        #expect(Duration(configText: text) == expected)
    }

    @Test("endpoints parse host:port and bracketed IPv6")
    func endpoints() {
        #expect(Endpoint("localhost:4318") == Endpoint(host: "localhost", port: 4318))
        #expect(Endpoint("[::1]:4317") == Endpoint(host: "::1", port: 4317))
        #expect(Endpoint("localhost") == nil)
        #expect(Endpoint(":80") == nil)
    }

    @Test("component ids split type and name")
    func componentIDs() {
        #expect(ComponentID("zipkin/backup").type == "zipkin")
        #expect(ComponentID("zipkin/backup").name == "backup")
        #expect(ComponentID("file").description == "file")
    }
}
