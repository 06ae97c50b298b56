import Testing
@testable import TraceWire

@Suite("Zipkin tag lists")
struct ZipkinTagListTests {
    /// The rules spelled out plainly: one value per key, in the order keys were first set; a removed key
    /// set again goes last.
    struct Oracle {
        var tags: [(key: String, value: String)] = []

        mutating func set(_ key: String, _ value: String) {
            if let position = tags.firstIndex(where: { $0.key == key }) { tags[position].value = value } else { tags.append((key, value)) }
        }

        mutating func remove(_ key: String) {
            tags.removeAll { $0.key == key }
        }
    }

    /// Random sets and removes on a resource's list, then on several spans' copies of it, agree with the
    /// plain rules; no span's changes reach the shared list or another span. Short lists and long ones
    /// (found through the index) alike.
    @Test(arguments: [6, 20, 60])
    func copiesAgreeWithThePlainRules(keys: Int) {
        var generator = SystemRandomNumberGenerator()
        func key() -> String { "key.\(Int.random(in: 0..<keys, using: &generator))" }
        for _ in 0..<40 {
            var list = TagList()
            var oracle = Oracle()
            for step in 0..<keys {
                let name = key()
                if step % 7 == 6 {
                    list.remove(name)
                    oracle.remove(name)
                } else {
                    list.set(name, "shared \(step)")
                    oracle.set(name, "shared \(step)")
                }
            }
            let shared = list.sealed()
            #expect(shared.tags.elementsEqual(oracle.tags, by: ==))
            for span in 0..<4 {
                var copy = shared
                var spanOracle = oracle
                for step in 0..<12 {
                    let name = Int.random(in: 0..<3, using: &generator) == 0 ? "own.\(step % 5)" : key()
                    if Int.random(in: 0..<4, using: &generator) == 0 {
                        copy.remove(name)
                        spanOracle.remove(name)
                    } else {
                        copy.set(name, "span \(span) step \(step)")
                        spanOracle.set(name, "span \(span) step \(step)")
                    }
                }
                #expect(copy.tags.elementsEqual(spanOracle.tags, by: ==), "span \(span)")
                #expect(copy.tags.isEmpty == spanOracle.tags.isEmpty)
                #expect(shared.tags.elementsEqual(oracle.tags, by: ==), "a span's changes reached the shared tags")
            }
        }
    }

    /// The translator's own use: a span attribute replaces its resource's value in place, and an OK span
    /// loses an `error` tag its resource had.
    @Test func spanValuesReplaceTheResourcesInPlace() {
        var resource = TagList()
        resource.set("host.name", "h1")
        resource.set("error", "resource says so")
        resource.set("region", "eu")
        var span = resource.sealed()
        span.set("region", "us")
        span.set("otel.status_code", "OK")
        span.remove("error")
        #expect(span.tags.map(\.key) == ["host.name", "region", "otel.status_code"])
        #expect(span.tags.map(\.value) == ["h1", "us", "OK"])
        #expect(resource.tags.count == 3)
    }
}
