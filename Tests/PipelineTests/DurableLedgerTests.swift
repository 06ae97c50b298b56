import Testing
@testable import Pipeline

@Suite("durable ledger")
struct DurableLedgerTests {
    @Test("nothing is releasable before a batch has been through the chain")
    func nothingBeforeFinish() {
        var ledger = DurableLedger(processors: 1)
        _ = ledger.hand(to: 0, now: 10, record: 1)
        ledger.settle(0, oldestHeldArrival: nil)
        #expect(ledger.releasable() == nil)
        ledger.finish(1)
        #expect(ledger.releasable() == 1)
        #expect(ledger.releasable() == nil)  // already released
    }

    @Test("a chain of processors that hold nothing releases every finished record")
    func passThrough() {
        var ledger = DurableLedger(processors: 2)
        for record: UInt64 in 1...3 {
            for processor in 0..<2 {
                #expect(ledger.hand(to: processor, now: record * 10, record: record) == record)
                ledger.settle(processor, oldestHeldArrival: nil)
            }
            ledger.finish(record)
        }
        #expect(ledger.releasable() == 3)
    }

    @Test("a processor holding spans across batches keeps the records from the call that brought the oldest")
    func holderAcrossBatches() {
        var ledger = DurableLedger(processors: 1)
        _ = ledger.hand(to: 0, now: 10, record: 1)
        ledger.settle(0, oldestHeldArrival: 10)
        ledger.finish(1)
        _ = ledger.hand(to: 0, now: 20, record: 2)
        ledger.settle(0, oldestHeldArrival: 10)
        ledger.finish(2)
        #expect(ledger.releasable() == nil)
        #expect(ledger.oldestRecord(heldBy: 0) == 1)
        // It let go of what came at 10; it holds what came at 20 and after.
        _ = ledger.hand(to: 0, now: 30, record: 3)
        ledger.settle(0, oldestHeldArrival: 20)
        ledger.finish(3)
        #expect(ledger.releasable() == 1)
        #expect(ledger.oldestRecord(heldBy: 0) == 2)
        ledger.settle(0, oldestHeldArrival: nil)
        #expect(ledger.releasable() == 3)
    }

    @Test("what a holder passes on counts as coming from the oldest record it may hold")
    func passedOnIsNeverYounger() {
        var ledger = DurableLedger(processors: 2)
        _ = ledger.hand(to: 0, now: 10, record: 1)
        ledger.settle(0, oldestHeldArrival: 10)
        ledger.finish(1)
        // Record 2 arrives and the first processor passes everything it has on: record 1's spans too.
        #expect(ledger.hand(to: 0, now: 20, record: 2) == 1)
        ledger.settle(0, oldestHeldArrival: nil)
        // The second holds it; record 1 must stay.
        _ = ledger.hand(to: 1, now: 20, record: 1)
        ledger.settle(1, oldestHeldArrival: 20)
        ledger.finish(2)
        #expect(ledger.releasable() == nil)
        ledger.settle(1, oldestHeldArrival: nil)
        #expect(ledger.releasable() == 2)
    }

    @Test("a clock stepping back never makes a held record look released")
    func clockStepsBack() {
        var ledger = DurableLedger(processors: 1)
        _ = ledger.hand(to: 0, now: 100, record: 1)
        ledger.settle(0, oldestHeldArrival: 100)
        ledger.finish(1)
        // The wall clock steps back to 50; the processor now holds only what came at 50.
        _ = ledger.hand(to: 0, now: 50, record: 2)
        ledger.settle(0, oldestHeldArrival: 50)
        ledger.finish(2)
        #expect(ledger.oldestRecord(heldBy: 0) == 1)  // kept: conservative, never too early
        #expect(ledger.releasable() == nil)
    }

    @Test("a processor answering a time later than anything it was handed still keeps its last record")
    func answerTooLate() {
        var ledger = DurableLedger(processors: 1)
        _ = ledger.hand(to: 0, now: 10, record: 1)
        _ = ledger.hand(to: 0, now: 20, record: 2)
        ledger.settle(0, oldestHeldArrival: 99)
        ledger.finish(2)
        #expect(ledger.releasable() == 1)
    }

    @Test("spans passed on and waiting in the next stage's queue keep their record")
    func waitingBetweenStages() {
        // Three stages: each processor, then the exporters. A stage is done with a batch (`arrive`) once
        // its processor holds what it kept and the next stage has the rest.
        var ledger = DurableLedger(processors: 2, stages: 3)
        ledger.send(1, to: 0)
        _ = ledger.hand(to: 0, now: 10, record: 1)
        ledger.settle(0, oldestHeldArrival: 10)
        ledger.arrive(at: 0)
        ledger.send(2, to: 0)
        // Record 2 comes; the first processor passes everything on (record 1's spans too) to the second
        // stage's queue, and the marker of record 1 reaches the end of the chain meanwhile.
        let from = ledger.hand(to: 0, now: 20, record: 2)
        #expect(from == 1)
        ledger.settle(0, oldestHeldArrival: nil)
        ledger.send(from, to: 1)
        ledger.arrive(at: 0)
        ledger.finish(1)
        #expect(ledger.releasable() == nil)
        // The second stage runs the batch and passes it to the exporters' stage, which exports it.
        _ = ledger.hand(to: 1, now: 20, record: from)
        ledger.settle(1, oldestHeldArrival: nil)
        ledger.send(from, to: 2)
        ledger.arrive(at: 1)
        ledger.finish(2)
        #expect(ledger.releasable() == nil)
        ledger.arrive(at: 2)
        #expect(ledger.releasable() == 2)
    }
}
