import Foundation

/// A baseline of one positive quantity (a duration, a token count, a per-trace count), learned online in
/// constant memory and robust to outliers. Values are compared in log space (`log(1 + x)`), where latencies
/// and token counts are roughly symmetric and a ×5 change is the same distance at any scale.
///
/// - Until `minSamples` observations the first ones are kept and the baseline is their exact median and
///   MAD (median absolute deviation).
/// - After that the median and the MAD are tracked by decaying quantile estimates: each observation moves
///   the median by `rate · σ` towards itself and scales the MAD by `1 ± rate` (up when the observation is
///   farther than the MAD, down otherwise), so both settle where half the recent observations lie on
///   either side, and follow slow drift with weights decaying by about `rate` per observation. An outlier
///   moves them by one step only, however far it is.
/// - `recent` is a fast exponentially weighted mean of the last few observations, each clipped to
///   ±`clip` spreads, so one extreme value alone cannot make the series anomalous.
///
/// The score is the robust z-score `(recent − median) / σ` with `σ = 1.4826 · MAD` (the normal
/// distribution's standard deviation for the same MAD), floored at `minimumSpread`.
struct RobustBaseline: Sendable, Equatable {
    /// Observations seen, in total.
    private(set) var count = 0
    /// The first observations (log space), until the baseline exists; then empty.
    private var firstSamples: [Double] = []
    /// The tracked median, log space.
    private(set) var median = 0.0
    /// The tracked MAD, log space.
    private(set) var mad = 0.0
    /// The fast mean of recent clipped observations, log space.
    private(set) var recent = 0.0

    /// How far one observation moves the estimates (0.02: about the last 50 observations weigh most).
    static let defaultRate = 0.02
    /// The weight of the newest observation in `recent`.
    static let recentWeight = 0.35
    /// Each observation counts in `recent` at most this many spreads from the median.
    static let clip = 8.0
    /// The smallest spread in log space (≈ 10 %): steadier series are treated as this noisy.
    static let minimumSpread = 0.1

    /// True once `minSamples` observations built the baseline.
    private(set) var isReady = false

    /// The robust standard deviation, log space.
    var spread: Double { max(1.4826 * mad, Self.minimumSpread) }

    /// The typical value in the quantity's own units.
    var typical: Double { Foundation.exp(median) - 1 }

    /// The recent level in the quantity's own units.
    var recentLevel: Double { Foundation.exp(recent) - 1 }

    /// How unusual the recent level is: robust z-score, positive when above the median.
    var score: Double { isReady ? (recent - median) / spread : 0 }

    /// The value, in the quantity's own units, at which the recent level would reach `score`.
    func level(atScore score: Double) -> Double { Foundation.exp(median + score * spread) - 1 }

    /// The score one value alone would have.
    func score(of value: Double) -> Double { isReady ? (Foundation.log1p(max(value, 0)) - median) / spread : 0 }

    /// Learns `value` (negative values count as 0); `minSamples` observations make the baseline.
    mutating func observe(_ value: Double, minSamples: Int, rate: Double = RobustBaseline.defaultRate) {
        let y = Foundation.log1p(max(value, 0))
        count += 1
        if !isReady {
            firstSamples.append(y)
            recent = y
            if firstSamples.count >= minSamples {
                median = Self.median(firstSamples)
                mad = Self.median(firstSamples.map { abs($0 - median) })
                firstSamples = []
                recent = median
                isReady = true
            }
            return
        }
        // Clip before anything learns from it.
        let sigma = spread
        let clipped = min(max(y, median - Self.clip * sigma), median + Self.clip * sigma)
        recent += Self.recentWeight * (clipped - recent)
        if y > median { median += rate * sigma } else if y < median { median -= rate * sigma }
        let deviation = abs(y - median)
        if deviation > mad { mad = max(mad, Self.minimumSpread / 1.4826 / 4) * (1 + rate) } else { mad *= 1 - rate }
    }

    /// The median of a non-empty list.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// A decaying estimate of one quantile (`q`) of a positive quantity, in log space: each observation moves it
/// by `rate · q` up when above, `rate · (1 − q)` down when below, so it settles where a share `q` of the
/// recent observations lie below it (stochastic quantile tracking).
struct QuantileTracker: Sendable, Equatable {
    /// The tracked quantile.
    let q: Double
    /// Observations seen.
    private(set) var count = 0
    /// The estimate, log space.
    private(set) var estimate = 0.0

    init(q: Double) { self.q = q }

    /// The estimate in the quantity's own units.
    var value: Double { Foundation.exp(estimate) - 1 }

    /// Learns `value`; the first observation starts the estimate.
    mutating func observe(_ value: Double, rate: Double = 0.05) {
        let y = Foundation.log1p(max(value, 0))
        count += 1
        if count == 1 {
            estimate = y
            return
        }
        if y > estimate { estimate += rate * q } else { estimate -= rate * (1 - q) }
    }
}

/// The chance of at least `k` events when `lambda` are expected (Poisson upper tail), as `-log10`:
/// the error signal's score. 0 when `k` is not above the expectation.
func poissonSurprise(_ k: Int, expected lambda: Double) -> Double {
    guard k > 0, Double(k) > lambda else { return 0 }
    let l = max(lambda, 1e-12)
    // P(K ≥ k) = 1 − Σ_{i<k} e^−λ λ^i / i!; summed from the tail for accuracy when it is small.
    var term = Foundation.exp(-l + Double(k) * Foundation.log(l) - Foundation.lgamma(Double(k) + 1))
    var tail = term
    var i = k
    while i < k + 1000 {
        i += 1
        term *= l / Double(i)
        tail += term
        if term < tail * 1e-12 { break }
    }
    return tail > 0 ? min(-Foundation.log10(tail), 300) : 300
}
