import NIOCore
import Testing
import ServerSupport

@Suite("connection limits")
struct ConnectionLimitsTests {
    @Test("deadlines are checked at a quarter of the shortest timeout, between 50 ms and 1 s")
    func checkInterval() {
        #expect(ConnectionLimits().checkInterval == nil)
        #expect(ConnectionLimits(readHeaderTimeout: .seconds(1)).checkInterval == .milliseconds(250))
        #expect(ConnectionLimits(readHeaderTimeout: .seconds(60), readTimeout: .seconds(120)).checkInterval == .seconds(1))
        #expect(ConnectionLimits(readTimeout: .milliseconds(20)).checkInterval == .milliseconds(50))
    }
}
