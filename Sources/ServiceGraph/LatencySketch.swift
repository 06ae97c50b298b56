import Foundation

/// Quantiles of durations with a bounded relative error: a DDSketch (Masson, Rim, Lee, "DDSketch: a fast
/// and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019).
///
/// A value x > 0 goes to bucket `ceil(log_γ(x))` with γ = (1 + α) / (1 − α); the bucket's estimate
/// 2γ^i / (γ + 1) is within α of every value in it ("the sketch is α-accurate: the value it returns for
/// the q-quantile is within a relative error α of the exact q-quantile"). Here α = 1%.
///
/// Memory is fixed: at most `maxBuckets` counters (4 bytes each) over a contiguous range of bucket
/// indices. When a value would widen the range past that, the lowest buckets are folded into the
/// lowest kept one (the paper's collapsing strategy), so high quantiles keep their guarantee and only
/// quantiles among the smallest values lose it. 1024 buckets at α = 1% cover a ratio of
/// γ^1024 ≈ 8·10^8 between the smallest and largest value (1 µs to 13 minutes) before anything folds.
struct LatencySketch: Sendable, Equatable {
    /// The relative accuracy α.
    static let relativeAccuracy = 0.01
    static let gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy)
    static let logGamma = log(gamma)
    /// Counters kept at most.
    static let maxBuckets = 1024
    /// Values at or below this (seconds) are counted as zero.
    static let zeroThreshold = 1e-9

    /// Counts of buckets `offset ..< offset + counts.count`.
    private(set) var counts: [UInt32] = []
    private(set) var offset = 0
    private(set) var zeroCount: UInt64 = 0
    /// Values added.
    private(set) var total: UInt64 = 0

    static func index(_ value: Double) -> Int { Int((log(value) / logGamma).rounded(.up)) }

    static func estimate(_ index: Int) -> Double { 2 * pow(gamma, Double(index)) / (gamma + 1) }

    /// Adds one value (seconds; negative and NaN count as zero).
    mutating func add(_ value: Double) {
        total += 1
        guard value > Self.zeroThreshold, value.isFinite else { return zeroCount += 1 }
        add(index: Self.index(value), count: 1)
    }

    /// Adds every value of `other`.
    mutating func merge(_ other: LatencySketch) {
        total += other.total
        zeroCount += other.zeroCount
        for (position, count) in other.counts.enumerated() where count > 0 {
            add(index: other.offset + position, count: count)
        }
    }

    private mutating func add(index: Int, count: UInt32) {
        if counts.isEmpty {
            offset = index
            counts = [count]
            return
        }
        var index = index
        if index < offset {
            // Below the range: widen downwards if there is room, else fold into the lowest bucket.
            let room = Self.maxBuckets - counts.count
            if offset - index <= room {
                counts.insert(contentsOf: repeatElement(0, count: offset - index), at: 0)
                offset = index
            } else {
                index = offset
            }
        } else if index >= offset + counts.count {
            let needed = index - offset + 1
            if needed > Self.maxBuckets {
                // Fold the lowest buckets so the new highest one fits.
                let fold = min(needed - Self.maxBuckets, counts.count)
                var folded: UInt32 = 0
                for position in 0..<fold { folded = Self.saturating(folded, counts[position]) }
                counts.removeFirst(fold)
                offset += fold
                if counts.isEmpty { counts = [0] }
                counts[0] = Self.saturating(counts[0], folded)
            }
            counts.append(contentsOf: repeatElement(0, count: index - offset + 1 - counts.count))
        }
        counts[index - offset] = Self.saturating(counts[index - offset], count)
    }

    private static func saturating(_ a: UInt32, _ b: UInt32) -> UInt32 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// The nearest-rank q-quantile (the value of rank ⌈q·n⌉, 1-based, among the n added), in seconds;
    /// nil when empty.
    func quantile(_ q: Double) -> Double? {
        guard total > 0 else { return nil }
        let rank = max(1, UInt64((Double(total) * q).rounded(.up)))
        var seen = zeroCount
        if seen >= rank { return 0 }
        for (position, count) in counts.enumerated() {
            seen += UInt64(count)
            if seen >= rank { return Self.estimate(offset + position) }
        }
        return counts.isEmpty ? 0 : Self.estimate(offset + counts.count - 1)
    }

    /// p50, p95 and p99 in milliseconds, rounded to 0.001 ms; empty when nothing was added. `quantile` of
    /// each, in one pass over the buckets.
    var percentilesMilliseconds: [Double] {
        guard total > 0 else { return [] }
        var result: [Double] = []
        result.reserveCapacity(3)
        var seen = zeroCount
        var position = 0
        for q in [0.5, 0.95, 0.99] {
            let rank = max(1, UInt64((Double(total) * q).rounded(.up)))
            while seen < rank, position < counts.count {
                seen += UInt64(counts[position])
                position += 1
            }
            let seconds: Double
            if seen >= rank {
                // The first bucket that reaches the rank (ranks only grow, so the walk goes on from there).
                seconds = position == 0 ? 0 : Self.estimate(offset + position - 1)
            } else {
                seconds = counts.isEmpty ? 0 : Self.estimate(offset + counts.count - 1)
            }
            result.append((seconds * 1e6).rounded() / 1000)
        }
        return result
    }
}
