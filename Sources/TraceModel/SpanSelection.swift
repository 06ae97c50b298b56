/// Some of one resource's spans, picked where they lie: runs of consecutive spans of its scopes, in
/// order (one trace's spans of a batch, say). Reading the spans through it copies none: a span copied
/// whole costs a retain and a release for each of its strings and arrays.
public struct SpanSelection: Sendable {
    /// Consecutive spans of one scope.
    public struct Run: Sendable, Equatable {
        /// The scope's index in `resourceSpans.scopeSpans`.
        public var scope: Int
        /// The spans' indices in that scope.
        public var spans: Range<Int>

        public init(scope: Int, spans: Range<Int>) {
            self.scope = scope
            self.spans = spans
        }
    }

    /// The resource the spans are picked from, shared rather than copied.
    public let resourceSpans: ResourceSpans
    /// The runs, in order of scope and then of span; runs of one scope do not overlap.
    public private(set) var runs: [Run]
    /// The spans picked.
    public private(set) var spanCount: Int

    /// Every span of `resourceSpans`, and every scope, those without spans too.
    public init(whole resourceSpans: ResourceSpans) {
        self.resourceSpans = resourceSpans
        runs = resourceSpans.scopeSpans.indices.map { Run(scope: $0, spans: resourceSpans.scopeSpans[$0].spans.indices) }
        spanCount = resourceSpans.spanCount
    }

    /// No span of `resourceSpans` yet; `append` picks some.
    public init(of resourceSpans: ResourceSpans) {
        self.resourceSpans = resourceSpans
        runs = []
        spanCount = 0
    }

    /// Picks the spans `spans` of scope `scope`, which come after every span picked so far.
    public mutating func append(scope: Int, spans: Range<Int>) {
        runs.append(Run(scope: scope, spans: spans))
        spanCount += spans.count
    }

    /// The resource.
    public var resource: Resource { resourceSpans.resource }

    /// Whether some picked span matches. `matches` is given its scope's spans and its index, and reads
    /// the fields it needs where the span lies.
    public func containsSpan(where matches: (_ spans: [Span], _ index: Int) -> Bool) -> Bool {
        for run in runs {
            let spans = resourceSpans.scopeSpans[run.scope].spans
            for index in run.spans where matches(spans, index) { return true }
        }
        return false
    }

    /// Calls `body` with each scope that has picked spans and the runs of it, in order.
    public func forEachScope(_ body: (_ scope: ScopeSpans, _ runs: ArraySlice<Run>) throws -> Void) rethrows {
        var start = runs.startIndex
        while start < runs.endIndex {
            var end = start + 1
            while end < runs.endIndex, runs[end].scope == runs[start].scope { end += 1 }
            try body(resourceSpans.scopeSpans[runs[start].scope], runs[start..<end])
            start = end
        }
    }

    /// The picked spans as a resource spans of their own: the resource, and each scope they came in
    /// with its picked spans, in order. The spans are copied.
    public func copied() -> ResourceSpans {
        if spanCount == resourceSpans.spanCount { return resourceSpans }
        var copy = ResourceSpans(resource: resourceSpans.resource, scopeSpans: [], schemaURL: resourceSpans.schemaURL)
        forEachScope { scope, runs in
            var picked = ScopeSpans(scope: scope.scope, spans: [], schemaURL: scope.schemaURL)
            picked.spans.reserveCapacity(runs.reduce(0) { $0 + $1.spans.count })
            for run in runs { picked.spans.append(contentsOf: scope.spans[run.spans]) }
            copy.scopeSpans.append(picked)
        }
        return copy
    }
}
