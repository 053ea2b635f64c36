// The tiny allocator (Tiny.swift): packing, alignment, exact frees inside a block, reuse
// only when a block is empty, realloc across tiny sizes, cross-thread frees, and the scan /
// noscan split of the Swift API.
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class TinyTests: XCTestCase {
    // Packing is off by default (GOMALLOC_TINY): these tests turn it on, and off again after.
    override func setUp() {
        _ = GoAllocator.statistics()  // the heap exists
        setTinyPacking(true)
    }

    override func tearDown() { setTinyPacking(false) }

    private func cMalloc(_ n: Int) throws -> UnsafeMutableRawPointer { try XCTUnwrap(gmMalloc(n)) }
    private func hex(_ p: UnsafeMutableRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }
    private func isPacked(_ p: UnsafeMutableRawPointer) -> Bool {
        theHeap()?.spanOf(UInt(bitPattern: p))?.isTiny ?? false
    }

    /// Close this P's open block, so that the next tiny malloc opens a fresh one.
    private func closeOpenBlock() {
        guard let h = theHeap() else { return }
        let slot = h.acquireP()
        if let c = slot.mcache { c.closeTinyBlock(heap: h) }
        h.releaseP(slot)
    }

    /// Every size 1-8: 1-4 bytes are packed side by side at offsets that are multiples of
    /// their rounded size (1, 2, 4, 4), with that usable size; 5-8 bytes are not packed.
    func testPackingAndAlignmentForEverySize() throws {
        let pin = try CPUPin()
        defer { pin.restore() }
        for size in 1...8 {
            closeOpenBlock()
            let ps = try (0..<40).map { _ in try cMalloc(size) }
            let rounded = size <= 2 ? size : size <= 4 ? 4 : 8
            for p in ps {
                XCTAssertEqual(UInt(bitPattern: p) % UInt(rounded), 0, "\(size) bytes at \(hex(p))")
                XCTAssertEqual(gmMallocUsableSize(p), rounded, "usable size of \(size) bytes")
                XCTAssertEqual(isPacked(p), size <= maxTinySize, "\(size) bytes")
            }
            if size <= maxTinySize {
                // One block holds 16 / rounded of them, consecutive.
                let perBlock = tinyBlockSize / rounded
                for k in 1..<perBlock {
                    XCTAssertEqual(UInt(bitPattern: ps[k]) - UInt(bitPattern: ps[0]), UInt(k * rounded), "\(size) bytes, object \(k)")
                }
                XCTAssertEqual(UInt(bitPattern: ps[0]) % UInt(tinyBlockSize), 0, "a fresh block starts aligned")
            }
            // Bytes written to each object's whole usable size stay its own.
            for (k, p) in ps.enumerated() { memset(p, Int32(k + 1), gmMallocUsableSize(p)) }
            for (k, p) in ps.enumerated() {
                let bytes = UnsafeRawBufferPointer(start: p, count: gmMallocUsableSize(p))
                XCTAssertTrue(bytes.allSatisfy { $0 == UInt8(k + 1) }, "object \(k) of \(size) bytes overwritten")
            }
            for p in ps { gmFree(p) }
            assertHeapInvariants()
        }
    }

    /// Mixed sizes leave padding; the padding and the unfilled tail are not objects.
    func testMixedSizesPadAndKeepTheirOwnSizes() throws {
        let pin = try CPUPin()
        defer { pin.restore() }
        closeOpenBlock()
        let a = try cMalloc(1), b = try cMalloc(4), c = try cMalloc(2), d = try cMalloc(3)
        let base = UInt(bitPattern: a)
        XCTAssertEqual(UInt(bitPattern: b) - base, 4, "4 bytes go to the next multiple of 4")
        XCTAssertEqual(UInt(bitPattern: c) - base, 8)
        XCTAssertEqual(UInt(bitPattern: d) - base, 12)
        XCTAssertEqual([a, b, c, d].map(gmMallocUsableSize), [1, 4, 2, 4])
        for p in [a, b, c, d] { gmFree(p) }
        assertHeapInvariants()
    }

    func testDoubleAndInteriorFreesInsideABlockAreReported() throws {
        let pin = try CPUPin()
        defer { pin.restore() }
        closeOpenBlock()
        let a = try cMalloc(1), b = try cMalloc(4), c = try cMalloc(2)
        // b is 4-aligned at offset 4: bytes 1-3 are padding, 5-7 inside b, 10-15 the tail.
        func expectAbort(_ message: String, _ body: () -> Void) {
            let r = runInChild(body)
            XCTAssertEqual(r.signal, SIGABRT, "child was not aborted; stderr: \(r.stderr)")
            XCTAssertEqual(r.stderr, message + "\n")
        }
        expectAbort("gomalloc: free(): double free \(hex(b))") { gmFree(b); gmFree(b) }
        expectAbort("gomalloc: free(): double free \(hex(a))") { gmFree(a); gmFree(a) }
        // Inside b, in the padding after a, in the unfilled tail after c.
        for q in [b + 2, a + 1, c + 3] {
            expectAbort("gomalloc: free(): invalid pointer \(hex(q))") { gmFree(q) }
        }
        expectAbort("gomalloc: malloc_usable_size(): invalid pointer \(hex(b + 1))") { _ = gmMallocUsableSize(b + 1) }
        expectAbort("gomalloc: realloc(): invalid pointer \(hex(c))") { gmFree(c); _ = gmRealloc(c, 8) }
        // The last sub-object's second free, after its block went back to the span, is
        // still a double free (the record outlives the block's free).
        expectAbort("gomalloc: free(): double free \(hex(c))") {
            gmFree(a); gmFree(b); self.closeOpenBlock(); gmFree(c); gmFree(c)
        }
        for p in [a, b, c] { gmFree(p) }
        assertHeapInvariants()
    }

    /// A block is reused only once its last sub-object is freed (and it is no longer open).
    func testABlockIsReusedOnlyWhenEmpty() throws {
        let pin = try CPUPin()
        defer { pin.restore() }
        closeOpenBlock()
        let first = try (0..<16).map { _ in try cMalloc(1) }
        let block = UInt(bitPattern: first[0])
        XCTAssertTrue((1..<16).allSatisfy { UInt(bitPattern: first[$0]) == block + UInt($0) })
        let blocksBefore = GoAllocator.statistics().tinyBlocks
        // The 17th opens another block; freeing 15 of the first keeps that block in use.
        var later = [try cMalloc(1)]
        for p in first.dropLast() { gmFree(p) }
        XCTAssertEqual(GoAllocator.statistics().tinyBlocks, blocksBefore + 1)
        for _ in 0..<200 { later.append(try cMalloc(1)) }
        XCTAssertFalse(later.contains { UInt(bitPattern: $0) & ~15 == block }, "a block with a live sub-object was reused")
        assertHeapInvariants()
        let inUse = GoAllocator.statistics().tinyBlocks
        gmFree(first[15])
        XCTAssertEqual(GoAllocator.statistics().tinyBlocks, inUse - 1, "the emptied block went back to its span")
        assertHeapInvariants()
        for p in later { gmFree(p) }
        assertHeapInvariants()
    }

    func testReallocToAndFromTinySizesKeepsContents() throws {
        for (from, to) in [(1, 3), (3, 4), (4, 2), (2, 100), (100, 3), (4, 40_000), (40_000, 1), (1, 8), (8, 2)] {
            let p = try cMalloc(from)
            memset(p, 0x5A, from)
            let q = try XCTUnwrap(gmRealloc(p, to))
            XCTAssertTrue(UnsafeRawBufferPointer(start: q, count: min(from, to)).allSatisfy { $0 == 0x5A }, "\(from) -> \(to)")
            XCTAssertGreaterThanOrEqual(gmMallocUsableSize(q), to)
            gmFree(q)
        }
        // Growing within the rounded size stays in place.
        let p = try cMalloc(3)
        XCTAssertEqual(gmRealloc(p, 4), p)
        gmFree(p)
        assertHeapInvariants()
    }

    /// calloc of tiny sizes returns zeroed bytes even from reused, dirty blocks.
    func testCallocOfTinySizesIsZeroed() throws {
        var dirty: [UnsafeMutableRawPointer] = []
        for _ in 0..<256 { let p = try cMalloc(4); memset(p, 0xFF, 4); dirty.append(p) }
        for p in dirty { gmFree(p) }
        for _ in 0..<256 {
            let q = try XCTUnwrap(gmCalloc(1, 3))
            XCTAssertTrue(UnsafeRawBufferPointer(start: q, count: 4).allSatisfy { $0 == 0 })
            gmFree(q)
        }
    }

    /// Threads allocate tiny objects and hand them to each other to free: every block ends up
    /// back in its span, the counts balance and the invariants hold.
    func testCrossThreadFreesOfTinyObjectsUnderStress() throws {
        let before = GoAllocator.statistics()
        let threads = 4, rounds = 20_000
        let queues = (0..<threads).map { _ in AddressQueue() }
        let done = ProgressGate()
        runThreads(threads) { t in
            var rng = SplitMix64(seed: UInt64(t + 1))
            for i in 0..<rounds {
                let n = 1 + rng.below(4)
                guard let p = gmMalloc(n) else { fatalError("out of memory") }
                memset(p, Int32(t + 1), n)
                queues[(t + 1 + i % (threads - 1)) % threads].push(UInt(bitPattern: p))
                if i % 64 == 0, let q = queues[t].pop() { gmFree(UnsafeMutableRawPointer(bitPattern: q)) }
            }
            done.advance()
            done.wait(atLeast: threads)
            for q in queues[t].drain() { gmFree(UnsafeMutableRawPointer(bitPattern: q)) }
        }
        assertHeapInvariants()
        let after = GoAllocator.statistics()
        XCTAssertEqual(after.tinyAllocs - before.tinyAllocs, UInt64(threads * rounds))
        XCTAssertEqual(after.tinyFrees - before.tinyFrees, UInt64(threads * rounds))
        // What stays in use is at most the Ps' open blocks.
        XCTAssertLessThanOrEqual(after.tinyBlocks, UInt64(after.mcaches))
        _ = GoAllocator.trim()
        XCTAssertEqual(GoAllocator.statistics().tinyBlocks, 0, "trim closes the open blocks")
        assertHeapInvariants()
    }

    /// Random C operations on tiny and small sizes, checked against a model and the invariants.
    func testRandomTinyOperationsAgainstAModel() throws {
        var rng = SplitMix64(seed: 0x7177)
        var live: [(p: UnsafeMutableRawPointer, n: Int, fill: UInt8)] = []
        for op in 0..<60_000 {
            let r = rng.below(100)
            if live.isEmpty || r < 50 {
                let n = rng.inRange(0...12)
                let p = try XCTUnwrap(rng.below(4) == 0 ? gmCalloc(1, n) : gmMalloc(n))
                let fill = UInt8(1 + op % 250)
                memset(p, Int32(fill), n)
                live.append((p, n, fill))
            } else {
                let i = rng.below(live.count)
                let o = live[i]
                XCTAssertTrue(UnsafeRawBufferPointer(start: o.p, count: o.n).allSatisfy { $0 == o.fill }, "object overwritten")
                if r < 85 {
                    gmFree(o.p)
                    live.swapAt(i, live.count - 1)
                    live.removeLast()
                } else {
                    let n = rng.inRange(1...12)
                    let q = try XCTUnwrap(gmRealloc(o.p, n))
                    XCTAssertTrue(UnsafeRawBufferPointer(start: q, count: min(n, o.n)).allSatisfy { $0 == o.fill }, "realloc lost contents")
                    memset(q, Int32(o.fill), n)
                    live[i] = (q, n, o.fill)
                }
            }
            if op % 5_000 == 4_999 { assertHeapInvariants() }
            if op % 20_000 == 19_999 { _ = GoAllocator.trim() }
        }
        for o in live { gmFree(o.p) }
        assertHeapInvariants()
    }

    /// The Swift API packs only what is declared pointer-free, and counts scan and noscan apart.
    func testSwiftAPIScanAndNoscan() throws {
        let before = GoAllocator.statistics()
        let scan = try XCTUnwrap(GoAllocator.allocate(byteCount: 3, alignment: 1))
        let noscan = try XCTUnwrap(GoAllocator.allocate(byteCount: 3, alignment: 1, containsPointers: false))
        let bigNoscan = try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: 8, containsPointers: false))
        let bigScan = try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: 8))
        XCTAssertFalse(isPacked(scan))
        XCTAssertTrue(isPacked(noscan))
        XCTAssertEqual(GoAllocator.usableSize(of: noscan), 4)
        let h = try XCTUnwrap(theHeap())
        XCTAssertTrue(try XCTUnwrap(h.spanOf(UInt(bitPattern: bigNoscan))).spanClass.noscan)
        XCTAssertFalse(try XCTUnwrap(h.spanOf(UInt(bitPattern: bigScan))).spanClass.noscan)
        XCTAssertFalse(try XCTUnwrap(h.spanOf(UInt(bitPattern: scan))).spanClass.noscan)
        let mid = GoAllocator.statistics()
        let c100 = h.sizeClass(for: 100, cABI: false)
        XCTAssertEqual(mid.bySize[c100].noscanMallocs - before.bySize[c100].noscanMallocs, 1)
        XCTAssertEqual(mid.bySize[c100].mallocs - before.bySize[c100].mallocs, 2)
        XCTAssertEqual(mid.tinyAllocs - before.tinyAllocs, 1)
        XCTAssertGreaterThanOrEqual(mid.heapAlloc, mid.heapAllocScan + mid.heapAllocNoscan)
        XCTAssertEqual(mid.heapAllocScan - before.heapAllocScan, UInt64(8 + h.pointee.sizeClasses.classToSize[c100]))
        // A realloc keeps the kind: a scan block stays scan when it moves.
        let moved = try XCTUnwrap(GoAllocator.reallocate(bigScan, byteCount: 3, alignment: 8))
        XCTAssertFalse(isPacked(moved))
        for p in [scan, noscan, bigNoscan, moved] { GoAllocator.deallocate(p) }
        assertHeapInvariants()
    }
}
