// Model-based randomized test of the Swift API: a million operations, every live object
// filled with its own byte and checked before it is freed, no overlaps, sizes and alignment.
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class MallocModelTests: XCTestCase {
    struct Live {
        var pointer: UnsafeMutableRawPointer
        var size: Int
        var usable: Int
        var fill: UInt8
    }

    func randomSize(_ rng: inout SplitMix64) -> Int {
        let r = rng.next() % 1000
        switch r {
        case 0..<5: return 0
        case 5..<500: return Int(rng.next() % 128) + 1                 // tiny and small
        case 500..<850: return Int(rng.next() % 1024) + 1
        case 850..<985: return Int(rng.next() % 32768) + 1             // up to the largest class
        case 985..<998: return 32769 + Int(rng.next() % (256 << 10))   // large
        default: return (1 << 20) + Int(rng.next() % (4 << 20))        // big large
        }
    }

    func randomAlignment(_ rng: inout SplitMix64) -> Int {
        let r = rng.next() % 100
        if r < 80 { return 1 << Int(rng.next() % 4) }          // 1...8
        if r < 95 { return 16 }
        return 1 << (5 + Int(rng.next() % 13))                 // 32 ... 128 KiB
    }

    func check(_ o: Live, _ scratch: UnsafeMutableRawPointer) {
        memset(scratch, Int32(o.fill), o.usable)
        if memcmp(scratch, o.pointer, o.usable) != 0 {
            XCTFail("object \(o.pointer) (\(o.size) bytes) was overwritten")
        }
    }

    func testMillionRandomOperations() throws {
        let start = GoAllocator.statistics().heapAlloc
        var rng = SplitMix64(seed: 0x60_3A_11_0C)
        var live: [Live] = []
        live.reserveCapacity(20000)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 8 << 20, alignment: 16)
        defer { scratch.deallocate() }
        let operations = 1_000_000
        var fill: UInt8 = 1
        for op in 0..<operations {
            let r = rng.next() % 100
            if live.isEmpty || (r < 52 && live.count < 20000) {
                let size = randomSize(&rng)
                let align = randomAlignment(&rng)
                let zeroed = rng.next() % 8 == 0
                let p = try XCTUnwrap(zeroed ? GoAllocator.allocateZeroed(byteCount: size, alignment: align)
                                             : GoAllocator.allocate(byteCount: size, alignment: align))
                XCTAssertEqual(Int(bitPattern: p) % align, 0, "alignment \(align) for \(size) bytes")
                let usable = GoAllocator.usableSize(of: p)
                XCTAssertGreaterThanOrEqual(usable, size)
                if zeroed && size > 0 {
                    memset(scratch, 0, size)
                    XCTAssertEqual(memcmp(scratch, p, size), 0, "allocateZeroed returned dirty memory")
                }
                fill = fill == 255 ? 1 : fill + 1
                memset(p, Int32(fill), usable)
                live.append(Live(pointer: p, size: size, usable: usable, fill: fill))
            } else if r < 90 {
                let i = Int(rng.next() % UInt64(live.count))
                check(live[i], scratch)
                GoAllocator.deallocate(live[i].pointer)
                live.swapAt(i, live.count - 1)
                live.removeLast()
            } else {
                // realloc: contents up to min(old, new) survive.
                let i = Int(rng.next() % UInt64(live.count))
                var o = live[i]
                check(o, scratch)
                let newSize = max(1, randomSize(&rng))
                let p = try XCTUnwrap(GoAllocator.reallocate(o.pointer, byteCount: newSize, alignment: 8))
                let kept = min(o.size, newSize)
                memset(scratch, Int32(o.fill), kept)
                XCTAssertEqual(memcmp(scratch, p, kept), 0, "realloc lost contents")
                o.pointer = p
                o.size = newSize
                o.usable = GoAllocator.usableSize(of: p)
                XCTAssertGreaterThanOrEqual(o.usable, newSize)
                memset(p, Int32(o.fill), o.usable)
                live[i] = o
            }
            if op % 100_000 == 99_999 {
                // No two live objects overlap.
                let sorted = live.sorted { UInt(bitPattern: $0.pointer) < UInt(bitPattern: $1.pointer) }
                for k in 1..<max(1, sorted.count) where sorted.count > 1 {
                    let prevEnd = UInt(bitPattern: sorted[k - 1].pointer) + UInt(sorted[k - 1].usable)
                    XCTAssertLessThanOrEqual(prevEnd, UInt(bitPattern: sorted[k].pointer), "objects overlap")
                }
                assertHeapInvariants()
            }
        }
        for o in live {
            check(o, scratch)
            GoAllocator.deallocate(o.pointer)
        }
        assertHeapInvariants()
        XCTAssertEqual(GoAllocator.statistics().heapAlloc, start)
        let stats = GoAllocator.statistics()
        // mheap's page counters (the statistics) against the page allocator's (the snapshot).
        let snap = GoAllocator.heapSnapshot(pageMapLength: 0)
        XCTAssertEqual(UInt64(snap.inUsePages) * 8192, stats.heapInuse + stats.stackInuse)
        XCTAssertEqual(UInt64(snap.committedPages) * 8192, stats.heapSys + stats.stackInuse)
        XCTAssertLessThanOrEqual(stats.heapReleased, stats.heapIdle)
    }

    func testZeroBytesGivesUniqueFreeablePointers() throws {
        let a = try XCTUnwrap(GoAllocator.allocate(byteCount: 0, alignment: 1))
        let b = try XCTUnwrap(GoAllocator.allocate(byteCount: 0, alignment: 1))
        XCTAssertNotEqual(a, b)
        GoAllocator.deallocate(a)
        GoAllocator.deallocate(b)
    }

    func testTooLargeReturnsNil() {
        XCTAssertNil(GoAllocator.allocate(byteCount: Int.max / 2, alignment: 8))
        XCTAssertNil(GoAllocator.allocate(byteCount: 1 << 50, alignment: 8))
    }

    func testLargeAlignmentsComeFromAlignedSpans() throws {
        for shift in 13...21 {
            let align = 1 << shift
            let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: align))
            XCTAssertEqual(Int(bitPattern: p) % align, 0)
            memset(p, 0xAB, 100)
            GoAllocator.deallocate(p)
        }
        assertHeapInvariants()
    }

    func testFreedLargeMemoryIsReusedAndTrimReleasesIt() throws {
        var ps: [UnsafeMutableRawPointer] = []
        for _ in 0..<64 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))) }
        for p in ps { memset(p, 1, 1 << 20); GoAllocator.deallocate(p) }
        let freed = GoAllocator.statistics()
        XCTAssertGreaterThanOrEqual(freed.heapIdle, 64 << 20)
        // The same blocks again come from the freed pages: the heap does not grow.
        ps = []
        for _ in 0..<64 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))) }
        XCTAssertEqual(GoAllocator.statistics().heapSys, freed.heapSys, "freed large pages were not reused")
        for p in ps { GoAllocator.deallocate(p) }
        let before = GoAllocator.statistics()
        GoAllocator.trim()
        let after = GoAllocator.statistics()
        XCTAssertEqual(after.heapSys, before.heapSys, "trim releases pages, it does not unmap them")
        XCTAssertEqual(after.heapReleased, after.heapIdle, "trim releases every idle page")
        assertHeapInvariants()
    }
}

/// The core internals ReallocTests reads, kept in one place to adapt when the core's API
/// changes: mremap moves still allowed, and whether pages are released.
enum LargeMoveProbe {
    static func movesLeft() -> Int { largeMovesRemaining() }

    /// Every page of [address, address + bytes) free and released to the OS.
    static func pagesReleased(_ address: UInt, bytes: Int) -> Bool {
        let h = theHeap()!
        h.pointee.lock.lock()
        defer { h.pointee.lock.unlock() }
        return stride(from: address, to: address + UInt(bytes), by: 8192).allSatisfy {
            h.locked.pointee.pages.isScavenged($0) && !h.locked.pointee.pages.isAllocated($0)
        }
    }
}

final class ReallocTests: XCTestCase {
    func testLargeBlocksGrowInPlaceWhenThePagesAfterThemAreFree() throws {
        // A block larger than any free run comes from fresh heap at the end of the heap, so the
        // pages after it are free (or can be committed): growing it must not move it.
        let big = 512 << 20
        var p = try XCTUnwrap(GoAllocator.allocate(byteCount: big, alignment: 8))
        p.storeBytes(of: 0x5A, as: UInt8.self)
        (p + big - 1).storeBytes(of: 0xA5, as: UInt8.self)
        var size = big
        for step in 1...6 {
            size += step << 20
            let q = try XCTUnwrap(GoAllocator.reallocate(p, byteCount: size, alignment: 8))
            XCTAssertEqual(q, p, "large realloc growth should be in place (step \(step))")
            p = q
        }
        XCTAssertEqual(p.load(as: UInt8.self), 0x5A)
        XCTAssertEqual((p + big - 1).load(as: UInt8.self), 0xA5)
        XCTAssertGreaterThanOrEqual(GoAllocator.usableSize(of: p), size)
        // Shrinking returns the tail in place.
        let r = try XCTUnwrap(GoAllocator.reallocate(p, byteCount: 100 << 10, alignment: 8))
        XCTAssertEqual(r, p)
        XCTAssertEqual(GoAllocator.usableSize(of: r), 104 << 10)
        GoAllocator.deallocate(r)
        assertHeapInvariants()
    }

    func testHugeBlocksThatCannotGrowInPlaceMoveWithTheirContents() throws {
        // A 40 MiB block with another block right after it cannot grow in place: at 32 MiB
        // and more its pages move (mremap) instead of being copied, and every byte follows.
        let size = 40 << 20
        let a = try XCTUnwrap(GoAllocator.allocate(byteCount: size, alignment: 8))
        // The neighbour: 1 MiB blocks until one lands right after `a` (first fit fills lower
        // holes first).
        var fillers: [UnsafeMutableRawPointer] = []
        var neighbour: UnsafeMutableRawPointer?
        while neighbour == nil && fillers.count < 256 {
            let f = try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))
            if f == a + size { neighbour = f } else { fillers.append(f) }
        }
        let b = try XCTUnwrap(neighbour, "no 1 MiB block landed right after the 40 MiB one")
        let words = size / 8
        let wa = a.bindMemory(to: UInt64.self, capacity: words)
        for i in 0..<words { wa[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 }
        let movesBefore = LargeMoveProbe.movesLeft()
        let q = try XCTUnwrap(GoAllocator.reallocate(a, byteCount: 2 * size, alignment: 8))
        XCTAssertNotEqual(q, a, "grew in place with a block right after it")
        XCTAssertEqual(LargeMoveProbe.movesLeft(), movesBefore - 1, "the block was copied, not moved")
        XCTAssertTrue(LargeMoveProbe.pagesReleased(UInt(bitPattern: a), bytes: size),
                      "the old range's pages should have gone to the OS with the move")
        let wq = q.bindMemory(to: UInt64.self, capacity: 2 * words)
        for i in 0..<words where wq[i] != UInt64(i) &* 0x9E37_79B9_7F4A_7C15 {
            XCTFail("lost contents at byte \(i * 8)")
            break
        }
        XCTAssertEqual(GoAllocator.usableSize(of: q), 2 * size)
        // The new tail is usable.
        memset(q + size, 0x5A, size)
        // The old range, obtained again zeroed, reads zero (known-zero pages are not cleared).
        let z = try XCTUnwrap(GoAllocator.allocateZeroed(byteCount: size, alignment: 8))
        XCTAssertEqual(z, a, "first fit should give the old range back")
        let wz = z.bindMemory(to: UInt64.self, capacity: words)
        for i in 0..<words where wz[i] != 0 {
            XCTFail("zeroed block \(z): byte \(i * 8) is not zero")
            break
        }
        assertHeapInvariants()
        GoAllocator.deallocate(z)
        GoAllocator.deallocate(q)
        GoAllocator.deallocate(b)
        for f in fillers { GoAllocator.deallocate(f) }
        assertHeapInvariants()
    }

    func testSmallReallocStaysInPlaceWithinItsClass() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 40, alignment: 8))
        XCTAssertEqual(GoAllocator.usableSize(of: p), 48)
        XCTAssertEqual(GoAllocator.reallocate(p, byteCount: 48, alignment: 8), p)
        XCTAssertEqual(GoAllocator.reallocate(p, byteCount: 33, alignment: 8), p)
        let q = try XCTUnwrap(GoAllocator.reallocate(p, byteCount: 49, alignment: 8))
        XCTAssertNotEqual(q, p)
        GoAllocator.deallocate(q)
    }
}
