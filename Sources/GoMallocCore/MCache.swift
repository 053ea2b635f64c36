// MCache.swift — the per-P cache: one span per span class, filled from mcentral.
//
// Role: serve small allocations without locks. A P's mcache holds, for each of the 136 span
//   classes, the span it is allocating from (or the empty dummy span); refill swaps an
//   exhausted span for one with free objects. It also keeps the P's allocation counters.
//   Unlike Go's, it also keeps up to `maxRetired` exhausted spans per class that it allocated
//   from recently ("retired"): they stay cached by this P, so the objects this thread frees
//   soon after allocating them — the usual pattern — are plain stores, not remote frees;
//   refill sweeps them before asking mcentral.
// Go counterpart: mcache.go (mcache, refill, releaseAll), mstats.go (per-P stats).
// Invariants:
//   I1. alloc[c] is the dummy empty span or a span of span class c with location cached(P).
//   I1b. retired[c] lists retiredCount[c] <= maxRetired spans of class c with location
//        cached(P), linked through MSpan.next; none of them is alloc[c].
//   I2. A span is in at most one mcache.
//   I3. nmalloc[c] - nfree[c], summed over all Ps, is the number of live objects of class c.
// Concurrency: Owner: the thread holding the P (one at a time, see Proc.swift). Other threads
//   only read the counters (racy reads for statistics).
// Failure: refill returns false when the heap is exhausted.

struct MCache {
    /// Spans to allocate from, indexed by span class. Owner: P.
    var alloc: InlineArray<136, UnsafeMutablePointer<MSpan>>
    /// Objects of each size class allocated / freed through this P. Owner: P (racy reads).
    var nmalloc: InlineArray<68, UInt64>
    var nfree: InlineArray<68, UInt64>
    /// Exhausted spans still owned by this P, per span class (I1b). Owner: P.
    var retired: InlineArray<136, UnsafeMutablePointer<MSpan>?>
    var retiredCount: InlineArray<136, UInt8>
    /// The P that owns this cache. Immutable.
    var p: UnsafeMutablePointer<PSlot>

    // MARK: - Unchecked access for the fast paths
    //
    // `alloc` is the first stored property, then `nmalloc`, then `nfree` (a test checks the
    // offsets): the fast paths index them without the InlineArray bounds check.

    static let nmallocOffset = MemoryLayout<InlineArray<136, UnsafeMutablePointer<MSpan>>>.size
    static let nfreeOffset = nmallocOffset + MemoryLayout<InlineArray<68, UInt64>>.size

    @inline(__always)
    static func allocSlot(_ c: UnsafeMutablePointer<MCache>, _ spc: SpanClass) -> UnsafeMutablePointer<UnsafeMutablePointer<MSpan>> {
        UnsafeMutableRawPointer(c).assumingMemoryBound(to: UnsafeMutablePointer<MSpan>.self) + spc.index
    }

    @inline(__always)
    static func countMalloc(_ c: UnsafeMutablePointer<MCache>, _ sizeClass: Int) {
        (UnsafeMutableRawPointer(c) + nmallocOffset).assumingMemoryBound(to: UInt64.self)[sizeClass] &+= 1
    }

    @inline(__always)
    static func countFree(_ c: UnsafeMutablePointer<MCache>, _ sizeClass: Int) {
        (UnsafeMutableRawPointer(c) + nfreeOffset).assumingMemoryBound(to: UInt64.self)[sizeClass] &+= 1
    }

    init(p: UnsafeMutablePointer<PSlot>, emptySpan: UnsafeMutablePointer<MSpan>) {
        alloc = InlineArray(repeating: emptySpan)
        nmalloc = InlineArray(repeating: 0)
        nfree = InlineArray(repeating: 0)
        retired = InlineArray(repeating: nil)
        retiredCount = InlineArray(repeating: 0)
        self.p = p
    }

    // MARK: - Slow path (partner of MSpan.nextFreeFast)

    /// Go's mcache.nextFree: the next object of span class `spc`, refilling as needed.
    /// Returns 0 when memory is exhausted.
    @inline(never)
    mutating func nextFree(_ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) -> UInt {
        let s = alloc[spc.index]
        var idx = s.pointee.nextFreeIndex()
        if idx != s.pointee.nelems {
            s.pointee.allocCount &+= 1
            return s.pointee.startAddr &+ UInt(bitPattern: idx &* s.pointee.elemSize)
        }
        guard refill(spc, heap: heap) else { return 0 }
        let t = alloc[spc.index]
        let v = t.pointee.nextFreeFast()
        if v != 0 { return v }
        idx = t.pointee.nextFreeIndex()
        if idx == t.pointee.nelems { throwFatal("refill returned a full span") }
        t.pointee.allocCount &+= 1
        return t.pointee.startAddr &+ UInt(bitPattern: idx &* t.pointee.elemSize)
    }

    /// Go's mcache.refill: make alloc[spc] a span with a free object. The exhausted span is
    /// swept first (our explicit-free counterpart of Go's sweep); if enough came back it
    /// stays, otherwise it goes back to mcentral and another comes from there.
    /// Spans kept per class after they run out (see Role).
    static let maxRetired = 8

    /// Enough free objects to allocate from again (an eighth of the span), judged without
    /// sweeping (MSpan.freeEstimate).
    @inline(__always)
    static func worthReusing(_ s: UnsafeMutablePointer<MSpan>) -> Bool {
        let free = s.pointee.freeEstimate
        return free > 0 && free >= s.pointee.nelems / 8
    }

    mutating func refill(_ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) -> Bool {
        let c = spc.index
        let s = alloc[c]
        let empty = heap.pointee.emptySpan
        if s != empty {
            if MCache.worthReusing(s) {
                _ = s.pointee.sweep()
                if s.pointee.allocCount < s.pointee.nelems { return true }
            }
            alloc[c] = empty
            retire(s, spc, heap: heap)
        }
        // A retired span that got enough objects back since it ran out.
        var prev: UnsafeMutablePointer<MSpan>? = nil
        var r = retired[c]
        while let t = r {
            r = t.pointee.next
            if t != s && MCache.worthReusing(t) {
                _ = t.pointee.sweep()
                if t.pointee.allocCount < t.pointee.nelems {
                    if let prev { prev.pointee.next = r } else { retired[c] = r }
                    retiredCount[c] &-= 1
                    t.pointee.next = nil
                    alloc[c] = t
                    return true
                }
            }
            prev = t
        }
        guard let t = heap.pointee.central(spc).pointee.cacheSpan(heap: heap, p: p) else { return false }
        alloc[c] = t
        return true
    }

    /// Keep an exhausted span on this P's retired list; past maxRetired, the oldest goes back
    /// to mcentral.
    private mutating func retire(_ s: UnsafeMutablePointer<MSpan>, _ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) {
        let c = spc.index
        s.pointee.next = retired[c]
        retired[c] = s
        retiredCount[c] &+= 1
        if Int(retiredCount[c]) <= MCache.maxRetired { return }
        var before = s
        while let n = before.pointee.next, n.pointee.next != nil { before = n }
        let oldest = before.pointee.next.unsafelyUnwrapped
        before.pointee.next = nil
        retiredCount[c] &-= 1
        heap.pointee.central(spc).pointee.uncacheSpan(oldest, heap: heap)
    }

    /// Give every cached and retired span back to mcentral (malloc_trim, tests). Caller
    /// holds the P.
    mutating func releaseAll(heap: UnsafeMutablePointer<MHeap>) {
        let empty = heap.pointee.emptySpan
        for i in 0..<numSpanClasses {
            let central = heap.pointee.central(SpanClass(raw: UInt8(i)))
            var r = retired[i]
            while let t = r {
                r = t.pointee.next
                t.pointee.next = nil
                central.pointee.uncacheSpan(t, heap: heap)
            }
            retired[i] = nil
            retiredCount[i] = 0
            let s = alloc[i]
            if s == empty { continue }
            alloc[i] = empty
            central.pointee.uncacheSpan(s, heap: heap)
        }
    }
}
