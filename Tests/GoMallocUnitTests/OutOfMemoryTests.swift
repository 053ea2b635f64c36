// Out of memory: the OS refusing address space or commits makes malloc return nil, and the
// heap stays consistent.
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class OutOfMemoryTests: XCTestCase {
    func testFailedGrowthReturnsNilAndKeepsTheHeapConsistent() throws {
        // Make sure the heap exists, then refuse every reservation and commit.
        GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 64, alignment: 8)))
        let before = GoAllocator.statistics()
        sysFaultsPending.store(1_000_000, ordering: .relaxed)
        let huge = GoAllocator.allocate(byteCount: 8 << 30, alignment: 8)  // needs new arenas
        let big = GoAllocator.allocate(byteCount: Int(before.heapSys) + (64 << 20), alignment: 8)
        sysFaultsPending.store(0, ordering: .relaxed)
        XCTAssertNil(huge)
        XCTAssertNil(big)
        XCTAssertGreaterThan(sysFaultsInjected.load(ordering: .relaxed), 0)
        assertHeapInvariants()
        XCTAssertEqual(GoAllocator.statistics().heapAlloc, before.heapAlloc)
        // And the heap still works once the OS gives memory again.
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))
        GoAllocator.deallocate(p)
        assertHeapInvariants()
    }
}

final class SourceConventionTests: XCTestCase {
    /// Every core file opens with Role, Go counterpart, Invariants, Concurrency and Failure.
    func testEveryCoreFileHasTheFiveHeadings() throws {
        let core = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/GoMallocCore").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: core.path).filter { $0.hasSuffix(".swift") }
        XCTAssertGreaterThan(files.count, 10)
        for f in files {
            let text = try String(contentsOf: core.appendingPathComponent(f), encoding: .utf8)
            let header = text.prefix(6000)
            for heading in ["Role:", "Go counterpart:", "Invariants", "Concurrency:", "Failure:"] {
                XCTAssertTrue(header.contains(heading), "\(f) lacks '\(heading)' in its header")
            }
        }
    }

    /// Only Options.swift reads the environment; only Sys.swift maps memory.
    func testSyscallsAndGetenvStayInTheirFiles() throws {
        let core = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/GoMallocCore").standardized
        for f in try FileManager.default.contentsOfDirectory(atPath: core.path) where f.hasSuffix(".swift") {
            let text = try String(contentsOf: core.appendingPathComponent(f), encoding: .utf8)
            if f != "Options.swift" { XCTAssertFalse(text.contains("gm_sys_getenv"), f) }
            if f != "Sys.swift" {
                for call in ["gm_sys_reserve", "gm_sys_map_anon", "gm_sys_commit", "gm_sys_release", "gm_sys_unmap"] {
                    XCTAssertFalse(text.contains(call), "\(f) calls \(call)")
                }
            }
        }
    }
}
