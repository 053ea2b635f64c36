// StacksDemoTests: runs the real `gomalloc stacks-demo --count 2000`: every source in a child
// process of its own, the table, the checksum shared by all, `OK stacks-demo`. It measures
// nothing. testAllSources needs the gomalloc source, i.e. the core's gm_stack_alloc /
// gm_stack_free (GoMalloc's stack allocator); until that is linked in, the gomalloc child
// exits 2 and that test fails by design. testMmapAndMalloc runs the other two sources alone
// and must pass either way. The in-process parts (the context switch, the workload's checks,
// the table) are Tests/GoMallocCLITests/StacksDemoTests.swift.
import Foundation
import XCTest

final class StacksDemoTests: XCTestCase {
    private func demo(_ arguments: [String]) throws -> DropIn.Result {
        let gomalloc = try DropIn.gomallocExecutable()
        // DropIn.run waits for the process's exit (killing it after the timeout).
        return try DropIn.run(gomalloc, ["stacks-demo", "--count", "2000"] + arguments, timeout: 300)
    }

    /// The table's row for `source`, split into its columns.
    private func row(_ stdout: String, _ source: String) -> [String]? {
        stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.first { $0.first == source }
    }

    private func checkRows(_ r: DropIn.Result, _ sources: [String]) {
        XCTAssertTrue(r.exitedNormally && r.status == 0, "gomalloc stacks-demo failed: \(r.summary)")
        guard r.exitedNormally && r.status == 0 else { return }
        XCTAssertTrue(r.stdout.contains("\nOK stacks-demo\n"), "no OK line: \(r.summary)")
        XCTAssertTrue(r.stdout.contains("checksum 0x"), "no checksum line: \(r.summary)")
        for source in sources {
            guard let cells = row(r.stdout, source) else {
                XCTFail("no row for \(source): \(r.summary)")
                continue
            }
            // source, time, time ratio, peak RSS, added RSS, RSS ratio, switches.
            XCTAssertEqual(cells.count, 7, "\(source): \(cells)")
            XCTAssertGreaterThan(Double(cells[1]) ?? 0, 0, "\(source): a time")
            XCTAssertGreaterThan(Double(cells[3]) ?? 0, 0, "\(source): a peak RSS")
            XCTAssertEqual(cells.last, "\(2000 * 17 * 2)", "\(source): two switches per resume, 17 resumes each")
        }
    }

    func testAllSources() throws {
        let r = try demo([])
        checkRows(r, ["gomalloc", "mmap", "malloc"])
        XCTAssertTrue(r.stdout.contains("time/gomalloc"), "ratios are to gomalloc: \(r.summary)")
    }

    func testMmapAndMalloc() throws {
        let r = try demo(["--sources", "mmap,malloc"])
        checkRows(r, ["mmap", "malloc"])
        XCTAssertNil(row(r.stdout, "gomalloc"))
        let u = try demo(["--sources", "malloc,mmap", "--switch", "ucontext", "--stack-size", "4096", "--yields", "3"])
        XCTAssertTrue(u.exitedNormally && u.status == 0, "ucontext: \(u.summary)")
        XCTAssertTrue(u.stdout.contains("\nOK stacks-demo\n"), u.summary)
        XCTAssertEqual(row(u.stdout, "mmap")?.last, "\(2000 * 4 * 2)", u.summary)
    }

    func testASubsetOfSourcesWithGomalloc() throws {
        let r = try demo(["--sources", "gomalloc,mmap"])
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        checkRows(r, ["gomalloc", "mmap"])
    }

    func testBadOptionsAreRefused() throws {
        for bad in [["--stack-size", "3000"], ["--sources", "mmap,jemalloc"], ["--yields", "-1"]] {
            let r = try demo(bad)
            XCTAssertTrue(r.exitedNormally && r.status != 0, "\(bad): \(r.summary)")
            XCTAssertFalse(r.stdout.contains("OK stacks-demo"), "\(bad)")
        }
    }
}
