// SoakTests.swift — the soak program (Tests/CPrograms/soak.c) in its bounded form: 20 s,
// 8 threads, a server-like mix with every byte verified, a forked child every 2 s, a
// watchdog for stalls. The README's Reliability section gives the long runs.
import Foundation
import XCTest

final class SoakTests: XCTestCase {
    func testSoakTwentySeconds() throws {
        let allocator = try DropIn.allocator()
        let exe = try DropIn.compile("soak.c")
        let r = try DropIn.run(exe, ["20", "8"], environment: DropIn.environment(for: allocator), timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.last, "OK soak", r.summary)
        let summary = try XCTUnwrap(lines.first { $0.hasPrefix("soak: ") }, r.summary)
        // At least 8 forked children ran and checked their heap (one every 2 s).
        let forks = summary.components(separatedBy: ", ").first { $0.hasSuffix(" forks") }
            .flatMap { Int($0.split(separator: " ")[0]) }
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(forks, summary), 8, summary)
    }
}
