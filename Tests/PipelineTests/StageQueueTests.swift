import Synchronization
import Testing
@testable import Pipeline

@Suite("stage queue")
struct StageQueueTests {
    @Test("items come out in the order they were sent; a send waits while the queue is full")
    func boundedAndOrdered() async throws {
        let queue = StageQueue<Int>(capacity: 2)
        await queue.send(1)
        await queue.send(2)
        let sentThird = Flag()
        let sender = Task {
            await queue.send(3)
            sentThird.set()
            await queue.send(4)
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!sentThird.isSet)  // two wait already
        #expect(await queue.next() == 1)
        var received: [Int] = []
        for _ in 0..<3 { received.append(await queue.next()) }
        await sender.value
        #expect(sentThird.isSet)
        #expect(received == [2, 3, 4])
    }

    @Test("a receiver waiting on an empty queue gets the next item sent")
    func receiverWaits() async throws {
        let queue = StageQueue<Int>(capacity: 1)
        let receiver = Task { await queue.next() }
        try await Task.sleep(for: .milliseconds(50))
        await queue.send(7)
        #expect(await receiver.value == 7)
    }

    @Test("many items through a small queue between two tasks arrive complete and in order")
    func manyItems() async {
        let queue = StageQueue<Int>(capacity: 3)
        let sender = Task { for value in 0..<10_000 { await queue.send(value) } }
        var received: [Int] = []
        for _ in 0..<10_000 { received.append(await queue.next()) }
        await sender.value
        #expect(received == Array(0..<10_000))
    }
}

/// A flag one task sets and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}
