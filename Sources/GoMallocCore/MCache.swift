// MCache.swift — the per-P cache: one span per span class, filled from mcentral.
//
// Role: serve small allocations without locks. A P's mcache holds, for each of the 136 span
//   classes, the span it is allocating from (or the empty dummy span); refill swaps an
//   exhausted span for one with free objects. Unlike Go's, it also keeps exhausted spans it
//   allocated from recently ("retired"), up to `maxRetired` per class and `maxRetiredPages`
//   in all: they stay cached by this P, so the objects this thread frees after allocating
//   them — the usual pattern, even when the thread keeps megabytes live and frees at random
//   (larson) — are plain stores, not remote frees; refill looks at a few of them (oldest
//   first, rotating) for one that got enough back before asking mcentral. Each operation on
//   the retired lists is O(1) or bounded by maxRetiredScan. (The P's allocation counters live in its slot, Proc.swift.)
//   In front of the spans sits, per span class, a small ring of the objects this P freed
//   last (the "recent frees"; Go has none, TCMalloc's per-CPU slabs are the model): malloc
//   pops from it before scanning a span, so the most recently freed object — still in the
//   CPU's cache — is handed out first (LIFO reuse). An object on the ring is also marked
//   in its span's freeBits, exactly as any local free, so the ring is only an index into
//   the bitmaps: free's checks stay exact (a second free sees the bit), a sweep merges the
//   bit as usual, and forgetting the ring (trim) loses nothing. Each entry carries the
//   object's address and the address of its freeBits bit, so that a pop clears the bit
//   without the span's header or a division.
// Go counterpart: mcache.go (mcache, allocmcache, refill, releaseAll).
// Invariants:
//   I1. alloc[c] is the dummy empty span or a span of span class c with location cached(P).
//   I1b. retired[c] lists at most maxRetired spans of class c with location cached(P),
//        oldest first, linked through MSpan.next/prev (free while a span is cached); none of
//        them is alloc[c]; retiredPages is the sum of their pages and never exceeds
//        maxRetiredPages.
//   I2. A span is in at most one mcache.
//   I3. (Rings c < numSpanClasses; the rings after them take the local frees of cached noscan
//       spans while heap profiling is on, and are never read: profileFreeRing, Profile.swift.)
//       The live entries of recent ring c are the nonzero ones, a run ending just below
//       `top` (every other entry is zero). Each is (addr, bit) with addr the start of object
//       i of an ordinary (not tiny) span cached by this P, of span class index c, and bit the address of that span's
//       freeBits bit i, which is set; no addr appears twice. Entries are only pushed by
//       local frees and popped by malloc; a sweep of a span this P caches happens only in
//       refill of its class — reached when ring c is empty — or after clearRecent
//       (releaseAll), so no entry outlives its freeBits bit.
// Concurrency: Owner: the thread holding the P (one at a time, see Proc.swift); nobody else
//   reads an mcache except a stopped world. Methods are on `UnsafeMutablePointer<MCache>`.
// Failure: refill returns false when the heap is exhausted; createMCache returns nil when
//   the metadata allocator cannot grow (malloc then fails with ENOMEM; free never needs it).
import Synchronization

struct MCache {
    /// Spans to allocate from, indexed by span class. Owner: P. The first stored property:
    /// the fast paths index it without the InlineArray bounds check (allocSlot).
    var alloc: InlineArray<136, UnsafeMutablePointer<MSpan>>
    /// Exhausted spans still owned by this P, per span class (I1b). Owner: P. Right after
    /// `alloc`, at retiredOffset (a test checks it): changed in place through retiredList.
    var retired: InlineArray<136, SpanList>
    /// Pages in all retired spans (I1b). Owner: P.
    var retiredPages: Int
    /// The tiny allocator's state (Tiny.swift): the tiny span blocks come from (or the empty
    /// span), the open block (Go's `tiny`; 0 = none) and the offset its next sub-object may
    /// start at (Go's `tinyoffset`). Owner: P.
    var tinySpan: UnsafeMutablePointer<MSpan>
    var tiny: UInt
    var tinyOffset: Int
    /// The span of the open block (tinySpan may have moved on since it was opened). Owner: P.
    var tinySpanOfOpen: UnsafeMutablePointer<MSpan>
    /// The P's stack cache, one LIFO per stack order (Go's mcache.stackcache; Stack.swift
    /// I5). Owner: P.
    var stackCache: InlineArray<4, StackCacheList>
    /// The P that owns this cache. Immutable.
    let p: UnsafeMutablePointer<PSlot>
    /// Heap profiling (Profile.swift): bytes of large objects this P may still allocate
    /// before the next sample (Go's mcache.nextSample; 0 = not drawn yet; small classes count
    /// down profileLeft instead), and its random generator's state (0 = not seeded yet).
    /// Owner: P.
    var nextSample: Int
    var sampleRandom: UInt64

    /// Spans kept per class after they run out (see Role).
    static let maxRetired = 64
    /// Pages kept in retired spans per P, over all classes: 8 MiB, enough for a thread that
    /// keeps a few megabytes of small objects live and frees them in any order (larson keeps
    /// about 2.5 MiB per thread; with 128 pages its frees were mostly remote and its spans
    /// cycled through mcentral). Retired spans are mostly full of live objects; an idle P
    /// pins at most this much free memory (if every object in them was freed) until it
    /// allocates again or the heap is trimmed.
    static let maxRetiredPages = 1024
    /// Where `retired` sits (Embedded Swift has no key paths for MemoryLayout.offset(of:)).
    static let retiredOffset = numSpanClasses * MemoryLayout<UnsafeMutablePointer<MSpan>>.stride
    /// Retired spans refill inspects before asking mcentral.
    static let maxRetiredScan = 8

    /// Entries per recent-free ring (I3), a power of two. 32 covers the interleaved
    /// free/malloc patterns of the suite's workloads; past it the oldest are forgotten (left
    /// to the sweep).
    static let recentCapacity = 32
    /// Rings: one per span class, then, while heap profiling is on, one per size class that
    /// the local frees of cached noscan spans go to instead (profileFreeRing; Profile.swift:
    /// the malloc fast path never pops them, so that its allocations can be budgeted).
    static let ringCount = numSpanClasses + numSizeClasses
    /// The recent-free rings follow the struct in the mcache's block: their tops
    /// (ringCount UInt32s, padded to a cache line), then the entries, recentCapacity
    /// per ring (the large classes unused; only the rings of classes used are ever
    /// touched, so the block's untouched pages stay unbacked); then heap profiling's
    /// per-class countdowns (profileLeftOffset: bytes until the next sample, Int, one per
    /// span class) and the P's malloc count of each class when it was last looked at
    /// (profileSeenOffset, UInt64).
    static let recentTopsOffset = (MemoryLayout<MCache>.stride + 63) & ~63
    static let recentEntriesOffset = recentTopsOffset + ((ringCount * 4 + 63) & ~63)
    static let profileLeftOffset = recentEntriesOffset + ringCount * recentCapacity * MemoryLayout<RecentFree>.stride
    static let profileSeenOffset = profileLeftOffset + numSpanClasses * 8
    /// Bytes of an mcache's block (MHeap's cacheAlloc), a multiple of 64.
    static let blockBytes = (profileSeenOffset + numSpanClasses * 8 + 63) & ~63

    init(p: UnsafeMutablePointer<PSlot>, emptySpan: UnsafeMutablePointer<MSpan>) {
        alloc = InlineArray(repeating: emptySpan)
        retired = InlineArray(repeating: SpanList())
        retiredPages = 0
        tinySpan = emptySpan
        tinySpanOfOpen = emptySpan
        tiny = 0
        tinyOffset = 0
        stackCache = InlineArray(repeating: StackCacheList())
        self.p = p
        nextSample = 0
        sampleRandom = 0
    }

    /// The slot of alloc for span class `spc`, without a bounds check (`alloc` is at offset 0,
    /// a test checks it).
    @inline(__always)
    static func allocSlot(_ c: UnsafeMutablePointer<MCache>, _ spc: SpanClass) -> UnsafeMutablePointer<UnsafeMutablePointer<MSpan>> {
        UnsafeMutableRawPointer(c).assumingMemoryBound(to: UnsafeMutablePointer<MSpan>.self) + spc.index
    }

    /// Enough free objects to allocate from again (an eighth of the span), judged without
    /// sweeping (MSpan.freeEstimate).
    @inline(__always)
    static func worthReusing(_ s: UnsafeMutablePointer<MSpan>) -> Bool {
        let free = s.freeEstimate
        return free > 0 && free >= s.nelems / 8
    }
}

/// An entry of a recent-free ring (I3); addr 0 = empty.
struct RecentFree {
    var addr: UInt
    /// The object's freeBits bit as a bit address: (address of freeBits word 0) * 8 + index.
    /// Word address = bit >> 6 << 3, bit number = bit & 63 (freeBits are 8-byte aligned).
    var bit: UInt

    /// The bit address of object `i`'s freeBits bit in span `s`.
    @inline(__always)
    static func bitAddress(_ s: UnsafeMutablePointer<MSpan>, _ i: Int) -> UInt {
        (UInt(bitPattern: s.freeBits.base) &<< 3) &+ UInt(bitPattern: i)
    }

    @inline(__always)
    var word: UnsafeMutablePointer<Atomic<UInt64>> {
        UnsafeMutablePointer(bitPattern: (bit &>> 6) &<< 3).unsafelyUnwrapped
    }

    @inline(__always)
    var mask: UInt64 { UInt64(1) &<< UInt64(bit & 63) }
}

// MARK: - Creation (Go's allocmcache)

/// The mcache of P `slot`, created the first time the P is used. Caller holds the P.
@inline(__always)
func mcacheOf(_ h: UnsafeMutablePointer<MHeap>, _ slot: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MCache>? {
    if let c = slot.mcache { return c }
    return createMCache(h, slot)
}

@inline(never)
func createMCache(_ h: UnsafeMutablePointer<MHeap>, _ slot: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MCache>? {
    h.pointee.lock.lock()
    defer { h.pointee.lock.unlock() }
    if let c = slot.mcache { return c }
    guard let raw = h.locked.pointee.cacheAlloc.alloc(from: &h.locked.pointee.persistent) else { return nil }
    let c = raw.bindMemory(to: MCache.self, capacity: 1)
    c.initialize(to: MCache(p: slot, emptySpan: h.pointee.emptySpan))
    slot.mcache = c
    h.locked.pointee.mcachesCreated &+= 1
    return c
}

// MARK: - Methods, on the pointer (owner: the P holder)

extension UnsafeMutablePointer where Pointee == MCache {
    // MARK: Recent frees (I3)

    /// Ring `c`'s top: a running position; the newest entry is at (top - 1) mod recentCapacity.
    @inline(__always)
    private func recentTop(_ c: Int) -> UnsafeMutablePointer<UInt32> {
        (UnsafeMutableRawPointer(self) + MCache.recentTopsOffset).assumingMemoryBound(to: UInt32.self) + c
    }

    @inline(__always)
    private func recentEntries(_ c: Int) -> UnsafeMutablePointer<RecentFree> {
        (UnsafeMutableRawPointer(self) + MCache.recentEntriesOffset).assumingMemoryBound(to: RecentFree.self)
            + c &* MCache.recentCapacity
    }

    /// Remember a local free of `addr`, object `index` of `span` (span class index `c`), whose
    /// freeBits bit the caller just set, for reuse first. When the ring is full the new entry
    /// overwrites the oldest (that object stays free in freeBits, for the sweep): the newest
    /// frees are the hot ones, and overflowing costs nothing more than a push.
    @inline(__always)
    func pushRecent(_ c: Int, addr: UInt, span: UnsafeMutablePointer<MSpan>, index: Int) {
        let top = recentTop(c)
        let t = top.pointee
        recentEntries(c)[Int(t) & (MCache.recentCapacity &- 1)] =
            RecentFree(addr: addr, bit: RecentFree.bitAddress(span, index))
        top.pointee = t &+ 1
    }

    /// The object of span class index `c` freed last on this P, allocated again (its freeBits bit
    /// cleared), or 0 when the ring is empty.
    @inline(__always)
    func popRecent(_ c: Int) -> UInt {
        let top = recentTop(c)
        let t = top.pointee &- 1
        let e = recentEntries(c) + Int(t) & (MCache.recentCapacity &- 1)
        let entry = e.pointee
        if entry.addr == 0 { return 0 }
        e.pointee.addr = 0
        top.pointee = t
        let w = entry.word
        let f = w.pointee.load(ordering: .relaxed)
        internalCheck(f & entry.mask != 0, "MCache.I3: recent free without its freeBits bit")
        w.pointee.store(f & ~entry.mask, ordering: .relaxed)
        return entry.addr
    }

    /// Number of entries on ring `c` (the run of nonzero entries below top).
    func recentCount(_ c: Int) -> Int {
        let t = Int(recentTop(c).pointee)
        var n = 0
        while n < MCache.recentCapacity && recentEntries(c)[(t &- 1 &- n) & (MCache.recentCapacity &- 1)].addr != 0 {
            n &+= 1
        }
        return n
    }

    /// I3's shape: no nonzero entry outside the run that recentCount counts.
    func recentRingIsContiguous(_ c: Int) -> Bool {
        var nonzero = 0
        for k in 0..<MCache.recentCapacity where recentEntries(c)[k].addr != 0 { nonzero &+= 1 }
        return nonzero == recentCount(c)
    }

    /// Entry k of ring `c`, 0 = the oldest (checks and tests).
    func recentFree(_ c: Int, _ k: Int) -> RecentFree {
        let pos = Int(recentTop(c).pointee) &- recentCount(c) &+ k
        return recentEntries(c)[pos & (MCache.recentCapacity &- 1)]
    }

    /// Heap profiling's countdown of span class index `c`: bytes until its next sample (0:
    /// not drawn yet). Owner: P.
    @inline(__always)
    func profileLeft(_ c: Int) -> UnsafeMutablePointer<Int> {
        (UnsafeMutableRawPointer(self) + MCache.profileLeftOffset).assumingMemoryBound(to: Int.self) + c
    }

    /// The P's malloc count of span class index `c` when heap profiling last looked at it.
    /// Owner: P.
    @inline(__always)
    func profileSeen(_ c: Int) -> UnsafeMutablePointer<UInt64> {
        (UnsafeMutableRawPointer(self) + MCache.profileSeenOffset).assumingMemoryBound(to: UInt64.self) + c
    }

    /// Forget the recent frees of ring `c` (their objects stay free in freeBits).
    func clearRecent(_ c: Int) {
        for k in 0..<MCache.recentCapacity where recentEntries(c)[k].addr != 0 { recentEntries(c)[k].addr = 0 }
    }

    /// Forget every recent free (their objects stay free in freeBits). Before spans leave.
    func clearRecent() {
        for c in 0..<MCache.ringCount {
            // Only entries in use are written: the rings of classes never used stay untouched
            // (unbacked) pages.
            for k in 0..<MCache.recentCapacity where recentEntries(c)[k].addr != 0 { recentEntries(c)[k].addr = 0 }
        }
    }

    // MARK: Slow path (partner of MSpan.nextFreeFast)

    /// Go's mcache.nextFree: the next object of span class `spc`, refilling as needed.
    /// Returns 0 when memory is exhausted.
    @inline(never)
    func nextFree(_ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) -> UInt {
        let s = pointee.alloc[spc.index]
        var idx = s.nextFreeIndex()
        if idx != s.nelems {
            s.allocCount = s.allocCount &+ 1
            return s.pointee.startAddr &+ UInt(bitPattern: idx &* s.elemSize)
        }
        guard refill(spc, heap: heap) else { return 0 }
        let t = pointee.alloc[spc.index]
        let v = t.nextFreeFast()
        if v != 0 { return v }
        idx = t.nextFreeIndex()
        if idx == t.nelems { throwFatal("refill returned a full span") }
        t.allocCount = t.allocCount &+ 1
        return t.pointee.startAddr &+ UInt(bitPattern: idx &* t.elemSize)
    }

    /// Go's mcache.refill: make alloc[spc] a span with a free object. The exhausted span is
    /// swept first (our explicit-free counterpart of Go's sweep) if enough came back to
    /// it; otherwise it is retired, the retired spans are tried the same way, and only then
    /// does a span come from mcentral.
    func refill(_ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) -> Bool {
        internalCheck(recentCount(spc.index) == 0, "MCache.I3: refill with recent frees left")
        let c = spc.index
        let s = pointee.alloc[c]
        let empty = heap.pointee.emptySpan
        if s != empty {
            if MCache.worthReusing(s) {
                _ = s.sweep()
                if s.allocCount < s.nelems { return true }
            }
            pointee.alloc[c] = empty
            retire(s, spc, heap: heap)
        }
        // A retired span that got enough objects back since it ran out: look at the oldest
        // few, moving each one found wanting to the back, so that the next refill looks at
        // others.
        let list = retiredList(c)
        var scan = Swift.min(list.pointee.count, MCache.maxRetiredScan)
        while scan > 0, let t = list.pointee.popFront() {
            scan &-= 1
            if MCache.worthReusing(t) {
                _ = t.sweep()
                if t.allocCount < t.nelems {
                    pointee.retiredPages &-= t.pointee.npages
                    pointee.alloc[c] = t
                    return true
                }
            }
            list.pointee.pushBack(t)
        }
        guard let t = heap.central(spc).cacheSpan(heap: heap, p: pointee.p) else { return false }
        pointee.alloc[c] = t
        return true
    }

    /// Keep an exhausted span on this P's retired list (at the back); past maxRetired spans
    /// of its class or maxRetiredPages in all, the oldest of its class (possibly `s` itself)
    /// go back to mcentral.
    private func retire(_ s: UnsafeMutablePointer<MSpan>, _ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) {
        let list = retiredList(spc.index)
        list.pointee.pushBack(s)
        pointee.retiredPages &+= s.pointee.npages
        while list.pointee.count > MCache.maxRetired || pointee.retiredPages > MCache.maxRetiredPages,
              let oldest = list.pointee.popFront() {
            pointee.retiredPages &-= oldest.pointee.npages
            heap.central(spc).uncacheSpan(oldest, heap: heap)
        }
    }

    /// The retired list of span class index `c` (a pointer: the list is changed in place).
    @inline(__always)
    func retiredList(_ c: Int) -> UnsafeMutablePointer<SpanList> {
        (UnsafeMutableRawPointer(self) + MCache.retiredOffset)
            .assumingMemoryBound(to: SpanList.self) + c
    }

    /// Give every cached and retired span back to mcentral, then the P's page cache to the
    /// heap (malloc_trim, tests). Caller holds the P.
    func releaseAll(heap: UnsafeMutablePointer<MHeap>) {
        clearRecent()
        let empty = heap.pointee.emptySpan
        closeTinyBlock(heap: heap)
        let t = pointee.tinySpan
        if t != empty {
            pointee.tinySpan = empty
            heap.tinyCentral.uncacheSpan(t, heap: heap)
        }
        pointee.tinySpanOfOpen = empty
        for i in 0..<numSpanClasses {
            let central = heap.central(SpanClass(raw: UInt8(i)))
            let list = retiredList(i)
            while let t = list.pointee.popFront() { central.uncacheSpan(t, heap: heap) }
            let s = pointee.alloc[i]
            if s == empty { continue }
            pointee.alloc[i] = empty
            central.uncacheSpan(s, heap: heap)
        }
        pointee.retiredPages = 0
        heap.flushPageCache(pointee.p)
    }
}
