// The scavenger's policy (Scavenger.swift): free pages kept resident up to the retain goal
// (retainPercent of the in-use pages plus one chunk), the excess released to the OS — at
// once past twice the goal plus 32 MiB, otherwise at most once per pacing period — and
// malloc_trim releasing everything. Observed through MemStats: HeapIdle - HeapReleased are
// the free pages still resident. One thread; nothing here waits for the clock.
import XCTest
import CGoMallocSys
@testable import GoMalloc
@testable import GoMallocCoreHosted  // pallocChunkPages, Option; ScavengerProbe below

/// The core internals these tests touch, kept in one place to adapt when the core's API
/// changes.
enum ScavengerProbe {
    /// Make the pacing period count as elapsed: the last release "long ago".
    static func expirePacing() {
        let h = theHeap()!
        h.pointee.lock.lock()
        h.pointee.lastScavenge = 0
        h.pointee.lock.unlock()
    }

    /// Make the last release "just now": for the next 50 ms only the urgent rule releases.
    static func markJustReleased() {
        let h = theHeap()!
        h.pointee.lock.lock()
        h.pointee.lastScavenge = gm_sys_nanotime()
        h.pointee.lock.unlock()
    }
}

final class ScavengerTests: XCTestCase {
    private let page = 8192
    private let chunk = pallocChunkPages

    /// Free pages that are still resident.
    private func residentFreePages(_ s: MemStats) -> Int { Int(s.heapIdle - s.heapReleased) / page }
    private func inUsePages(_ s: MemStats) -> Int { Int(s.heapInuse + s.stackInuse) / page }
    /// The retain goal for `inUse` pages in use.
    private func goal(_ inUse: Int) -> Int { inUse * Option.retainPercent.read() / 100 + chunk }

    /// trim, then check it left no free page resident.
    private func trimToNothingResident(file: StaticString = #filePath, line: UInt = #line) -> MemStats {
        GoAllocator.trim()
        let s = GoAllocator.statistics()
        XCTAssertEqual(residentFreePages(s), 0, "malloc_trim releases every free page", file: file, line: line)
        return s
    }

    private func allocatePages(_ n: Int) throws -> UnsafeMutableRawPointer {
        try XCTUnwrap(GoAllocator.allocate(byteCount: n * page, alignment: 8))
    }

    /// Freed pages within the goal stay resident, whatever the time since the last release.
    func testFreedPagesWithinTheGoalStayResident() throws {
        _ = trimToNothingResident()
        let hold = try allocatePages(8192)           // 64 MiB in use: a goal of at least 8192 + chunk pages
        let n = 2048
        XCTAssertLessThanOrEqual(n, goal(inUsePages(GoAllocator.statistics())) + chunk)
        let p = try allocatePages(n)
        ScavengerProbe.expirePacing()                 // pacing would allow a release: none is due
        let before = GoAllocator.statistics()
        GoAllocator.deallocate(p)
        let after = GoAllocator.statistics()
        XCTAssertEqual(after.heapReleased, before.heapReleased, "pages within the goal were released")
        XCTAssertEqual(residentFreePages(after), n)
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }

    /// An excess past twice the goal plus 32 MiB is released at once, down to the goal, even
    /// right after another release. (The release marked "just now" makes the urgent rule the
    /// only one that can release, unless this thread stalls 50 ms before its free; then the
    /// paced rule releases the same pages and the test still holds — it cannot fail by
    /// timing. Telling the two apart always needs a clock the test controls.)
    func testUrgentExcessIsReleasedDownToTheGoal() throws {
        let start = trimToNothingResident()
        let target = goal(inUsePages(start))
        let n = 2 * target + 8 * chunk + 1024        // past the urgent threshold
        let p = try allocatePages(n)
        ScavengerProbe.markJustReleased()
        let before = GoAllocator.statistics()
        XCTAssertEqual(inUsePages(before), inUsePages(start) + n)
        GoAllocator.deallocate(p)
        let after = GoAllocator.statistics()
        XCTAssertEqual(residentFreePages(after), target, "released down to the goal")
        XCTAssertEqual(Int(after.heapReleased - before.heapReleased) / page, n - target)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }

    /// Between the goal plus a chunk and the urgent threshold, the excess is released when the
    /// pacing period has passed (here: made to have passed), down to the goal.
    func testPacedExcessIsReleasedDownToTheGoal() throws {
        _ = trimToNothingResident()
        let hold = try allocatePages(4096)
        let target = goal(inUsePages(GoAllocator.statistics()))
        let n = target + chunk + 1024
        XCTAssertLessThanOrEqual(n, 2 * target + 8 * chunk, "set-up: this excess would be urgent")
        let p = try allocatePages(n)
        ScavengerProbe.expirePacing()
        let before = GoAllocator.statistics()
        GoAllocator.deallocate(p)
        let after = GoAllocator.statistics()
        XCTAssertEqual(residentFreePages(after), target, "released down to the goal")
        XCTAssertEqual(Int(after.heapReleased - before.heapReleased) / page, n - target)
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }
}
