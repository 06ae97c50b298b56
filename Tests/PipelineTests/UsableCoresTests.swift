import NIOCore
import Testing
@testable import Pipeline

/// The cores the process may use, read from the affinity list in /proc/self/status.
@Suite("usable cores")
struct UsableCoresTests {
    static func status(_ list: String) -> String {
        "Name:\tagenttrace\nCpus_allowed:\tff\nCpus_allowed_list:\t\(list)\nMems_allowed_list:\t0\n"
    }

    @Test("ranges and single cores are counted as the kernel lists them")
    func lists() {
        #expect(UsableCores.cpusAllowed(status: Self.status("0")) == 1)
        #expect(UsableCores.cpusAllowed(status: Self.status("0-1")) == 2)
        #expect(UsableCores.cpusAllowed(status: Self.status("0-3,8,10-11")) == 7)
        #expect(UsableCores.cpusAllowed(status: Self.status("5")) == 1)
    }

    @Test("no list, or one that cannot be read, says nothing")
    func unreadable() {
        #expect(UsableCores.cpusAllowed(status: "Name:\tx\n") == nil)
        #expect(UsableCores.cpusAllowed(status: Self.status("")) == nil)
        #expect(UsableCores.cpusAllowed(status: Self.status("3-1")) == nil)
        #expect(UsableCores.cpusAllowed(status: Self.status("a-b")) == nil)
    }

    @Test("the count is at least one and at most the online cores")
    func bounds() {
        #expect(UsableCores.count >= 1)
        #expect(UsableCores.count <= System.coreCount)
    }
}
