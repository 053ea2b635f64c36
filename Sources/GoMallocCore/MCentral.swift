// MCentral.swift — the central free span sets, one per span class, each with its own lock.
//
// Role: hands spans with free objects to mcaches (cacheSpan), takes exhausted spans back
//   from them (uncacheSpan), and reacts when frees from other Ps land in its spans
//   (noteRemoteFree): a full span that gains a free object moves to the partial set, and a
//   span whose objects have all been freed stays in a small reserve for the next cacheSpan
//   or goes back to the heap (I3).
// Go counterpart: mcentral.go (cacheSpan, uncacheSpan, grow).
// Invariants:
//   I1. Every span on `partial` or `full` has this span class, state inUse, and location
//       partial (or empty, I3) / full to match; no span is on both lists or in a cache at
//       the same time.
//   I2. A span on `full` had no free object at its last sweep and no remote free since
//       (remoteBits all zero) — up to frees racing this very moment, which notify.
//   I3. A span whose objects are all free goes to the heap, except for at most
//       `emptyReserve` of them kept at the front of `partial` (counted in `emptyCount`) for
//       the next cacheSpan — up to a remote free racing this very moment, whose
//       notification settles it. malloc_trim (reclaimAll) gives the reserve back.
// Concurrency: `lock` guards both lists and every span on them (their bitmaps and counts).
//   Lock order: P < mcentral < mheap; never two mcentrals at once. The methods are on
//   `UnsafeMutablePointer<MCentral>` and touch one stored field at a time: `lock` is read by
//   every thread while the lock holder changes the lists.
//   The remote-free handshake: a remote freer sets its object's bit in remoteBits (fetch-or,
//   seq_cst: the free's only read-modify-write) and loads location (seq_cst). A span cached
//   by some P needs nothing more: its owner merges the bit at its next sweep. For a span on
//   a list the freer compares the span's allocBits (relaxed) with its remote bits (seq_cst
//   loads) to see whether the span left `full` or emptied, and only then takes the lock.
//   Whoever sweeps a span under this lock stores its location (seq_cst) after the sweep —
//   even when the value does not change — and then reads the remote bits (seq_cst loads) in
//   settle. In the single total order of those seq_cst operations either the freer's
//   location load comes after the store (then it also sees the swept allocBits and judges
//   the span correctly), or the sweeper's loads come after the freer's fetch-or (then the
//   sweeper sees the bit and settles the span). Two freers racing on one span: the later
//   fetch-or's owner reads after both, so it sees the span as the other left it. A freer's bit is its
//   only write, done while its object is live, so a freer that is slow to look at location
//   afterwards can only read a span that was freed or reused meanwhile, never write one;
//   settle re-checks everything under the lock.
// Failure: cacheSpan returns nil when the heap cannot grow.
import Synchronization

struct MCentral: ~Copyable {
    let lock: RuntimeLock
    /// Immutable after init.
    let spanClass: SpanClass
    /// SpanKind of its spans: ordinary, or tiny for the tiny allocator's mcentral (whose span
    /// class is 16-byte noscan too). Immutable after init.
    let kind: UInt8
    // The lists follow at listsOffset, in the same padded slot (`lists`): a change to them is
    // never an access to this struct, whose lock word every thread reads.

    init(spanClass: SpanClass, kind: UInt8) {
        lock = RuntimeLock(rank: .mcentral)
        self.spanClass = spanClass
        self.kind = kind
    }

    /// Where the lists sit in an mcentral's slot (MHeap.centralStride bytes).
    static let listsOffset = 64

    /// Emptied spans an mcentral keeps for reuse instead of giving them to the heap. When
    /// threads hand objects to each other (batch-handoff, larson), spans empty by remote
    /// frees and the owner asks for a new one moments later: without a reserve each such
    /// cycle went through the heap lock, the page allocator's summaries and the span
    /// fixalloc (a fifth of batch-handoff's samples at 870a3d5).
    static let emptyReserve = 2
}

/// The span lists of an mcentral. Guarded by: its lock.
struct CentralLists {
    /// Spans with at least one free object.
    var partial = SpanList()
    /// Spans with none.
    var full = SpanList()
    /// Spans on `partial` (pushed at its front) whose objects have all been freed, location
    /// empty (I3).
    var emptyCount = 0
}

extension UnsafeMutablePointer where Pointee == MCentral {
    /// The lists (CentralLists). Caller holds the lock.
    @inline(__always)
    var lists: UnsafeMutablePointer<CentralLists> {
        (UnsafeMutableRawPointer(self) + MCentral.listsOffset).assumingMemoryBound(to: CentralLists.self)
    }

    /// A span with free objects for P `p`'s cache, swept, with location cached(p); nil if
    /// the heap is exhausted. Caller holds P `p` and no lock.
    func cacheSpan(heap: UnsafeMutablePointer<MHeap>, p: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MSpan>? {
        pointee.lock.lock()
        while let s = popPartialLocked() {
            _ = s.sweep()
            if s.allocCount < s.nelems {
                // The ring the owner's local frees go to (heap profiling keeps them from the
                // fast path's, Profile.swift), set before the span is ours.
                s.setFreeRing(profiling: profileRate() != 0)
                // Publishes the sweep to remote freers: from now on they see cached(p).
                s.pointee.location.store(SpanLocation.cached(p), ordering: .sequentiallyConsistent)
                pointee.lock.unlock()
                return s
            }
            // Defensive: a span can only be here with a free object, but keep I2 if not.
            s.pointee.location.store(SpanLocation.full, ordering: .sequentiallyConsistent)
            lists.pointee.full.pushBack(s)
        }
        pointee.lock.unlock()
        // Nothing partial: a fresh span from the heap (Go's mcentral.grow).
        let spc = pointee.spanClass
        guard let s = heap.allocSpan(npages: Int(heap.pointee.sizeClasses.classToNPages[spc.sizeClass]),
                                     spanClass: spc, kind: pointee.kind, p: p) else { return nil }
        s.setFreeRing(profiling: profileRate() != 0)
        s.pointee.location.store(SpanLocation.cached(p), ordering: .sequentiallyConsistent)
        return s
    }

    /// Take back a span from a cache. The caller holds the P and no other lock.
    func uncacheSpan(_ s: UnsafeMutablePointer<MSpan>, heap: UnsafeMutablePointer<MHeap>) {
        pointee.lock.lock()
        _ = s.sweep()
        let toHeap = placeSweptLocked(s)
        pointee.lock.unlock()
        if toHeap { heap.freeSpan(s) }
    }

    /// A free from another P has set its bit in `s`. Called without locks; acts only if
    /// the span is on one of our lists and this free moved it off `full` or emptied it
    /// (the freer's half of the handshake, see Concurrency).
    @inline(__always)
    func noteRemoteFree(_ s: UnsafeMutablePointer<MSpan>, heap: UnsafeMutablePointer<MHeap>) {
        let loc = s.pointee.location.load(ordering: .sequentiallyConsistent)
        if loc == SpanLocation.full
            || (loc == SpanLocation.partial && s.allObjectsFreedRemotely) {
            pointee.lock.lock()
            let toHeap = settleLocked(s)
            pointee.lock.unlock()
            if toHeap { heap.freeSpan(s) }
        }
    }

    /// Sweep every span on both lists and return the empty ones to the heap (malloc_trim and
    /// tests). Caller holds no lock.
    func reclaimAll(heap: UnsafeMutablePointer<MHeap>) {
        pointee.lock.lock()
        // Each span is taken off its list, swept and placed again (at the back), once.
        var n = lists.pointee.partial.count
        while n > 0, let s = popPartialLocked() {  // the reserve goes back too
            n &-= 1
            _ = s.sweep()
            if placeSweptLocked(s, reserve: false) { heap.freeSpan(s) }
        }
        var s = lists.pointee.full.first
        while let span = s {
            s = span.pointee.next
            // A full span without remote frees has nothing to reclaim; a free whose bit
            // this scan misses sees location full and settles the span under our lock.
            if !span.hasPendingRemoteFrees { continue }
            lists.pointee.full.remove(span)
            _ = span.sweep()
            if placeSweptLocked(span, reserve: false) { heap.freeSpan(span) }
        }
        pointee.lock.unlock()
    }

    // MARK: - Placing spans (lock held)

    /// With `lock` held: the first span on `partial`, taken off it; the reserve's count
    /// follows when it is a reserved empty span (they sit at the front).
    private func popPartialLocked() -> UnsafeMutablePointer<MSpan>? {
        guard let s = lists.pointee.partial.popFront() else { return nil }
        if s.pointee.location.load(ordering: .relaxed) == SpanLocation.empty { lists.pointee.emptyCount &-= 1 }
        return s
    }

    /// With `lock` held: put `s`, just swept and on no list, where its counts say. Returns
    /// true when it has no live object: it is off every list with location none, and the
    /// caller gives it to the heap (no remote free can be on its way: none is live). The
    /// location store (seq_cst, even when the span goes back to the list it came from) and
    /// the settle that follows are the sweeper's half of the remote-free handshake (see
    /// Concurrency).
    private func placeSweptLocked(_ s: UnsafeMutablePointer<MSpan>, reserve: Bool = true) -> Bool {
        if s.allocCount == 0 {
            s.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
            return true
        }
        if s.allocCount == s.nelems {
            s.pointee.location.store(SpanLocation.full, ordering: .sequentiallyConsistent)
            lists.pointee.full.pushBack(s)
        } else {
            s.pointee.location.store(SpanLocation.partial, ordering: .sequentiallyConsistent)
            lists.pointee.partial.pushBack(s)
        }
        return settleLocked(s, reserve: reserve)
    }

    /// With `lock` held: move a full span that gained frees to partial; take a span with no
    /// live objects off its list (location none) and return true: the caller frees it.
    /// `reserve`: an emptied span may be kept in the reserve (not for malloc_trim).
    private func settleLocked(_ s: UnsafeMutablePointer<MSpan>, reserve: Bool = true) -> Bool {
        let loc = s.pointee.location.load(ordering: .sequentiallyConsistent)
        // The span may have been cached or freed (and even reused) since the caller looked.
        guard s.spanClass == pointee.spanClass, s.kind == pointee.kind,
              loc == SpanLocation.partial || loc == SpanLocation.full else { return false }
        if s.allObjectsFreedRemotely {
            if loc == SpanLocation.full { lists.pointee.full.remove(s) } else { lists.pointee.partial.remove(s) }
            if reserve && lists.pointee.emptyCount < MCentral.emptyReserve {
                // Kept for the next cacheSpan, which sweeps it (its bits stay set until then).
                s.pointee.location.store(SpanLocation.empty, ordering: .sequentiallyConsistent)
                lists.pointee.partial.pushFront(s)
                lists.pointee.emptyCount &+= 1
                return false
            }
            s.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
            return true
        }
        if loc == SpanLocation.full && s.hasPendingRemoteFrees {
            lists.pointee.full.remove(s)
            s.pointee.location.store(SpanLocation.partial, ordering: .sequentiallyConsistent)
            lists.pointee.partial.pushBack(s)
        }
        return false
    }
}
