// The recent-free stacks (MCache.swift I3): a P hands back the objects it freed last first,
// newest first, per size class; the stack is an index into the spans' freeBits, so bad frees
// are still caught, calloc still clears, and trim forgets the stacks without losing objects.
// One thread (hence one P) does everything; the P's stacks are read through its mcache.
import CGoMallocSys
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class RecentFreeTests: XCTestCase {
    /// One P throughout: with Ps bound to CPUs, the thread stays on one CPU.
    private var pin: CPUPin?
    override func setUpWithError() throws { pin = try CPUPin() }
    override func tearDown() { pin?.restore() }

    private func alloc(_ size: Int) throws -> UnsafeMutableRawPointer {
        try XCTUnwrap(GoAllocator.allocate(byteCount: size, alignment: 8))
    }

    func testFreedObjectsComeBackNewestFirstPerClass() throws {
        for size in [8, 48, 1024, 3072, 32768] {
            // Live neighbours, so that the frees below do not empty a span.
            let keep = try (0..<4).map { _ in try alloc(size) }
            let a = try alloc(size), b = try alloc(size), c = try alloc(size)
            let other = try alloc(size == 8 ? 64 : 8)
            GoAllocator.deallocate(a)
            GoAllocator.deallocate(other)  // another class's stack: no effect on this one
            GoAllocator.deallocate(b)
            GoAllocator.deallocate(c)
            let x = try alloc(size), y = try alloc(size), z = try alloc(size)
            XCTAssertEqual([x, y, z], [c, b, a], "size \(size)")
            XCTAssertEqual(try alloc(size == 8 ? 64 : 8), other, "size \(size)")
            for p in keep + [x, y, z] { GoAllocator.deallocate(p) }
        }
        assertHeapInvariants()
    }

    func testReusedObjectsAreClearedForCalloc() throws {
        let p = try alloc(200)
        p.initializeMemory(as: UInt8.self, repeating: 0xAB, count: 200)
        GoAllocator.deallocate(p)
        let q = try XCTUnwrap(GoAllocator.allocateZeroed(byteCount: 200, alignment: 8))
        XCTAssertEqual(q, p, "the freed object comes back first")
        XCTAssertTrue(UnsafeRawBufferPointer(start: q, count: 200).allSatisfy { $0 == 0 })
        GoAllocator.deallocate(q)
    }

    /// A full stack forgets its oldest entry for each new one: the newest frees stay reusable first, the
    /// forgotten ones stay free in their spans (the heap's counts and invariants agree).
    func testOverflowKeepsTheNewestFrees() throws {
        let size = 112
        let n = 3 * MCache.recentCapacity
        let blocks = try (0..<n).map { _ in try alloc(size) }
        let live = GoAllocator.statistics().heapObjects
        for p in blocks { GoAllocator.deallocate(p) }
        XCTAssertEqual(GoAllocator.statistics().heapObjects, live - UInt64(n))
        let cache = try XCTUnwrap(myP()?.mcache, "no P")
        let c = SpanClass(sizeClass: try XCTUnwrap(heap()).sizeClass(for: size, cABI: true), noscan: false).index
        let stack = (0..<cache.recentCount(c)).map { UnsafeMutableRawPointer(bitPattern: cache.recentFree(c, $0).addr)! }
        XCTAssertEqual(stack.count, MCache.recentCapacity)
        XCTAssertEqual(stack, Array(blocks.suffix(stack.count)), "the stack holds the newest frees, oldest at the bottom")
        assertHeapInvariants()
        // Reuse them all (and more: the forgotten ones come back through the sweep).
        let again = try (0..<n).map { _ in try alloc(size) }
        XCTAssertEqual(Array(again.prefix(stack.count)), stack.reversed())
        XCTAssertEqual(Set(again).count, n)
        for p in again { GoAllocator.deallocate(p) }
        assertHeapInvariants()
    }

    /// Trim flushes every span out of the mcaches: their recent frees must go too, or a
    /// later malloc would hand out an object of a span that is no longer this P's.
    func testTrimForgetsTheStacks() throws {
        let keep = try alloc(640)
        let p = try alloc(640)
        GoAllocator.deallocate(p)
        _ = GoAllocator.trim()
        let cache = try XCTUnwrap(myP()?.mcache, "no P")
        for c in 2..<numSpanClasses { XCTAssertEqual(cache.recentCount(c), 0, "span class \(c)") }
        assertHeapInvariants()
        let q = try alloc(640)
        GoAllocator.deallocate(q)
        GoAllocator.deallocate(keep)
        assertHeapInvariants()
    }
}
