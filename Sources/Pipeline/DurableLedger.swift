import DequeModule

/// What a durable pipeline's write-ahead log still needs, kept by the pipeline beside the data rather
/// than in it: batches carry no mark, and a processor knows nothing of the log.
///
/// Records enter the chain in sequence order (the queue hands them over in the order they were
/// written). For every processor the ledger remembers, per call that handed it spans, the call's `now`
/// and the oldest record those spans can come from. After each call the processor says when the oldest
/// span it still holds was handed to it (`SpanProcessor.oldestHeldArrival`); calls before that gave it
/// nothing it still holds, and are forgotten. A record may go once its batch has been through the
/// chain and no processor can still hold a span of it: everything below the oldest record any processor
/// may hold, up to the last record finished.
///
/// Batches between stages of the runner wait in the queue in front of the next stage; the ledger keeps,
/// per stage, the records of the batches waiting there or being run, in order, so a record is never
/// released while its spans are on their way from one processor to the next.
///
/// What a processor passes on is counted as coming from the oldest record it may hold (or the input's,
/// when older): never younger than the truth, so the log may keep a record longer than needed (a
/// duplicate after a crash) but never forgets one too early.
public struct DurableLedger: Sendable {
    /// A call that handed a processor spans: its `now` and the oldest record among them.
    struct Intake: Sendable, Equatable {
        var now: UInt64
        var record: UInt64
    }

    /// Per processor, in call order, with `now` and `record` both non-decreasing: an older call whose
    /// record is not older than a later call's tells nothing the later one does not, and is dropped.
    /// So the first intake is the oldest record the processor may hold.
    private var intakes: [Deque<Intake>]
    /// Per stage of the runner, the records of the batches waiting in its queue or being run by it.
    private var waiting: [Deque<UInt64>]
    /// The highest record whose batch has been through the chain.
    private var highestFinished: UInt64 = 0
    /// Everything up to here has been released.
    private var released: UInt64 = 0

    /// A ledger for a chain of `processors` processors run in `stages` stages.
    public init(processors: Int, stages: Int = 1) {
        intakes = Array(repeating: [], count: processors)
        waiting = Array(repeating: [], count: max(stages, 1))
    }

    /// A batch whose spans come from `record` and later records joins the queue of stage `stage`.
    public mutating func send(_ record: UInt64, to stage: Int) {
        waiting[stage].append(record)
    }

    /// The stage `stage` is done with the batch at the front of its queue: its processors hold what they
    /// kept of it and the rest is with the next stage, or with the exporters.
    public mutating func arrive(at stage: Int) {
        waiting[stage].removeFirst()
    }

    /// The oldest record whose spans `processor` may still hold; nil when it holds none.
    public func oldestRecord(heldBy processor: Int) -> UInt64? {
        intakes[processor].first?.record
    }

    /// The oldest record not yet released.
    public var oldestUnreleased: UInt64 { released + 1 }

    /// `processor` is handed spans at `now`, from `record` and later records. Returns the record that what
    /// it passes on from this call counts as coming from: the oldest it may hold, this input included.
    public mutating func hand(to processor: Int, now: UInt64, record: UInt64) -> UInt64 {
        // A clock that steps back is read as standing still: later intakes then cover more calls, never fewer.
        let now = max(now, intakes[processor].last?.now ?? 0)
        while let last = intakes[processor].last, last.record >= record { intakes[processor].removeLast() }
        intakes[processor].append(Intake(now: now, record: record))
        return intakes[processor].first?.record ?? record
    }

    /// After a call: `oldestHeldArrival` is the processor's answer (the `now` of the call that handed it
    /// the oldest span it still holds, nil for none).
    public mutating func settle(_ processor: Int, oldestHeldArrival: UInt64?) {
        guard let oldest = oldestHeldArrival else {
            intakes[processor].removeAll()
            return
        }
        // Calls before `oldest` gave it nothing it holds. The last intake stays while it holds anything,
        // whatever it answers.
        while intakes[processor].count > 1, let first = intakes[processor].first, first.now < oldest {
            intakes[processor].removeFirst()
        }
    }

    /// The batch of `record` has been through the chain: what no processor holds of it reached the exporters.
    public mutating func finish(_ record: UInt64) {
        highestFinished = max(highestFinished, record)
    }

    /// The highest record the log may forget now, when it is past the last one released; nil otherwise.
    public mutating func releasable() -> UInt64? {
        var limit = highestFinished
        for intake in intakes {
            if let oldest = intake.first?.record { limit = min(limit, oldest - 1) }
        }
        for queue in waiting {
            if let oldest = queue.min() { limit = min(limit, oldest - 1) }
        }
        guard limit > released else { return nil }
        released = limit
        return limit
    }
}
