// HostileInputTests.swift — every exported entry point handed bad arguments
// (Tests/CPrograms/hostile.c), under GoMalloc and under glibc, against README.md's table
// ("Hostile input"): the table is the documented behaviour, this test keeps it true.
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class HostileInputTests: XCTestCase {
    /// hostile.c's outcomes, in its order: (case, outcome).
    private func outcomes(preload: Bool) throws -> [(String, String)] {
        let exe = try DropIn.compile("hostile.c")
        var env: [String: String?] = ["LD_PRELOAD": nil]
        if preload {
            guard case .gomalloc = try DropIn.allocator() else { throw XCTSkip("needs GoMalloc") }
            env = DropIn.environment(for: try DropIn.allocator())
        }
        let r = try DropIn.run(exe, [], environment: env, timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.last, "OK hostile", r.summary)
        return lines.dropLast().map { line in
            let parts = line.components(separatedBy: " | ")
            return (parts[0], parts.dropFirst().joined(separator: " | "))
        }
    }

    /// "2.36" on Debian 12 (confstr's "glibc 2.36").
    private var glibcVersion: String {
        var buffer = [CChar](repeating: 0, count: 64)
        guard confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 else { return "" }
        return String(cString: buffer).replacingOccurrences(of: "glibc ", with: "")
    }

    /// Under GoMalloc every bad pointer aborts with our one-line report (never a crash, never
    /// silence), and every outcome is README's; glibc's column is checked where the machine's
    /// glibc is the 2.36 the table names.
    func testEveryEntryPointAgainstTheReadmeTable() throws {
        let ours = try outcomes(preload: true)
        let theirs = try outcomes(preload: false)
        XCTAssertEqual(ours.map(\.0), theirs.map(\.0))
        for (name, outcome) in ours {
            XCTAssertFalse(outcome.hasPrefix("signal"), "\(name): GoMalloc crashed (\(outcome))")
            if outcome.hasPrefix("abort:") {
                XCTAssertTrue(outcome.hasPrefix("abort: gomalloc: ") && outcome.hasSuffix("0x…"),
                              "\(name): not our one-line report naming the pointer: \(outcome)")
            }
        }
        let readme = try String(contentsOf: DropIn.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        let section = try XCTUnwrap(lines.firstIndex(of: "### Hostile input"), "README.md has no '### Hostile input'")
        let start = try XCTUnwrap(lines[section...].firstIndex { $0.hasPrefix("| Call |") })
        let rows = lines[start...].prefix { $0.hasPrefix("|") }.dropFirst(2).map { row in
            row.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
        }
        func cell(_ s: String) -> String { "`\(s)`" }
        var expected = ["| Call | GoMalloc | glibc 2.36 |", "|---|---|---|"]
        for ((name, mine), (_, glibc)) in zip(ours, theirs) { expected.append("| \(cell(name)) | \(mine) | \(glibc) |") }
        XCTAssertEqual(rows.count, ours.count, "README rows; it should read:\n" + expected.joined(separator: "\n"))
        let checkGlibc = glibcVersion == "2.36"
        for (i, row) in rows.enumerated() where i < ours.count && row.count == 3 {
            XCTAssertEqual(row[0], cell(ours[i].0), "row \(i)")
            XCTAssertEqual(row[1], ours[i].1, "\(ours[i].0): GoMalloc; the table should read:\n" + expected.joined(separator: "\n"))
            if checkGlibc { XCTAssertEqual(row[2], theirs[i].1, "\(ours[i].0): glibc \(glibcVersion)") }
        }
    }
}
