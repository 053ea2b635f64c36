// DebugModeTests.swift — GOMALLOC_DEBUG=1, the hardened mode (Debug.swift), under real
// processes: a clean workload runs unchanged, a write after free is reported in one line
// naming the block and the byte, an overrun past a large block faults on its guard page,
// and a real program (Python) runs under it.
import Foundation
import XCTest

final class DebugModeTests: XCTestCase {
    private func run(_ mode: String) throws -> DropIn.Result {
        let library = try DropIn.requireLibrary("the hardened mode")
        let exe = try DropIn.compile("debug_mode.c")
        return try DropIn.run(exe, [mode], environment: DropIn.environment(
            for: .gomalloc(library: library), ["GOMALLOC_DEBUG": "1"]), timeout: 120)
    }

    private func address(_ r: DropIn.Result) throws -> Substring {
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("addr ") }, r.summary)
        return line.dropFirst("addr ".count)
    }

    /// Sizes from 1 B to 300 KiB, calloc, realloc up and down, frees from four other threads:
    /// every byte reads back, nothing is reported.
    func testCleanWorkloadRunsUnchanged() throws {
        let r = try run("clean")
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stdout.split(separator: "\n").last, "OK debug_mode", r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
    }

    /// A byte written into a freed 64-byte block: the malloc that hands the block back reports
    /// it (the block's address and the byte's offset) and aborts.
    func testWriteAfterFreeIsReportedWhenTheBlockIsReused() throws {
        let r = try run("uaf")
        XCTAssertTrue(r.signaled && r.status == SIGABRT, "want SIGABRT: \(r.summary)")
        XCTAssertEqual(r.stderr, "gomalloc: malloc(): write after free \(try address(r)) (byte 10)\n", r.summary)
    }

    /// One byte past malloc_usable_size of a large block is the guard page: SIGSEGV at once.
    func testOverrunPastALargeBlockFaults() throws {
        let r = try run("overrun")
        XCTAssertTrue(r.signaled && r.status == SIGSEGV, "want SIGSEGV: \(r.summary)")
        _ = try address(r)
    }

    /// Python (its allocator hands small objects to malloc with PYTHONMALLOC=malloc) under the
    /// hardened mode: the same output as without it.
    func testPythonRunsUnderTheHardenedMode() throws {
        let library = try DropIn.requireLibrary("the hardened mode")
        let python = try DropIn.tool("python3", package: "python3 (.ci/run installs it)")
        let script = "import json, collections\nd = collections.Counter(str(i % 97) for i in range(200000))\nprint(json.dumps(sorted(d.items())[:5]), sum(d.values()))\n"
        let env: [String: String] = ["PYTHONMALLOC": "malloc", "GOMALLOC_DEBUG": "1"]
        let r = try DropIn.run(python, ["-c", script], environment: DropIn.environment(for: .gomalloc(library: library), env), timeout: 120)
        let plain = try DropIn.run(python, ["-c", script], environment: ["PYTHONMALLOC": "malloc", "LD_PRELOAD": nil], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stderr, "", r.summary)
        XCTAssertEqual(r.stdout, plain.stdout)
    }
}
