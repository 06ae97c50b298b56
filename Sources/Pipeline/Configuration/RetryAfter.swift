/// HTTP's `Retry-After` header, as every HTTP sender (exporters, alert sinks) reads it.
///
/// RFC 9110 §10.2.3: "The value of this field can be either an HTTP-date or a number of seconds to delay
/// after receiving the response." §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST
/// accept all three HTTP-date formats" — IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete
/// RFC 850 form (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
public enum RetryAfter {
    /// The delay `value` asks for, measured from `now` (seconds since 1970) for the date forms; a date in the
    /// past is no delay. Nil when the value is neither form.
    public static func delay(_ value: String, now: Double) -> Duration? {
        let text = value.trimmingCharacters(inSet: " \t")
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            // delay-seconds = 1*DIGIT; a huge number is capped rather than refused.
            guard let seconds = Int(text) else { return .seconds(Int(Int32.max)) }
            return .seconds(seconds)
        }
        guard let date = httpDate(text, now: now) else { return nil }
        let milliseconds = (Double(date) - now) * 1000
        return .milliseconds(Int64(max(0, milliseconds.rounded(.up))))
    }

    /// Seconds since 1970 of an HTTP-date in any of its three formats, or nil; `now` (seconds since 1970)
    /// places an RFC 850 two-digit year in its century.
    public static func httpDate(_ text: String, now: Double) -> Int64? {
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        // IMF-fixdate: day-name "," SP date1 SP time-of-day SP GMT, date1 = day SP month SP year.
        if words.count == 6, words[0].hasSuffix(","), dayNames.contains(String(words[0].dropLast())), words[5] == "GMT",
           let day = twoDigits(words[1]), let month = month(words[2]), words[3].count == 4, let year = Int(words[3]),
           let time = timeOfDay(words[4]) {
            return epochSeconds(year: year, month: month, day: day, time: time)
        }
        // RFC 850: day-name-l "," SP date2 SP time-of-day SP GMT, date2 = day "-" month "-" 2DIGIT.
        if words.count == 4, words[0].hasSuffix(","), longDayNames.contains(String(words[0].dropLast())), words[3] == "GMT" {
            let parts = words[1].split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 3, let day = twoDigits(parts[0]), let month = month(parts[1]), let shortYear = twoDigits(parts[2]),
               let time = timeOfDay(words[2]) {
                // "Recipients of a timestamp value in rfc850-date format, which uses a two-digit year, MUST
                // interpret a timestamp that appears to be more than 50 years in the future as representing
                // the most recent year in the past that had the same last two digits." (RFC 9110 §5.6.7)
                let currentYear = 1970 + Int(now / 31_556_952)
                var year = currentYear - currentYear % 100 + shortYear
                if year > currentYear + 50 { year -= 100 }
                return epochSeconds(year: year, month: month, day: day, time: time)
            }
        }
        // asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT )) SP time-of-day SP year.
        if words.count == 5, dayNames.contains(words[0]), let month = month(words[1]), words[2].count <= 2,
           let day = Int(words[2]), let time = timeOfDay(words[3]), words[4].count == 4, let year = Int(words[4]) {
            return epochSeconds(year: year, month: month, day: day, time: time)
        }
        return nil
    }

    private static let dayNames: Set<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    private static let longDayNames: Set<String> = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func month(_ name: String) -> Int? {
        monthNames.firstIndex(of: name).map { $0 + 1 }
    }

    private static func twoDigits(_ text: String) -> Int? {
        guard text.count == 2, text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(text)
    }

    private static func timeOfDay(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let hour = twoDigits(parts[0]), let minute = twoDigits(parts[1]),
              let second = twoDigits(parts[2]), hour < 24, minute < 60, second <= 60 else { return nil }
        return hour * 3600 + minute * 60 + second
    }

    /// Seconds since 1970-01-01 of a proleptic Gregorian date (days-from-civil), or nil for an impossible date.
    private static func epochSeconds(year: Int, month: Int, day: Int, time: Int) -> Int64? {
        let monthLengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        guard (1...12).contains(month), day >= 1, day <= monthLengths[month - 1] + (month == 2 && leap ? 1 : 0) else { return nil }
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Int64(days) * 86_400 + Int64(time)
    }
}

extension String {
    fileprivate func trimmingCharacters(inSet characters: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice.removeFirst() }
        while let last = slice.last, characters.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
