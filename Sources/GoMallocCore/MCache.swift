// MCache.swift — the per-P cache: one span per span class, filled from mcentral.
//
// Role: serve small allocations without locks. A P's mcache holds, for each of the 136 span
//   classes, the span it is allocating from (or the empty dummy span); refill swaps an
//   exhausted span for one with free objects. Unlike Go's, it also keeps exhausted spans it
//   allocated from recently ("retired"), up to `maxRetired` per class and `maxRetiredPages`
//   in all: they stay cached by this P, so the objects this thread frees soon after
//   allocating them — the usual pattern — are plain stores, not remote frees; refill sweeps
//   them before asking mcentral. (The P's allocation counters live in its slot, Proc.swift.)
// Go counterpart: mcache.go (mcache, allocmcache, refill, releaseAll).
// Invariants:
//   I1. alloc[c] is the dummy empty span or a span of span class c with location cached(P).
//   I1b. retired[c] lists retiredCount[c] <= maxRetired spans of class c with location
//        cached(P), linked through MSpan.next; none of them is alloc[c]; retiredPages is the
//        sum of their pages and never exceeds maxRetiredPages.
//   I2. A span is in at most one mcache.
// Concurrency: Owner: the thread holding the P (one at a time, see Proc.swift); nobody else
//   reads an mcache except a stopped world. Methods are on `UnsafeMutablePointer<MCache>`.
// Failure: refill returns false when the heap is exhausted; createMCache returns nil when
//   the metadata allocator cannot grow (malloc then fails with ENOMEM; free never needs it).

struct MCache {
    /// Spans to allocate from, indexed by span class. Owner: P. The first stored property:
    /// the fast paths index it without the InlineArray bounds check (allocSlot).
    var alloc: InlineArray<136, UnsafeMutablePointer<MSpan>>
    /// Exhausted spans still owned by this P, per span class (I1b). Owner: P.
    var retired: InlineArray<136, UnsafeMutablePointer<MSpan>?>
    var retiredCount: InlineArray<136, UInt8>
    /// Pages in all retired spans (I1b). Owner: P.
    var retiredPages: Int
    /// The P that owns this cache. Immutable.
    let p: UnsafeMutablePointer<PSlot>

    /// Spans kept per class after they run out (see Role).
    static let maxRetired = 8
    /// Pages kept in retired spans per P, over all classes: 1 MiB. An idle P pins at most
    /// this much (its objects may all have been freed) until it allocates or the heap is trimmed.
    static let maxRetiredPages = 128

    init(p: UnsafeMutablePointer<PSlot>, emptySpan: UnsafeMutablePointer<MSpan>) {
        alloc = InlineArray(repeating: emptySpan)
        retired = InlineArray(repeating: nil)
        retiredCount = InlineArray(repeating: 0)
        retiredPages = 0
        self.p = p
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
        // A retired span that got enough objects back since it ran out.
        var prev: UnsafeMutablePointer<MSpan>? = nil
        var r = pointee.retired[c]
        while let t = r {
            r = t.pointee.next
            if t != s && MCache.worthReusing(t) {
                _ = t.sweep()
                if t.allocCount < t.nelems {
                    if let prev { prev.pointee.next = r } else { pointee.retired[c] = r }
                    pointee.retiredCount[c] &-= 1
                    pointee.retiredPages &-= t.pointee.npages
                    t.pointee.next = nil
                    pointee.alloc[c] = t
                    return true
                }
            }
            prev = t
        }
        guard let t = heap.central(spc).cacheSpan(heap: heap, p: pointee.p) else { return false }
        pointee.alloc[c] = t
        return true
    }

    /// Keep an exhausted span on this P's retired list; past maxRetired spans of its class or
    /// maxRetiredPages in all, the oldest of its class (possibly `s` itself) goes back to
    /// mcentral.
    private func retire(_ s: UnsafeMutablePointer<MSpan>, _ spc: SpanClass, heap: UnsafeMutablePointer<MHeap>) {
        let c = spc.index
        s.pointee.next = pointee.retired[c]
        pointee.retired[c] = s
        pointee.retiredCount[c] &+= 1
        pointee.retiredPages &+= s.pointee.npages
        while Int(pointee.retiredCount[c]) > MCache.maxRetired || pointee.retiredPages > MCache.maxRetiredPages {
            // Unlink the last (oldest) span of class c.
            var before: UnsafeMutablePointer<MSpan>? = nil
            var oldest = pointee.retired[c].unsafelyUnwrapped
            while let n = oldest.pointee.next { before = oldest; oldest = n }
            if let before { before.pointee.next = nil } else { pointee.retired[c] = nil }
            pointee.retiredCount[c] &-= 1
            pointee.retiredPages &-= oldest.pointee.npages
            heap.central(spc).uncacheSpan(oldest, heap: heap)
            if pointee.retired[c] == nil { break }
        }
    }

    /// Give every cached and retired span back to mcentral (malloc_trim, tests). Caller
    /// holds the P.
    func releaseAll(heap: UnsafeMutablePointer<MHeap>) {
        let empty = heap.pointee.emptySpan
        for i in 0..<numSpanClasses {
            let central = heap.central(SpanClass(raw: UInt8(i)))
            var r = pointee.retired[i]
            while let t = r {
                r = t.pointee.next
                t.pointee.next = nil
                central.uncacheSpan(t, heap: heap)
            }
            pointee.retired[i] = nil
            pointee.retiredCount[i] = 0
            let s = pointee.alloc[i]
            if s == empty { continue }
            pointee.alloc[i] = empty
            central.uncacheSpan(s, heap: heap)
        }
        pointee.retiredPages = 0
    }
}
