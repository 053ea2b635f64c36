// StacksDemoTests: `gomalloc stacks-demo`'s parts that run in this process: the context
// switch alone (three coroutines passing a value around a ring, with our own switch and
// with ucontext), small runs of the workload on mmap'd and malloc'd stacks (the switch
// count, the same checksum for both sources, a changed stack word detected), the gomalloc
// source failing cleanly while the stack allocator is not linked in, bad arguments, and
// the child's result line and the table. The whole command, child processes and all, is
// Tests/GoMallocIntegrationTests/StacksDemoTests.swift.
import CStacksDemo
import XCTest
@testable import gomalloc

final class StacksDemoTests: XCTestCase {
    private let native = Int32(SD_SWITCH_NATIVE.rawValue)
    private let ucontext = Int32(SD_SWITCH_UCONTEXT.rawValue)
    private let mmapSource = Int32(SD_SOURCE_MMAP.rawValue)
    private let mallocSource = Int32(SD_SOURCE_MALLOC.rawValue)
    private let gomallocSource = Int32(SD_SOURCE_GOMALLOC.rawValue)

    private func message(_ r: inout sd_result) -> String {
        withUnsafeBytes(of: &r.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private func ping(_ kind: Int32, coroutines: Int32, rounds: Int32) -> (rc: Int32, value: UInt64, error: String) {
        var value: UInt64 = 0
        var error = [CChar](repeating: 0, count: 256)
        let rc = sd_ping(kind, coroutines, rounds, &value, &error, error.count)
        let text = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (rc, value, text)
    }

    // MARK: The context switch

    func testThreeCoroutinesPassAValueAroundARing() {
        XCTAssertEqual(sd_switch_native_available(), 1, "x86-64 and AArch64 have our own switch")
        for kind in [native, ucontext] {
            let r = ping(kind, coroutines: 3, rounds: 1000)
            XCTAssertEqual(r.rc, 0, "switch \(kind): \(r.error)")
            XCTAssertEqual(r.value, sd_ping_expected(3, 1000), "switch \(kind)")
        }
        // The order matters (v * 3 + k + 1 per step): a ring of one and of sixteen too.
        XCTAssertNotEqual(sd_ping_expected(3, 2), sd_ping_expected(2, 3))
        for n: Int32 in [1, 16] {
            let r = ping(native, coroutines: n, rounds: 257)
            XCTAssertEqual(r.rc, 0, r.error)
            XCTAssertEqual(r.value, sd_ping_expected(n, 257))
        }
        XCTAssertEqual(ping(native, coroutines: 0, rounds: 1).rc, -1)
        XCTAssertEqual(ping(native, coroutines: 17, rounds: 1).rc, -1)
    }

    // MARK: The workload

    func testSmallRunsOnMmapAndMallocAgree() {
        for kind in [native, ucontext] {
            var checksums: [UInt64] = []
            for source in [mmapSource, mallocSource] {
                var r = sd_result()
                let rc = sd_run_switch(kind, source, 500, 8192, 5, &r)
                XCTAssertEqual(rc, Int32(SD_OK), "switch \(kind), source \(source): \(message(&r))")
                XCTAssertEqual(r.switches, 500 * 6 * 2, "two switches per resume, yields + 1 resumes each")
                XCTAssertGreaterThan(r.seconds, 0)
                checksums.append(r.checksum)
            }
            XCTAssertEqual(checksums[0], checksums[1], "the same workload on both sources (switch \(kind))")
        }
        // Called twice in a row: no state left over from the first call.
        var a = sd_result(), b = sd_result()
        XCTAssertEqual(sd_run(mmapSource, 300, 4096, 3, &a), Int32(SD_OK))
        XCTAssertEqual(sd_run(mmapSource, 300, 4096, 3, &b), Int32(SD_OK))
        XCTAssertEqual(a.checksum, b.checksum)
        // The smallest stacks, and no coroutines at all.
        XCTAssertEqual(sd_run(mallocSource, 200, 2048, 2, &a), Int32(SD_OK), message(&a))
        XCTAssertEqual(sd_run(mallocSource, 0, 8192, 16, &a), Int32(SD_OK), message(&a))
        XCTAssertEqual(a.switches, 0)
    }

    func testAChangedStackWordFailsTheRun() {
        for source in [mmapSource, mallocSource] {
            var r = sd_result()
            let rc = sd_run_corrupting(source, 100, 8192, 4, 37, &r)
            XCTAssertEqual(rc, Int32(SD_FAILED))
            let text = message(&r)
            XCTAssertTrue(text.contains("coroutine 37: a stack word changed"), text)
        }
    }

    func testGomallocSourceRunsOnTheStackAllocator() {
        XCTAssertEqual(sd_source_available(gomallocSource), 1)
        var r = sd_result()
        let rc = sd_run(gomallocSource, 100, 8192, 2, &r)
        XCTAssertEqual(rc, Int32(SD_OK), message(&r))
    }

    func testBadArgumentsAreRefused() {
        var r = sd_result()
        for size in [0, 1024, 3000, 8193] {
            XCTAssertEqual(sd_run(mmapSource, 10, size, 1, &r), Int32(SD_FAILED), "stack size \(size)")
            XCTAssertTrue(message(&r).contains("power of two"), message(&r))
        }
        XCTAssertEqual(sd_run(mmapSource, 10, 8192, -1, &r), Int32(SD_FAILED))
        XCTAssertEqual(sd_run(7, 10, 8192, 1, &r), Int32(SD_FAILED))
        XCTAssertEqual(sd_run_switch(9, mmapSource, 10, 8192, 1, &r), Int32(SD_FAILED))
    }

    // MARK: The CLI's pure parts

    func testSourceLists() {
        XCTAssertEqual(StackSource.list("gomalloc,mmap,malloc"), [.gomalloc, .mmap, .malloc])
        XCTAssertEqual(StackSource.list("malloc, mmap"), [.malloc, .mmap])
        XCTAssertNil(StackSource.list(""))
        XCTAssertNil(StackSource.list("mmap,mmap"))
        XCTAssertNil(StackSource.list("mmap,,malloc"))
        XCTAssertNil(StackSource.list("jemalloc"))
    }

    func testChildLineRoundTrips() throws {
        let r = StacksDemoChildReport(source: "mmap", count: 100_000, seconds: 1.25, switches: 3_400_000,
                                      checksum: 0x00ab_cdef_0123_4567, peakRSSKiB: 602_000)
        XCTAssertEqual(r.line, "stacks-demo-child source=mmap count=100000 seconds=1.250000 switches=3400000 checksum=0x00abcdef01234567 peak_rss_kib=602000")
        XCTAssertEqual(StacksDemoChildReport(output: "noise\n" + r.line + "\n"), r)
        XCTAssertNil(StacksDemoChildReport(output: "stacks-demo-child source=mmap count=1"))
        XCTAssertNil(StacksDemoChildReport(output: r.line.replacingOccurrences(of: "checksum=0x", with: "checksum=")))
    }

    func testTableRatiosAreToGomallocElseTheFirstThatRan() {
        func report(_ source: String, _ seconds: Double, _ kib: Int) -> StacksDemoChildReport {
            StacksDemoChildReport(source: source, count: 10, seconds: seconds, switches: 340, checksum: 1, peakRSSKiB: kib)
        }
        let all = StacksDemoTable.render([
            StacksDemoRow(source: "gomalloc", outcome: .ran(report("gomalloc", 1.0, 1024 + 2048))),
            StacksDemoRow(source: "mmap", outcome: .ran(report("mmap", 2.0, 1024 + 4096))),
            StacksDemoRow(source: "malloc", outcome: .failed("it broke", exitCode: 1)),
        ], baselineKiB: 1024)
        XCTAssertEqual(all.count, 4)
        XCTAssertTrue(all[0].contains("time/gomalloc") && all[0].contains("added/gomalloc"), all[0])
        XCTAssertEqual(all[2].split(separator: " ").map(String.init), ["mmap", "2.000", "2.00", "5.0", "4.0", "2.00", "340"])
        XCTAssertTrue(all[3].hasPrefix("malloc") && all[3].contains("FAILED: it broke"), all[3])

        let noGomalloc = StacksDemoTable.render([
            StacksDemoRow(source: "gomalloc", outcome: .failed("not in this build", exitCode: 2)),
            StacksDemoRow(source: "mmap", outcome: .ran(report("mmap", 2.0, 1024 + 4096))),
            StacksDemoRow(source: "malloc", outcome: .ran(report("malloc", 1.0, 1024 + 8192))),
        ], baselineKiB: 1024)
        XCTAssertTrue(noGomalloc[0].contains("time/mmap"), noGomalloc[0])
        XCTAssertEqual(noGomalloc[3].split(separator: " ").map(String.init), ["malloc", "1.000", "0.50", "9.0", "8.0", "2.00", "340"])
    }
}
