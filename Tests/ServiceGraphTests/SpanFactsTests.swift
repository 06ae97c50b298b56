import Testing
import TraceModel
@testable import ServiceGraph

@Suite("service graph span facts")
struct SpanFactsTests {
    @Test("every attribute the graph reads is found by its name, and no near miss is")
    func keysByName() {
        for key in SpanFacts.Key.allCases {
            #expect(SpanFacts.key(key.name) == key, "\(key.name)")
            #expect(SpanFacts.key(key.name + "x") == nil)
            #expect(SpanFacts.key(String(key.name.dropLast()) + "_") == nil)
        }
        #expect(SpanFacts.key("") == nil)
        #expect(SpanFacts.key("agent.name") == nil)
    }

    @Test("a key given twice is read from its first attribute, as [Attribute]'s subscript reads it")
    func firstOfDuplicates() {
        let attributes = [Attribute("peer.service", "first"), Attribute("peer.service", "second")]
        #expect(SpanFacts(attributes).string(.peerService) == attributes["peer.service"]?.stringValue)
        #expect(SpanFacts(attributes).string(.peerService) == "first")
    }
}
