// The scavenger's policy (Scavenger.swift): free pages kept resident up to the retain goal
// (retainPercent of the in-use pages plus one chunk), the excess released to the OS — at
// once past twice the goal plus 32 MiB, otherwise at most once per pacing period — and
// malloc_trim releasing everything. Observed through MemStats: HeapIdle - HeapReleased are
// the free pages still resident. One thread, on a clock the test sets: nothing waits.
import XCTest
import CGoMallocSys
@testable import GoMalloc
@testable import GoMallocCoreHosted  // pallocChunkPages, Option; ScavengerProbe below

/// The core internals these tests touch, kept in one place to adapt when the core's API
/// changes. The scavenger's clock is the test's (Scavenger.swift's scavengeClockForTesting).
enum ScavengerProbe {
    /// A fixed "now" far from 0, so that "the last release" can be set on either side of it.
    static let now: UInt64 = 1 << 50

    static func useTestClock() { scavengeClockForTesting.store(now, ordering: .relaxed) }
    static func useRealClock() { scavengeClockForTesting.store(0, ordering: .relaxed) }

    /// The last release at `now - age` on the test clock.
    private static func setLastRelease(age: UInt64) {
        let h = theHeap()!
        h.pointee.lock.lock()
        h.locked.pointee.lastScavenge = now - age
        h.pointee.lock.unlock()
    }

    /// Make the pacing period count as elapsed: the last release one period ago.
    static func expirePacing() { setLastRelease(age: scavengePeriodNanos) }

    /// Make the last release "just now": until the clock moves, only the urgent rule releases.
    static func markJustReleased() { setLastRelease(age: 0) }
}

final class ScavengerTests: XCTestCase {
    private let page = 8192
    private let chunk = pallocChunkPages

    override func setUp() { ScavengerProbe.useTestClock() }
    override func tearDown() { ScavengerProbe.useRealClock() }

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
    /// right after another release (the test clock stands still: only the urgent rule can).
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

    /// Free an excess between the goal plus a chunk and the urgent threshold, with the last
    /// release `justReleased` (or a pacing period ago) on the test clock; `check` gets the
    /// statistics before and after the free, the pages freed and the goal.
    private func freePacedExcess(justReleased: Bool, check: (MemStats, MemStats, Int, Int) -> Void) throws {
        _ = trimToNothingResident()
        let hold = try allocatePages(4096)
        let target = goal(inUsePages(GoAllocator.statistics()))
        let n = target + chunk + 1024
        XCTAssertLessThanOrEqual(n, 2 * target + 8 * chunk, "set-up: this excess would be urgent")
        let p = try allocatePages(n)
        if justReleased { ScavengerProbe.markJustReleased() } else { ScavengerProbe.expirePacing() }
        let before = GoAllocator.statistics()
        GoAllocator.deallocate(p)
        check(before, GoAllocator.statistics(), n, target)
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }

    /// An excess freed right after a release stays resident until the pacing period has passed.
    func testPacedExcessWaitsForThePeriod() throws {
        try freePacedExcess(justReleased: true) { before, after, n, _ in
            XCTAssertEqual(after.heapReleased, before.heapReleased, "released within the pacing period")
            XCTAssertEqual(residentFreePages(after), residentFreePages(before) + n)
        }
    }

    /// Once the pacing period has passed, the excess is released down to the goal.
    func testPacedExcessIsReleasedDownToTheGoal() throws {
        try freePacedExcess(justReleased: false) { before, after, n, target in
            XCTAssertEqual(residentFreePages(after), target, "released down to the goal")
            XCTAssertEqual(Int(after.heapReleased - before.heapReleased) / page, n - target)
        }
    }

    /// The release runs without the heap lock in batches of at most 8 free runs
    /// (Scavenger.I3): a heap fragmented into 40 free runs is still released down to the
    /// goal by one free, and every batch's pages come back to the heap scavenged.
    func testFragmentedExcessIsReleasedInBatchesDownToTheGoal() throws {
        _ = trimToNothingResident()
        let hold = try allocatePages(4096)  // a goal large enough that the frees are not urgent
        var runs: [UnsafeMutableRawPointer] = []
        var fences: [UnsafeMutableRawPointer] = []
        for _ in 0..<60 {
            runs.append(try allocatePages(160))
            fences.append(try allocatePages(5))  // keeps the freed runs apart
        }
        ScavengerProbe.markJustReleased()
        let target = goal(inUsePages(GoAllocator.statistics()) - 60 * 160)
        XCTAssertLessThan(60 * 160, 2 * target + 8 * chunk, "set-up: the frees would be urgent")
        for p in runs.dropLast() { GoAllocator.deallocate(p) }
        ScavengerProbe.expirePacing()
        let before = GoAllocator.statistics()
        GoAllocator.deallocate(runs.last!)
        let after = GoAllocator.statistics()
        XCTAssertEqual(residentFreePages(after), target, "released down to the goal")
        XCTAssertGreaterThan(Int(after.heapReleased - before.heapReleased) / page, 8 * 160,
                             "more than one batch of runs was released")
        assertHeapInvariants()
        for p in fences { GoAllocator.deallocate(p) }
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }

    /// Released pages come back zeroed: a block filled, freed and released by the idle
    /// ticker reads as zero when the heap hands its pages out again (no memset: the span
    /// knows its pages were scavenged), and no page is both allocated and scavenged
    /// (checkInvariants, PageAlloc I2).
    func testReleasedPagesComeBackZeroed() throws {
        let h = try XCTUnwrap(theHeap())
        _ = trimToNothingResident()
        let n = 300
        let p = try allocatePages(n)
        memset(p, 0xAB, n * page)
        GoAllocator.deallocate(p)
        var ticker = ScavengerTicker()
        _ = ticker.tick(h, now: ScavengerProbe.now)
        XCTAssertEqual(ticker.tick(h, now: ScavengerProbe.now + scavengerIdleNanos), 0)
        assertHeapInvariants()
        let q = try allocatePages(n)
        XCTAssertEqual(q, p, "set-up: the same pages again (highest free run first)")
        let bytes = q.assumingMemoryBound(to: UInt8.self)
        var nonzero = 0
        for i in 0..<(n * page) where bytes[i] != 0 { nonzero += 1 }
        XCTAssertEqual(nonzero, 0, "released pages read as zero")
        assertHeapInvariants()
        GoAllocator.deallocate(q)
        _ = trimToNothingResident()
    }

    // MARK: - The background thread's policy (BackgroundScavenger.swift), on the test clock

    /// Free `n` pages past the goal while pacing holds the free path back, so that only the
    /// ticker releases them; returns the pages held (free them afterwards) and the goal.
    private func leaveExcess(_ n: Int) throws -> (hold: UnsafeMutableRawPointer, goal: Int) {
        _ = trimToNothingResident()
        let hold = try allocatePages(4096)
        let target = goal(inUsePages(GoAllocator.statistics()))
        let p = try allocatePages(n)
        ScavengerProbe.markJustReleased()
        GoAllocator.deallocate(p)
        XCTAssertEqual(residentFreePages(GoAllocator.statistics()), n, "set-up: the free path released some")
        return (hold, target)
    }

    /// While the program makes heap calls the thread releases the excess over the goal, at
    /// most its budget a tick, and keeps the goal.
    func testTickerReleasesTheExcessWithinItsBudgetWhileBusy() throws {
        let h = try XCTUnwrap(theHeap())
        let (hold, target) = try leaveExcess(goal(4096 + 64) + scavengerBusyBudgetPages + 1000)
        var ticker = ScavengerTicker()
        let before = residentFreePages(GoAllocator.statistics())
        XCTAssertEqual(ticker.tick(h, now: ScavengerProbe.now), scavengerTickNanos)
        let once = residentFreePages(GoAllocator.statistics())
        XCTAssertEqual(before - once, scavengerBusyBudgetPages, "one tick releases its budget")
        // A heap call between ticks (a large block: no page cache changes the goal): still busy.
        GoAllocator.deallocate(try allocatePages(5))
        XCTAssertEqual(ticker.tick(h, now: ScavengerProbe.now + scavengerTickNanos), scavengerTickNanos)
        XCTAssertEqual(residentFreePages(GoAllocator.statistics()), target, "the next tick releases down to the goal")
        assertHeapInvariants()
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
    }

    /// A second without a malloc or free: the caches are flushed and every free page goes
    /// back (HeapIdle == HeapReleased), and the ticker asks to park. A heap call makes it
    /// busy again.
    func testTickerReleasesEverythingOnceIdleAndThenParks() throws {
        let h = try XCTUnwrap(theHeap())
        let (hold, target) = try leaveExcess(2048)
        var ticker = ScavengerTicker()
        let t0 = ScavengerProbe.now
        XCTAssertEqual(ticker.tick(h, now: t0), scavengerTickNanos)
        XCTAssertEqual(residentFreePages(GoAllocator.statistics()), min(2048, target), "busy: the goal is kept")
        XCTAssertEqual(ticker.tick(h, now: t0 + scavengerIdleNanos - 1), scavengerTickNanos, "not idle yet")
        XCTAssertEqual(ticker.tick(h, now: t0 + scavengerIdleNanos), 0, "idle and released: park")
        let idle = GoAllocator.statistics()
        XCTAssertEqual(idle.heapIdle, idle.heapReleased, "every free page released")
        XCTAssertGreaterThan(idle.scavengerBackgroundReleasedBytes, 0)
        let p = try allocatePages(16)
        XCTAssertEqual(ticker.tick(h, now: t0 + scavengerIdleNanos + 1), scavengerTickNanos, "busy again")
        GoAllocator.deallocate(p)
        assertHeapInvariants()
        GoAllocator.deallocate(hold)
        _ = trimToNothingResident()
    }

    /// Once the thread runs, the free path leaves the paced release to it and releases only
    /// urgent excess.
    func testFreePathLeavesPacingToTheRunningThread() throws {
        let saved = scavengerThreadState.load(ordering: .relaxed)
        scavengerThreadState.store(ScavengerThreadState.running.rawValue, ordering: .relaxed)
        defer { scavengerThreadState.store(saved, ordering: .relaxed) }
        try freePacedExcess(justReleased: false) { before, after, n, _ in
            XCTAssertEqual(after.heapReleased, before.heapReleased, "the free path paced a release the thread owns")
            XCTAssertEqual(residentFreePages(after), residentFreePages(before) + n)
        }
        let start = trimToNothingResident()
        let n = 2 * goal(inUsePages(start)) + 8 * chunk + 1024
        let p = try allocatePages(n)
        GoAllocator.deallocate(p)
        XCTAssertEqual(residentFreePages(GoAllocator.statistics()), goal(inUsePages(start)), "urgent excess is released inline")
        _ = trimToNothingResident()
    }

    // MARK: - The memory limit

    /// With a limit, the goal shrinks to what fits under 95% of it, an allocation that takes
    /// the resident heap past it counts one hit (one per crossing), allocation still
    /// succeeds, and frees release what does not fit at once, without pacing.
    func testMemoryLimitCountsCrossingsAndReleasesWhatDoesNotFit() throws {
        let h = try XCTUnwrap(theHeap())
        _ = trimToNothingResident()
        h.pointee.lock.lock()
        let resident = h.residentPages
        h.pointee.lock.unlock()
        let limit = resident + 4096
        h.pointee.memoryLimitPages = limit
        defer { h.pointee.memoryLimitPages = 0 }
        let hits0 = GoAllocator.statistics().memoryLimitHits
        let a = try allocatePages(3000)          // under the limit
        XCTAssertEqual(GoAllocator.statistics().memoryLimitHits, hits0)
        let b = try allocatePages(3000)          // past it: soft, so it succeeds
        let c = try allocatePages(100)           // still past: the same crossing
        XCTAssertEqual(GoAllocator.statistics().memoryLimitHits, hits0 + 1, "one crossing, one hit")
        ScavengerProbe.markJustReleased()        // pacing would hold a normal release back
        GoAllocator.deallocate(b)
        let s = GoAllocator.statistics()
        h.pointee.lock.lock()
        let residentNow = h.residentPages
        let goalNow = h.retainGoalPages
        h.pointee.lock.unlock()
        XCTAssertLessThanOrEqual(residentNow, limit - limit / 20, "released at once down to 95% of the limit")
        XCTAssertEqual(residentFreePages(s), goalNow, "the free pages kept are the shrunken goal")
        GoAllocator.deallocate(c)
        GoAllocator.deallocate(a)
        // Back under the limit: a new crossing counts again.
        let d = try allocatePages(limit)
        XCTAssertEqual(GoAllocator.statistics().memoryLimitHits, hits0 + 2)
        GoAllocator.deallocate(d)
        _ = trimToNothingResident()
        assertHeapInvariants()
    }
}
