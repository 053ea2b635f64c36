// SoakTests.swift — the soak program (Tests/CPrograms/soak.c) in its bounded form: 20 s,
// 8 threads, a server-like mix with every byte verified, a forked child every 2 s, a
// watchdog for stalls. The README's Reliability section gives the long runs.
import Foundation
import XCTest

final class SoakTests: XCTestCase {
    func testSoakTwentySeconds() throws {
        let r = try DropIn.runProgram("soak.c", ["20", "8"], timeout: 120)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let summary = try XCTUnwrap(lines.first { $0.hasPrefix("soak: ") }, r.summary)
        // At least 8 forked children ran and checked their heap (one every 2 s).
        let forks = summary.components(separatedBy: ", ").first { $0.hasSuffix(" forks") }
            .flatMap { Int($0.split(separator: " ")[0]) }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(forks, summary), 8, summary)
    }
}
