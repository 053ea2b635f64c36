// StressTests.swift — the allocator core under stress and under deliberately stretched races.
//
// Kinds of test:
//   * bad frees that a sweep could hide (stress_misuse.c): one line, then SIGABRT;
import Foundation
import XCTest
@testable import GoMalloc

final class StressTests: XCTestCase {
    /// The programs this file runs (DropInTests.testEveryProgramHasATest counts them too).
    static let programs: [String: String] = [
        "stress_misuse.c": "testLateDoubleFree*, testFreeOfUnallocatedSlotAborts",
    ]

    // MARK: - Bad frees a sweep could hide

    /// Run `stress_misuse MODE` with one P: it must die of SIGABRT after exactly
    /// `gomalloc: free(): <problem> <address it announced>`.
    private func expectAbort(mode: String, problem: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let library = try DropIn.requireLibrary("the misuse reports")
        let exe = try DropIn.compile("stress_misuse.c", extraFlags: ["-O2"], tag: "O2")
        let env = DropIn.environment(for: .gomalloc(library: library), ["GOMALLOC_MAXPROCS": "1"])
        let r = try DropIn.run(exe, [mode], environment: env, timeout: 60)
        XCTAssertFalse(r.exitedNormally && r.status == 4, "stress_misuse \(mode): unexpected layout: \(r.summary)",
                       file: file, line: line)
        XCTAssertTrue(r.signaled && r.status == SIGABRT, "stress_misuse \(mode): want SIGABRT, got \(r.summary)",
                      file: file, line: line)
        guard let addrLine = r.stdout.split(separator: "\n").first(where: { $0.hasPrefix("addr ") }) else {
            return XCTFail("stress_misuse \(mode) printed no address: \(r.summary)", file: file, line: line)
        }
        let address = addrLine.dropFirst("addr ".count)
        XCTAssertEqual(r.stderr, "gomalloc: free(): \(problem) \(address)\n", "stress_misuse \(mode)", file: file, line: line)
    }

    /// The second free of a block whose first free a sweep has merged, in the span this P
    /// allocates from: left alone, the slot is handed out again and the stale free bit then
    /// frees the new owner's block at the next sweep.
    func testLateDoubleFreeInOwnSpanAborts() throws {
        try expectAbort(mode: "late-double-free", problem: "double free")
    }

    /// The start of a slot that was never handed out, in the span this P allocates from
    /// (reported as a double free: the slot's bits cannot tell the two apart).
    func testFreeOfUnallocatedSlotAborts() throws {
        try expectAbort(mode: "free-unallocated-slot", problem: "double free")
    }

    func testLateDoubleFreeInCentralSpanAborts() throws {
        try expectAbort(mode: "remote-late-double-free", problem: "double free")
    }
}
