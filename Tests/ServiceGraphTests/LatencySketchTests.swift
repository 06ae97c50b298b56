import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import ServiceGraph

@Suite("service graph latency sketch")
struct LatencySketchTests {
    /// The exact nearest-rank quantile: the value of rank ⌈q·n⌉ among the sorted values.
    static func exact(_ values: [Double], _ q: Double) -> Double {
        let sorted = values.sorted()
        return sorted[max(1, Int((Double(sorted.count) * q).rounded(.up))) - 1]
    }

    /// DDSketch's guarantee (Masson et al. 2019, Definition 2): the returned q-quantile x̃ satisfies
    /// |x̃ − x_q| ≤ α·x_q.
    @Test("quantiles are within the relative accuracy of the exact ones, also after merging", arguments: [1, 7, 42])
    func relativeAccuracy(seed: UInt64) {
        var generator = SplitMix64(seed: seed)
        // Log-uniform from 1 ms to 100 s: the spread of LLM and tool call times.
        let values = (0..<5_000).map { _ in 0.001 * pow(100_000, Double.random(in: 0..<1, using: &generator)) }
        var whole = LatencySketch(), left = LatencySketch(), right = LatencySketch()
        for (index, value) in values.enumerated() {
            whole.add(value)
            if index % 2 == 0 { left.add(value) } else { right.add(value) }
        }
        left.merge(right)
        for q in [0.5, 0.95, 0.99] {
            let want = Self.exact(values, q)
            for sketch in [whole, left] {
                let got = sketch.quantile(q) ?? .nan
                #expect(abs(got - want) <= LatencySketch.relativeAccuracy * want * (1 + 1e-9), "q \(q): \(got) vs \(want)")
            }
        }
    }

    @Test("memory is bounded: a range wider than the buckets folds the lowest and keeps the high quantiles")
    func bounded() {
        var sketch = LatencySketch()
        var values: [Double] = []
        var value = 1e-8
        while value < 1e6 {
            values.append(value)
            sketch.add(value)
            value *= 1.01
        }
        #expect(sketch.counts.count <= LatencySketch.maxBuckets)
        let want = Self.exact(values, 0.99)
        #expect(abs((sketch.quantile(0.99) ?? 0) - want) <= LatencySketch.relativeAccuracy * want * (1 + 1e-9))
    }

    /// Calls of 70 ms, 140 ms, … 7 s: exact nearest-rank p50 = 3500 ms, p95 = 6650 ms, p99 = 6930 ms. Tempo's
    /// bucket bounds would say p95 = 12800 ms (the 6.4–12.8 s bucket's upper bound).
    @Test("node and edge percentiles in the graph come from the durations, not from histogram bounds")
    func graphPercentiles() throws {
        let graph = ServiceGraph(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        graph.record((1...100).map {
            EdgeObservation(client: "agent", server: "llm", connectionType: "", dimensions: [], failed: false,
                            clientSeconds: nil, serverSeconds: Double($0) * 0.07, time: 1)
        })
        let snapshot = graph.snapshot()
        let node = try #require(snapshot.nodes.first { $0.id == "llm" })
        let edge = try #require(snapshot.edges.first)
        for percentiles in [node.percentiles, edge.percentiles] {
            #expect(percentiles.count == 3)
            for (got, want) in zip(percentiles, [3500.0, 6650, 6930]) {
                #expect(abs(got - want) <= want * LatencySketch.relativeAccuracy + 0.001, "\(percentiles)")
            }
        }
    }
}
