import Pipeline
import Testing

@Suite("Retry-After")
struct RetryAfterTests {
    /// RFC 9110 §5.6.7's example, "Sun, 06 Nov 1994 08:49:37 GMT", is 784111777 seconds after 1970
    /// (Python's `calendar.timegm(email.utils.parsedate(...))`).
    static let example: Int64 = 784_111_777

    @Test("delay-seconds and the three HTTP-date formats of RFC 9110 §5.6.7")
    func forms() {
        #expect(RetryAfter.delay("120", now: 0) == .seconds(120))
        #expect(RetryAfter.delay(" 0 ", now: 0) == .zero)
        let now = Double(Self.example - 30)
        for date in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            #expect(RetryAfter.httpDate(date, now: now) == Self.example, "\(date)")
            #expect(RetryAfter.delay(date, now: now) == .seconds(30), "\(date)")
        }
    }

    @Test("a date in the past is no delay; anything else is not a Retry-After")
    func pastAndMalformed() {
        #expect(RetryAfter.delay("Sun, 06 Nov 1994 08:49:37 GMT", now: Double(Self.example + 5)) == .zero)
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994 08:49:37 CET", "Sun, 31 Feb 1994 08:49:37 GMT",
                    "Sun, 06 Nov 1994 25:49:37 GMT", "Sunday, 06-Nov-1994 08:49:37 GMT"] {
            #expect(RetryAfter.delay(bad, now: 0) == nil, "\(bad)")
        }
    }

    @Test("an RFC 850 two-digit year more than 50 years ahead is the century before")
    func rfc850Century() {
        // Now in 2026: "94" is 1994, "30" is 2030 (4 years ahead), "99" is 1999 (2099 would be 73 years ahead).
        let now = Double(RetryAfter.httpDate("Thu, 03 Dec 2026 05:00:00 GMT", now: 0)!)
        #expect(RetryAfter.httpDate("Wednesday, 01-Jan-30 00:00:00 GMT", now: now) == 1_893_456_000)
        #expect(RetryAfter.httpDate("Friday, 01-Jan-99 00:00:00 GMT", now: now) == 915_148_800)
    }
}
