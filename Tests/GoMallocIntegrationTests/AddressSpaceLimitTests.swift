// AddressSpaceLimitTests.swift — a real program under `ulimit -v`: GoMalloc needs what the
// program needs under glibc plus its documented fixed address-space overhead, 96 MiB (the
// 32 MiB arena map, reserved sparse, and the first 64 MiB arena: README "Reliability"),
// and fails cleanly (MemoryError, no crash) below that.
import Foundation
import XCTest

final class AddressSpaceLimitTests: XCTestCase {
    private let script = """
        x = [str(i) * 3 for i in range(600000)]
        d = {s: len(s) for s in x[::3]}
        print(sum(d.values()), len(x))
        print([l for l in open('/proc/self/status').read().split('\\n') if l.startswith('VmPeak')][0].split()[1])
        """

    /// The interpreter itself, not a wrapper script (pyenv's shims run `env` first).
    private func python() throws -> String {
        let shim = try DropIn.tool("python3", package: "python3 (.ci/run installs it)")
        let r = try DropIn.run(shim, ["-c", "import sys; print(sys.executable)"], environment: ["LD_PRELOAD": nil], timeout: 60)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func runLimited(_ python: String, limitKiB: Int, library: String) throws -> DropIn.Result {
        let dir = DropIn.workDir.appendingPathComponent("aslimit-\(limitKiB).py")
        try script.write(to: dir, atomically: true, encoding: .utf8)
        return try DropIn.run("/bin/bash", ["-c", "ulimit -v \(limitKiB) && exec \"$0\" \"$1\"", python, dir.path],
                              environment: DropIn.environment(for: .gomalloc(library: library)), timeout: 120)
    }

    func testPythonRunsWithinItsNeedsPlusTheFixedOverhead() throws {
        let library = try DropIn.requireLibrary("the address-space test")
        let py = try python()
        let file = DropIn.workDir.appendingPathComponent("aslimit-glibc.py")
        try script.write(to: file, atomically: true, encoding: .utf8)
        let plain = try DropIn.run(py, [file.path], environment: ["LD_PRELOAD": nil], timeout: 120)
        XCTAssertEqual(plain.status, 0, plain.summary)
        let lines = plain.stdout.split(separator: "\n")
        let peakKiB = try XCTUnwrap(lines.last.flatMap { Int($0) }, plain.summary)
        let r = try runLimited(py, limitKiB: peakKiB + 96 * 1024, library: library)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertEqual(r.stdout.split(separator: "\n").first, lines.first, "the same result under the limit")

        // Below what it needs: malloc returns NULL (ENOMEM) and Python says so — MemoryError,
        // or, when it happens at start-up, "memory allocation failed" — never a crash.
        let tight = try runLimited(py, limitKiB: peakKiB + 24 * 1024, library: library)
        XCTAssertTrue(tight.exitedNormally, "killed by a signal under a tight limit: \(tight.summary)")
        if tight.status != 0 {
            XCTAssertTrue(tight.stderr.contains("MemoryError") || tight.stderr.contains("memory allocation failed"), tight.summary)
        }
    }
}
