// PageCache.swift — the per-P page cache: a 64-page window and a few span metadata blocks
//   from which a P makes small spans without the heap lock.
//
// Role: mcentral asks the heap for a fresh span (Go's mcentral.grow) whenever its class runs
//   out; each such allocSpan took the heap lock, contended by every thread growing any class.
//   As in Go 1.14, each P keeps a window of 64 pages (one word of the page allocator's
//   bitmap, 64-page aligned) that it took from the page allocator in one go, under the heap
//   lock (PageAlloc.allocToCache), and serves spans of fewer than 16 pages from it with a
//   bit search and no lock. Unlike Go, a cache that has pages left but no run long enough
//   is flushed and refilled with the window of the first fit for the request (Go leaves it
//   and takes the run from the heap under the lock: with the multi-page classes of
//   batch-handoff that was every span of them, once windows had holes). Go also keeps a per-P cache of mspan structs (mspancache), so
//   that the lock-free path needs no heap lock for the metadata either; here the metadata
//   comes from six FixAllocs by bitmap size, so each P keeps a short free list of blocks for
//   each of the five small-span sizes (spanBlocks), refilled spanBlockBatch at a time under
//   the heap lock. Spans made here are set up and mapped exactly as under the lock
//   (MHeap.initSpan). Large objects (span class 0) still take the lock: their counters live
//   under it and their free takes it anyway (DESIGN.md, the page cache).
//   The cache is flushed (pages and blocks back to the heap) when the P's mcache is (MCache
//   .releaseAll: malloc_trim, tests) and in a forked child.
// Go counterpart: mpagecache.go (pageCache, allocN, flush, allocToCache), mheap.go (allocSpan's
//   pcache path, mspancache, tryAllocMSpan).
// Invariants:
//   I1. Every page whose bit is set in `cache` (window at `base`) is allocated in the page
//       allocator, belongs to no span and is in no other P's cache; its page map entry is nil
//       or the tombstone (MHeap.I1). So pages.inUsePages == pages of in-use spans + pages
//       held by page caches (MHeap.I2).
//   I2. scav & ~cache == 0: scav marks the cached pages that were scavenged when taken; they
//       have not been touched since, so they read as zero (a span made of them only needs
//       zeroing if one of its pages is unscavenged) and are scavenged again if flushed.
//   I3. `base` is 64-page aligned when cache != 0 (the window is one bitmap word of a chunk).
//   I4. spanBlocks[k] lists at most spanBlockBatch free metadata blocks of spanAllocs[1 + k]
//       (MHeap.I4), linked through their first word; a block is on one list at most.
// Concurrency: The cache lives in the P's slot header (at pageCacheOffset, after PSlot's
//   fields, in its spare room up to pSlotHeaderBytes) and is owned by the thread holding the
//   P (Proc.swift: one thread between acquireP and releaseP): it takes pages and blocks with
//   no lock. It is refilled and flushed under the heap lock, also by the P holder (or by a
//   stopped world: checkInvariants, the forked child). `baseWord` and `cacheWord` are Atomic
//   because statistics (MHeap.pagesInUse, under the heap lock) and findObject's tombstone
//   test read other Ps' caches: relaxed loads and stores (one writer; the figures read are
//   exact only once the world is stopped, like the P's counters). `scav` and spanBlocks are
//   read only by the holder and a stopped world: plain.
//   Page map entries of a span made here are written without the heap lock (Go does the
//   same): the P owns the pages, so no other writer exists for them — the heap writes an
//   entry only for pages of a span it frees or pages it allocates, and these are neither
//   until the span is freed — and readers (free of a pointer inside the span) can only hold
//   such a pointer after malloc returned it, which happens after the release store (mapStore)
//   they acquire.
// Failure: allocSpanCached returns nil when the heap cannot grow or metadata memory cannot be
//   mapped; the cache is unchanged (pages taken for a span that cannot get metadata go back).
import Synchronization

/// Pages in a page cache window: one word of the page allocator's bitmap. Go's pageCachePages.
let pageCachePages = 64

/// Where the page cache sits in a P's slot (after PSlot's fields; tests check it fits).
let pageCacheOffset = 32

struct PageCache: ~Copyable {
    /// The window's first page address (I3). Atomic: relaxed (see Concurrency).
    let baseWord: Atomic<UInt>
    /// Bit i set: page i of the window is free and held here (I1). Atomic: relaxed.
    let cacheWord: Atomic<UInt64>
    /// Bit i set: page i was scavenged (I2). Owner: P.
    var scav: UInt64
    /// Free span metadata blocks of spanAllocs[1 + k] (I4), linked through their first word.
    /// Owner: P. Go's mspancache.
    var spanBlocks: InlineArray<5, UnsafeMutableRawPointer?>

    init() {
        baseWord = Atomic(0)
        cacheWord = Atomic(0)
        scav = 0
        spanBlocks = InlineArray(repeating: nil)
    }

    /// Spans made from the cache are smaller than this (Go: pageCachePages / 4).
    static let maxSpanPages = pageCachePages / 4
    /// Metadata blocks taken under one heap lock when a P's list is empty.
    static let spanBlockBatch = 16
}

extension UnsafeMutablePointer where Pointee == PSlot {
    /// This P's page cache (Concurrency: owned by the P holder).
    @inline(__always)
    var pageCache: UnsafeMutablePointer<PageCache> {
        (UnsafeMutableRawPointer(self) + pageCacheOffset).assumingMemoryBound(to: PageCache.self)
    }
}

extension UnsafeMutablePointer where Pointee == PageCache {
    /// Go's pageCache.allocN: `npages` contiguous cached pages taken out of the cache, and
    /// how many of them were scavenged; base 0 if no such run is cached. Caller holds the P.
    @inline(__always)
    func allocN(_ npages: Int) -> (base: UInt, scav: Int) {
        let c = pointee.cacheWord.load(ordering: .relaxed)
        if c == 0 { return (0, 0) }
        let i = npages == 1 ? c.trailingZeroBitCount : PallocBits.findBitRange64(c, npages)
        if i >= 64 { return (0, 0) }
        let mask = (npages == 64 ? ~UInt64(0) : (UInt64(1) &<< UInt64(npages)) &- 1) &<< UInt64(i)
        pointee.cacheWord.store(c & ~mask, ordering: .relaxed)
        let sc = pointee.scav & mask
        pointee.scav &= ~mask
        return (pointee.baseWord.load(ordering: .relaxed) &+ UInt(truncatingIfNeeded: i &* pageSize),
                sc.nonzeroBitCount)
    }

    /// A free metadata block of spanAllocs[which] (1...5) from this P's list, or nil.
    @inline(__always)
    func popSpanBlock(_ which: Int) -> UnsafeMutableRawPointer? {
        guard let b = pointee.spanBlocks[which &- 1] else { return nil }
        pointee.spanBlocks[which &- 1] = b.load(as: UnsafeMutableRawPointer?.self)
        return b
    }

    /// Pages held (statistics; exact while the world is stopped).
    @inline(__always)
    var cachedPages: Int { pointee.cacheWord.load(ordering: .relaxed).nonzeroBitCount }

    /// Whether the page holding `addr` is held by this cache (reports; see findObject).
    func holds(_ addr: UInt) -> Bool {
        let base = pointee.baseWord.load(ordering: .relaxed)
        if addr < base || addr >= base &+ UInt(pageCachePages &* pageSize) { return false }
        let i = Int(truncatingIfNeeded: (addr &- base) >> UInt(pageShift))
        return pointee.cacheWord.load(ordering: .relaxed) & (UInt64(1) &<< UInt64(i)) != 0
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// mheap.allocSpan's pcache path: a small span of `npages` (< PageCache.maxSpanPages)
    /// pages for span class `spanClass` (not 0) made from P `p`'s page cache, the heap lock
    /// taken only to refill the cache or its metadata list. Caller holds P `p`.
    func allocSpanCached(npages: Int, spanClass: SpanClass, p: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MSpan>? {
        let pc = p.pageCache
        let which = MHeap.spanAllocIndex(kind: SpanKind.ordinary, words: MSpan.bitmapWords(for: Int(pointee.sizeClasses.classToNElems[spanClass.sizeClass])))
        var (base, scav) = pc.allocN(npages)
        var raw = pc.popSpanBlock(which)
        if base == 0 || raw == nil {
            pointee.lock.lock()
            if base == 0 {
                // Empty, or no run of npages left in the window: give back what is left and
                // take the window of the first fit (see Role).
                refillPageCacheLocked(pc, npages)
                (base, scav) = pc.allocN(npages)
                if base == 0 {
                    // The first fit straddles two windows: the heap's own run, as Go.
                    (base, scav) = locked.pointee.pages.alloc(npages: npages)
                    if base == 0 && grow(npages: npages) { (base, scav) = locked.pointee.pages.alloc(npages: npages) }
                }
            }
            if raw == nil && base != 0 {
                refillSpanBlocksLocked(pc, which)
                raw = pc.popSpanBlock(which)
                if raw == nil { locked.pointee.pages.free(base: base, npages: npages) }
            }
            let release = pointee.memoryLimitPages != 0 && checkMemoryLimit()
            pointee.lock.unlock()
            if release { finishScavenge() }
            if base == 0 || raw == nil { return nil }
        }
        let s = raw.unsafelyUnwrapped.assumingMemoryBound(to: MSpan.self)
        initSpan(s, base: base, npages: npages, spanClass: spanClass, kind: SpanKind.ordinary, needzero: scav < npages)
        return s
    }

    /// Replace the page cache's window with the one holding the first run of `npages` free
    /// pages, growing the heap if none is free. Caller holds the heap lock and the cache's P.
    @inline(never)
    private func refillPageCacheLocked(_ pc: UnsafeMutablePointer<PageCache>, _ npages: Int) {
        flushPagesLocked(pc)
        var (base, cache, scav) = locked.pointee.pages.allocToCache(npages: npages)
        if cache == 0 && grow(npages: pageCachePages) { (base, cache, scav) = locked.pointee.pages.allocToCache(npages: npages) }
        if cache == 0 { return }
        pc.pointee.scav = scav
        pc.pointee.baseWord.store(base, ordering: .relaxed)
        pc.pointee.cacheWord.store(cache, ordering: .relaxed)
    }

    /// Fill P list `which` (empty) with up to spanBlockBatch metadata blocks. Caller holds the
    /// heap lock and the cache's P.
    @inline(never)
    private func refillSpanBlocksLocked(_ pc: UnsafeMutablePointer<PageCache>, _ which: Int) {
        var head: UnsafeMutableRawPointer? = nil
        for _ in 0..<PageCache.spanBlockBatch {
            guard let b = locked.pointee.spanAllocs[which].alloc(from: &locked.pointee.persistent) else { break }
            b.storeBytes(of: head, as: UnsafeMutableRawPointer?.self)
            head = b
        }
        pc.pointee.spanBlocks[which &- 1] = head
    }

    /// Give the cached pages back to the page allocator. Caller holds the heap lock and the
    /// cache's P (or the world is stopped).
    private func flushPagesLocked(_ pc: UnsafeMutablePointer<PageCache>) {
        let cache = pc.pointee.cacheWord.load(ordering: .relaxed)
        if cache == 0 { return }
        locked.pointee.pages.freeFromCache(base: pc.pointee.baseWord.load(ordering: .relaxed), cache: cache, scav: pc.pointee.scav)
        pc.pointee.cacheWord.store(0, ordering: .relaxed)
        pc.pointee.scav = 0
    }

    /// Go's pageCache.flush (and freeing the P's mspancache): every page and metadata block
    /// of P `p`'s cache back to the heap. Caller holds the heap lock and P `p`, or the world
    /// is stopped.
    func flushPageCacheLocked(_ p: UnsafeMutablePointer<PSlot>) {
        let pc = p.pageCache
        flushPagesLocked(pc)
        for k in 0..<5 {
            while let b = pc.popSpanBlock(k &+ 1) { locked.pointee.spanAllocs[k &+ 1].free(b) }
        }
    }

    /// flushPageCacheLocked under the heap lock. Caller holds P `p`.
    func flushPageCache(_ p: UnsafeMutablePointer<PSlot>) {
        pointee.lock.lock()
        flushPageCacheLocked(p)
        pointee.lock.unlock()
    }

    /// Pages held by all page caches (I1). Exact while the world is stopped.
    var cachedPages: Int {
        var n = 0
        for i in 0..<pointee.nprocs { n &+= proc(i).pageCache.cachedPages }
        return n
    }

    /// Whether some P's page cache holds the page of `addr` (reports only: racy while other
    /// threads allocate, see findObject).
    func pageCachesHold(_ addr: UInt) -> Bool {
        for i in 0..<pointee.nprocs where proc(i).pageCache.holds(addr) { return true }
        return false
    }
}
