import TraceModel

extension TailSamplingProcessor {
    /// The traces held or remembered: one record each, one after another in `records` (the slot a trace
    /// leaves is the next new trace's), found by trace id through `slots`. A dictionary of records would
    /// give every bucket a record's room, and its buckets are made for the traces expected and kept at
    /// most three quarters full: resident memory grew by more than a hundred bytes a trace beyond the
    /// records. Here a bucket is a trace id and a slot number, and records take room only for the
    /// traces there are.
    struct TraceTable {
        private var slots: [TraceID: UInt32] = [:]
        private var records: [Entry] = []
        /// Slots no trace has now, the most recently freed last.
        private var vacant: [UInt32] = []

        /// What a trace costs beyond its spans' bytes: its record, its share of the index (whose
        /// buckets are up to twice the traces) and its place in the arrival queue.
        static let bytesPerTrace = MemoryLayout<Entry>.stride + 2 * (MemoryLayout<TraceID>.stride + MemoryLayout<UInt32>.stride)
            + MemoryLayout<(TraceID, UInt64)>.stride

        /// Traces held or remembered.
        var count: Int { slots.count }

        /// Room for `capacity` traces without growing.
        mutating func reserveCapacity(_ capacity: Int) {
            slots.reserveCapacity(capacity)
            records.reserveCapacity(capacity)
        }

        /// Where the trace's record is, if it has one.
        func slot(of id: TraceID) -> Int? {
            slots[id].map { Int($0) }
        }

        /// Where the record of this life of the trace (first span at `arrival`) is, if it has one.
        func slot(of id: TraceID, arrival: UInt64) -> Int? {
            guard let slot = slot(of: id), records[slot].arrival == arrival else { return nil }
            return slot
        }

        /// Where the record of this life of the trace is while it is undecided.
        func undecidedSlot(of id: TraceID, arrival: UInt64) -> Int? {
            guard let slot = slot(of: id, arrival: arrival), records[slot].decision == nil else { return nil }
            return slot
        }

        /// The record in a slot `slot(of:)` gave, to read or change in place.
        subscript(slot slot: Int) -> Entry {
            get { records[slot] }
            _modify { yield &records[slot] }
        }

        /// Keeps `entry` for `id`, which has no record; returns its slot.
        mutating func insert(_ entry: Entry, for id: TraceID) -> Int {
            let slot: UInt32
            if let vacant = vacant.popLast() {
                slot = vacant
                records[Int(slot)] = entry
            } else {
                // At most `num_traces` (100,000,000) records: a slot number fits 32 bits.
                slot = UInt32(records.count)
                records.append(entry)
            }
            slots[id] = slot
            return Int(slot)
        }

        /// Forgets the trace `id`, whose record is in `slot`, and frees the slot.
        mutating func remove(_ id: TraceID, at slot: Int) {
            slots[id] = nil
            // The vacant record holds no chunk, so the pages its spans were on can be reused.
            records[slot] = .vacant
            vacant.append(UInt32(slot))
        }

        /// Forgets every trace and lets go of the room.
        mutating func removeAll() {
            slots.removeAll()
            records.removeAll()
            vacant.removeAll()
        }
    }
}
