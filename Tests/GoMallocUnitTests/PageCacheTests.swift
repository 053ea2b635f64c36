// PageCacheTests.swift — the per-P page cache (PageCache.swift, PageAlloc.allocToCache /
// freeFromCache): no page is lost or counted twice, whatever the sequence of span allocations,
// frees, flushes and trims on several Ps; flushed at trim and in a forked child.
import CGoMallocSys
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

private let pageBytes = UInt(pageSize)
private let fakeBase: UInt = 0x0000_2000_0000_0000

final class PageCacheTests: XCTestCase {
    func testTheCacheFitsInTheSlotHeader() {
        XCTAssertLessThanOrEqual(MemoryLayout<PSlot>.size, pageCacheOffset)
        XCTAssertLessThanOrEqual(pageCacheOffset + MemoryLayout<PageCache>.size, pSlotHeaderBytes)
        XCTAssertEqual(pageCacheOffset % 8, 0)
    }

    /// allocToCache takes the window of the first free page, every free page of it, with its
    /// scavenged bits; freeFromCache puts both back exactly.
    func testAllocToCacheTakesTheFirstFreeWindowAndFlushRestoresIt() {
        let pa = PageAlloc.makeForTesting(releasesMemory: false)
        defer { PageAlloc.destroyForTesting(pa) }
        XCTAssertTrue(pa.pointee.grow(base: fakeBase, size: UInt(pallocChunkBytes)))
        let total = pa.pointee.totalPages
        // Pages 0..<70 in use, except 66 and 68: the first free page is 66, in window 1.
        XCTAssertEqual(pa.pointee.alloc(npages: 70).base, fakeBase)
        pa.pointee.free(base: fakeBase + 66 * pageBytes, npages: 1)
        pa.pointee.free(base: fakeBase + 68 * pageBytes, npages: 1)
        XCTAssertGreaterThan(pa.pointee.scavenge(maxPages: 1), 0)  // the highest free page
        let scavBefore = pa.pointee.scavengedPages
        let (base, cache, scav) = pa.pointee.allocToCache()
        XCTAssertEqual(base, fakeBase + 64 * pageBytes)
        let expected: UInt64 = ~UInt64(0) << 6 | 1 << 2 | 1 << 4
        XCTAssertEqual(cache, expected)
        XCTAssertEqual(scav & ~cache, 0)
        XCTAssertEqual(pa.pointee.inUsePages, 70 - 2 + cache.nonzeroBitCount)
        XCTAssertEqual(pa.pointee.scavengedPages, scavBefore - scav.nonzeroBitCount)
        for i in 0..<64 { XCTAssertTrue(pa.pointee.isAllocated(base + UInt(i) * pageBytes)) }
        pa.pointee.checkInvariants()
        // Nothing below the window's end is free: the next window is the one after it.
        let next = pa.pointee.allocToCache()
        XCTAssertEqual(next.base, fakeBase + 128 * pageBytes)
        XCTAssertEqual(next.cache, ~0)
        pa.pointee.freeFromCache(base: next.base, cache: next.cache, scav: next.scav)
        pa.pointee.freeFromCache(base: base, cache: cache, scav: scav)
        XCTAssertEqual(pa.pointee.inUsePages, 68)
        XCTAssertEqual(pa.pointee.scavengedPages, scavBefore)
        XCTAssertEqual(pa.pointee.freePages, total - 68)
        pa.pointee.checkInvariants()
        // For a run of 40 pages: the window of the first fit (pages 70..<110, window 1); its
        // free pages 66 and 68 come along.
        let run = pa.pointee.allocToCache(npages: 40)
        XCTAssertEqual(run.base, fakeBase + 64 * pageBytes)
        XCTAssertEqual(run.cache, expected)
        pa.pointee.checkInvariants()
        // A run longer than a window: the window where the first fit (page 70) starts.
        pa.pointee.freeFromCache(base: run.base, cache: run.cache, scav: run.scav)
        let long = pa.pointee.allocToCache(npages: 100)
        XCTAssertEqual(long.base, fakeBase + 64 * pageBytes)
        XCTAssertEqual(long.cache, expected)
        pa.pointee.checkInvariants()
        XCTAssertEqual(pa.pointee.alloc(npages: 1).base, fakeBase + 128 * pageBytes)
        pa.pointee.free(base: fakeBase + 128 * pageBytes, npages: 1)
        pa.pointee.freeFromCache(base: long.base, cache: long.cache, scav: long.scav)
        XCTAssertEqual(pa.pointee.alloc(npages: 1).base, fakeBase + 66 * pageBytes)
    }

    /// Random span allocations (1...15 pages, classes whose spans have that many pages) and
    /// frees through several Ps' page caches, flushes and trims: after every step the heap's
    /// invariants hold (no cached page free in the page allocator or mapped to a span, none
    /// in two caches, pagesInUse == span pages == allocated pages - cached pages), and the
    /// statistics say the same.
    func testRandomSpanOperationsNeverLoseOrDoubleCountAPage() throws {
        let h = try XCTUnwrap(heap())
        GoAllocator.trim()
        assertHeapInvariants()
        let nprocs = min(h.pointee.nprocs, 4)
        // The small classes by span size, 1...15 pages.
        var classes: [Int] = []
        for c in 1..<numSizeClasses where Int(h.pointee.sizeClasses.classToNPages[c]) < PageCache.maxSpanPages {
            classes.append(c)
        }
        let startInuse = readMemStats().heapInuse
        var rng = SplitMix64(seed: 0x9a9e_cace)
        var live: [(UnsafeMutablePointer<MSpan>, Int)] = []
        var livePages = 0
        for step in 0..<600 {
            h.blockCPUProcs()
            let slot = h.acquireP(at: rng.below(nprocs))
            let op = rng.below(100)
            if op < 55 || live.isEmpty {
                let c = classes[rng.below(classes.count)]
                let n = Int(h.pointee.sizeClasses.classToNPages[c])
                let s = try XCTUnwrap(h.allocSpan(npages: n, spanClass: SpanClass(sizeClass: c, noscan: false), p: slot))
                XCTAssertEqual(s.pointee.npages, n)
                live.append((s, n))
                livePages += n
            } else if op < 95 {
                let (s, n) = live.remove(at: rng.below(live.count))
                h.freeSpan(s)
                livePages -= n
            } else {
                h.flushPageCache(slot)
                XCTAssertEqual(slot.pageCache.cachedPages, 0)
            }
            h.releaseP(slot)
            h.unblockCPUProcs()
            if step % 97 == 96 {
                GoAllocator.trim()
                for i in 0..<h.pointee.nprocs { XCTAssertEqual(h.proc(i).pageCache.cachedPages, 0, "trim leaves pages in P \(i)'s cache") }
            }
            if let v = GoAllocator.checkInvariants() { XCTFail("step \(step): \(v)"); return }
            let m = readMemStats()
            XCTAssertEqual(m.heapInuse, startInuse + UInt64(livePages * pageSize), "step \(step): HeapInuse")
            XCTAssertEqual(m.heapIdle + m.heapInuse, m.heapSys, "step \(step)")
        }
        for (s, _) in live { h.freeSpan(s) }
        GoAllocator.trim()
        assertHeapInvariants()
        XCTAssertEqual(readMemStats().heapInuse, startInuse)
    }

    /// A span made from scavenged cached pages knows they are zero; one from pages that were
    /// used before does not.
    func testSpansFromScavengedCachedPagesNeedNoZeroing() throws {
        let h = try XCTUnwrap(heap())
        GoAllocator.trim()  // every free page scavenged, every page cache empty
        h.blockCPUProcs()
        let slot = h.acquireP(at: 0)
        let spc = SpanClass(sizeClass: 1, noscan: false)
        let a = try XCTUnwrap(h.allocSpan(npages: 1, spanClass: spc, p: slot))
        XCTAssertFalse(a.pointee.needzero)
        XCTAssertNotEqual(slot.pageCache.cachedPages, 0, "the rest of the window stays cached")
        let b = try XCTUnwrap(h.allocSpan(npages: 1, spanClass: spc, p: slot))
        XCTAssertFalse(b.pointee.needzero)
        h.releaseP(slot)
        h.unblockCPUProcs()
        h.freeSpan(a)
        h.freeSpan(b)
        assertHeapInvariants()
    }

    /// Threads making and emptying spans of 1...4 pages (objects of 8-32 KiB) through malloc,
    /// each on whatever P it gets, while trims flush every page cache and invariant walks
    /// stop the world: no page lost or counted twice at any of the walks, and none left
    /// held once everything is freed and trimmed.
    func testConcurrentMallocsTrimsAndWalksKeepPagesExact() throws {
        let h = try XCTUnwrap(heap())
        GoAllocator.trim()
        let startInuse = readMemStats().heapInuse
        let failures = AddressQueue()
        runThreads(4) { t in
            var rng = SplitMix64(seed: 0x5eed + UInt64(t))
            var live: [UnsafeMutableRawPointer] = []
            for step in 0..<4000 {
                if live.count < 200 && (live.isEmpty || rng.below(3) != 0) {
                    guard let p = GoAllocator.allocate(byteCount: 8192 + rng.below(24 * 1024), alignment: 8) else {
                        failures.push(1); return
                    }
                    live.append(p)
                } else {
                    GoAllocator.deallocate(live.remove(at: rng.below(live.count)))
                }
                if t == 0 && step % 500 == 0 { GoAllocator.trim() }
                if t == 1 && step % 700 == 0, GoAllocator.checkInvariants() != nil { failures.push(2) }
            }
            for p in live { GoAllocator.deallocate(p) }
        }
        XCTAssertEqual(failures.drain(), [])
        assertHeapInvariants()
        GoAllocator.trim()
        for i in 0..<h.pointee.nprocs { XCTAssertEqual(h.proc(i).pageCache.cachedPages, 0) }
        assertHeapInvariants()
        XCTAssertEqual(readMemStats().heapInuse, startInuse)
    }

    /// Pages cached by the parent's Ps are free again in a forked child.
    func testForkedChildFlushesThePageCaches() throws {
        let h = try XCTUnwrap(heap())
        GoAllocator.trim()
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<64 { blocks.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 4096, alignment: 8))) }
        var cached = 0
        for i in 0..<h.pointee.nprocs { cached += h.proc(i).pageCache.cachedPages }
        XCTAssertGreaterThan(cached, 0, "set-up: a page cache holds pages")
        let r = runInChild {
            var n = 0
            for i in 0..<h.pointee.nprocs { n += h.proc(i).pageCache.cachedPages }
            if n != 0 { _exit(3) }
            if GoAllocator.checkInvariants() != nil { _exit(4) }
            let p = GoAllocator.allocate(byteCount: 4096, alignment: 8)
            if p == nil { _exit(5) }
            if GoAllocator.checkInvariants() != nil { _exit(6) }
        }
        XCTAssertEqual(r.signal, 0, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        for b in blocks { GoAllocator.deallocate(b) }
        assertHeapInvariants()
    }
}
