// OptionsTests: the GOMALLOC_* options table (Sources/GoMallocCore/Options.swift) is
// consistent, README.md's options table is exactly this table, `gomalloc --help` lists every
// option, and Option.read() parses the environment as documented: clamps to the bounds, and
// falls back to the default when unset, empty, non-numeric or followed by garbage.
import Foundation
import XCTest
@testable import gomalloc
import GoMallocCoreHosted

final class OptionsTests: XCTestCase {
    private static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    // MARK: - The table

    func testTableIsConsistent() {
        var names = Set<String>()
        for option in Option.allCases {
            let r = option.row
            let name = "\(r.name)"
            XCTAssertTrue(name.hasPrefix("GOMALLOC_"), name)
            XCTAssertTrue(names.insert(name).inserted, "\(name) appears twice")
            XCTAssertLessThanOrEqual(r.min, r.max, name)
            if option != .maxProcs {
                XCTAssertTrue((r.min...r.max).contains(r.defaultValue), "\(name): default outside its bounds")
            }
            // Where the documented default or range is a number, it is the table's number.
            if let documented = Int("\(r.defaultDoc)") { XCTAssertEqual(documented, r.defaultValue, name) }
            let bounds = "\(r.rangeDoc)".split(separator: "–").map { Int($0) }
            if bounds.count == 2, let lo = bounds[0], let hi = bounds[1] {
                XCTAssertEqual(lo, r.min, name)
                XCTAssertEqual(hi, r.max, name)
            }
            XCTAssertFalse("\(r.doc)".isEmpty, name)
        }
        XCTAssertEqual(Option.maxProcs.row.defaultValue, 0, "0 means: the CPUs this process may use")
    }

    /// README.md's table under "## Options", rendered from the table; any edit to either
    /// side that the other lacks fails here (regenerate the README rows from this text).
    func testReadmeTableIsTheOptionsTable() throws {
        var expected = ["| Variable | Default | Range | Meaning |", "|---|---|---|---|"]
        for option in Option.allCases {
            let r = option.row
            expected.append("| `\(r.name)` | \(r.defaultDoc) | \(r.rangeDoc) | \(r.doc) |")
        }
        let readme = try String(contentsOf: Self.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        let section = try XCTUnwrap(lines.firstIndex(of: "## Options"), "README.md has no '## Options' section")
        let start = try XCTUnwrap(
            lines[section...].firstIndex { $0.hasPrefix("| Variable |") }, "no table under '## Options'")
        let table = Array(lines[start...].prefix { $0.hasPrefix("|") })
        XCTAssertEqual(table, expected, "README.md's options table differs from Options.swift; it should read:\n"
            + expected.joined(separator: "\n"))
    }

    func testHelpListsEveryOption() {
        let help = GoMallocCommand.helpMessage(columns: 10_000)
        for option in Option.allCases {
            let r = option.row
            XCTAssertTrue(help.contains("\(r.name) (\(r.rangeDoc); default: \(r.defaultDoc))"), "\(r.name) missing:\n\(help)")
        }
        XCTAssertEqual(GoMallocCommand.configuration.discussion, OptionsHelp.text)
        XCTAssertTrue(OptionsHelp.text.contains("Number of Ps taken by compare-and-swap."))
        XCTAssertFalse(OptionsHelp.text.contains("`"), "code spans are plain text in --help")
    }

    // MARK: - Parsing

    /// Sets `option`'s variable to `value` (nil: unset) for the duration of `body`, then
    /// restores what was there.
    private func with(_ option: Option, _ value: String?, _ body: () -> Void) {
        let name = "\(option.row.name)"
        let saved = getenv(name).map { String(cString: $0) }
        defer {
            if let saved { setenv(name, saved, 1) } else { unsetenv(name) }
        }
        if let value { setenv(name, value, 1) } else { unsetenv(name) }
        body()
    }

    private func read(_ option: Option, _ value: String?) -> Int {
        var result = 0
        with(option, value) { result = option.read() }
        return result
    }

    func testReadsTheEnvironmentOnEveryCall() {
        XCTAssertEqual(read(.retainPercent, "37"), 37)
        XCTAssertEqual(read(.retainPercent, "38"), 38, "a changed value is seen by the next read")
        XCTAssertEqual(read(.retainPercent, nil), 100)
    }

    func testInRangeValues() {
        XCTAssertEqual(read(.maxProcs, "1"), 1)
        XCTAssertEqual(read(.maxProcs, "256"), 256)
        XCTAssertEqual(read(.maxProcs, "007"), 7, "leading zeros are digits")
        XCTAssertEqual(read(.retainPercent, "0"), 0)
        XCTAssertEqual(read(.stats, "1"), 1)
        XCTAssertEqual(read(.stats, "123456"), 123456, "a pid")
    }

    func testClampsToBounds() {
        XCTAssertEqual(read(.maxProcs, "0"), 1, "below min")
        XCTAssertEqual(read(.maxProcs, "257"), 256, "above max")
        XCTAssertEqual(read(.retainPercent, "1001"), 1000)
        XCTAssertEqual(read(.stats, "2147483648"), Int(Int32.max))
    }

    func testLargeValuesClampToMax() {
        XCTAssertEqual(read(.retainPercent, "999999999999"), 1000)
        XCTAssertEqual(read(.retainPercent, "9999999999999"), 1000)
        XCTAssertEqual(read(.maxProcs, "99999999999999999999999999999999999999"), 256, "beyond Int64: no overflow")
        XCTAssertEqual(read(.stats, String(repeating: "9", count: 100)), Int(Int32.max))
        XCTAssertEqual(read(.maxProcs, "000000000000000000000000000000002"), 2, "many leading zeros")
    }

    /// GOMALLOC_STATS=json is a word, not a number: isSet(to:) matches it exactly, and read()
    /// gives the default for it.
    func testStatsJSONWord() {
        func isJSON(_ value: String?) -> Bool {
            var result = false
            with(.stats, value) { result = Option.stats.isSet(to: "json") }
            return result
        }
        XCTAssertTrue(isJSON("json"))
        XCTAssertFalse(isJSON(nil))
        XCTAssertFalse(isJSON(""))
        XCTAssertFalse(isJSON("js"))
        XCTAssertFalse(isJSON("json "))
        XCTAssertFalse(isJSON("jsonx"))
        XCTAssertFalse(isJSON("JSON"))
        XCTAssertFalse(isJSON("1"))
        XCTAssertEqual(read(.stats, "json"), 0)
    }

    /// GOMALLOC_HEAPMAP is a path: string() gives the environment's text, nil when unset.
    func testHeapMapPath() {
        func path(_ value: String?) -> String? {
            var result: String?
            with(.heapMap, value) { result = Option.heapMap.string().map { String(cString: $0) } }
            return result
        }
        XCTAssertNil(path(nil))
        XCTAssertEqual(path("/tmp/heap.%p"), "/tmp/heap.%p")
        XCTAssertEqual(path(""), "")
    }

    /// GOMALLOC_MEMORY_LIMIT: a byte count with an optional K, M or G suffix (powers of
    /// 1024, either case, B or iB after it); malformed is 0 (no limit); huge saturates.
    func testMemoryLimitBytes() {
        func bytes(_ value: String?) -> Int {
            var result = -1
            with(.memoryLimit, value) { result = Option.memoryLimit.readBytes() }
            return result
        }
        XCTAssertEqual(bytes(nil), 0)
        XCTAssertEqual(bytes("100000"), 100_000)
        XCTAssertEqual(bytes("64k"), 64 << 10)
        XCTAssertEqual(bytes("512M"), 512 << 20)
        XCTAssertEqual(bytes("2GiB"), 2 << 30)
        XCTAssertEqual(bytes("3g"), 3 << 30)
        XCTAssertEqual(bytes("100B"), 100)
        for bad in ["", "M", "12x", "-5", "1 G", "5MBs", "1T"] { XCTAssertEqual(bytes(bad), 0, bad) }
        XCTAssertEqual(bytes(String(repeating: "9", count: 40)), Int.max)
        XCTAssertEqual(bytes("99999999999999G"), Int.max, "the suffix saturates too")
    }

    /// GOMALLOC_SCAVENGE: off, eager, anything else on.
    func testScavengeModeWords() {
        func mode(_ value: String?) -> ScavengeMode {
            var result = ScavengeMode.on
            with(.scavenge, value) { result = Option.scavengeMode() }
            return result
        }
        XCTAssertEqual(mode(nil), .on)
        XCTAssertEqual(mode("on"), .on)
        XCTAssertEqual(mode("off"), .off)
        XCTAssertEqual(mode("eager"), .eager)
        XCTAssertEqual(mode("Off"), .on, "words are exact")
        XCTAssertEqual(mode("offf"), .on)
    }

    func testDefaultWhenUnsetOrMalformed() {
        for option in Option.allCases {
            let d = option.row.defaultValue
            XCTAssertEqual(read(option, nil), d, "unset")
            XCTAssertEqual(read(option, ""), d, "empty")
            XCTAssertEqual(read(option, "abc"), d, "non-numeric")
            XCTAssertEqual(read(option, "12abc"), d, "trailing garbage")
            XCTAssertEqual(read(option, "12 "), d, "trailing space")
            XCTAssertEqual(read(option, " 12"), d, "leading space")
            XCTAssertEqual(read(option, "-3"), d, "sign")
            XCTAssertEqual(read(option, "+3"), d, "sign")
            XCTAssertEqual(read(option, "1.5"), d, "not an integer")
            XCTAssertEqual(read(option, "0x10"), d, "hex")
        }
    }
}
