// MCentral.swift — the central free span sets, one per span class, each with its own lock.
//
// Role: hands spans with free objects to mcaches (cacheSpan), takes exhausted spans back
//   from them (uncacheSpan), and reacts when frees from other Ps land in its spans
//   (noteRemoteFree): a full span that gains a free object moves to the partial set, and a
//   span whose objects have all been freed goes back to the heap.
// Go counterpart: mcentral.go (cacheSpan, uncacheSpan, grow).
// Invariants:
//   I1. Every span on `partial` or `full` has this span class, state inUse, and location
//       partial / full to match; no span is on both lists or in a cache at the same time.
//   I2. A span on `full` had no free object at its last sweep and no remote free since
//       (remoteFreeCount == 0) — up to frees racing this very moment, which notify.
//   I3. A span whose objects are all free is never left on a list: it goes to the heap —
//       except while a remote free that a sweep has already merged is still in flight
//       (remoteFreeCount < 0: its bit is set, its count not yet added). That free's own
//       notification gives the span back (see uncacheSpan).
// Concurrency: `lock` guards both lists and every span on them (their bitmaps and counts).
//   Lock order: P < mcentral < mheap; never two mcentrals at once.
// Failure: cacheSpan returns nil when the heap cannot grow.
import Synchronization

struct MCentral: ~Copyable {
    let lock: RuntimeLock
    /// Immutable after init.
    var spanClass: SpanClass
    /// Spans with at least one free object. Guarded by: lock.
    var partial: SpanList
    /// Spans with none. Guarded by: lock.
    var full: SpanList

    init(spanClass: SpanClass) {
        lock = RuntimeLock()
        self.spanClass = spanClass
        partial = SpanList()
        full = SpanList()
    }

    /// A span with free objects for P `p`'s cache, swept, with location cached(p); nil if
    /// the heap is exhausted. Caller holds P `p` and no lock.
    mutating func cacheSpan(heap: UnsafeMutablePointer<MHeap>, p: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MSpan>? {
        lock.lock()
        while let s = partial.popFront() {
            _ = s.pointee.sweep()
            if s.pointee.allocCount < s.pointee.nelems {
                s.pointee.location.store(SpanLocation.cached(p), ordering: .sequentiallyConsistent)
                lock.unlock()
                return s
            }
            // Defensive: a span can only be here with a free object, but keep I2 if not.
            s.pointee.location.store(SpanLocation.full, ordering: .sequentiallyConsistent)
            full.pushBack(s)
        }
        lock.unlock()
        // Nothing partial: a fresh span from the heap (Go's mcentral.grow).
        guard let s = heap.pointee.allocSpan(npages: Int(heap.pointee.sizeClasses.classToNPages[spanClass.sizeClass]),
                                             spanClass: spanClass) else { return nil }
        s.pointee.location.store(SpanLocation.cached(p), ordering: .sequentiallyConsistent)
        return s
    }

    /// Take back a span from a cache. The caller holds the P and no other lock.
    mutating func uncacheSpan(_ s: UnsafeMutablePointer<MSpan>, heap: UnsafeMutablePointer<MHeap>) {
        lock.lock()
        _ = s.pointee.sweep()
        if s.pointee.allocCount == 0 && MCentral.noFreeInFlight(s) {
            s.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
            lock.unlock()
            heap.pointee.freeSpan(s)
            return
        }
        if s.pointee.allocCount == s.pointee.nelems {
            s.pointee.location.store(SpanLocation.full, ordering: .sequentiallyConsistent)
            full.pushBack(s)
        } else {
            s.pointee.location.store(SpanLocation.partial, ordering: .sequentiallyConsistent)
            partial.pushBack(s)
        }
        // A free from another P may have landed after the sweep but before the location
        // store; it saw "cached" and did not notify. Both sides use seq_cst, so either it sees
        // our location or we see its count here (Dekker): settle the span's list now.
        settleLocked(s, heap: heap)
    }

    /// True when no remote free of `s` is between setting its bit and counting it, for a
    /// span just swept with no live object left. A sweep may merge such a free's bit before
    /// the freer adds to remoteFreeCount (which then dips below zero); were the span freed
    /// now, that add would land in freed metadata, or in the next span to reuse it, as a
    /// free that never happened, and that span's settle would free it with live objects.
    /// Such a span stays on the partial list instead: the freer's add brings the count to
    /// zero and its noteRemoteFree (count 0 >= allocCount 0) settles it. A freer whose bit
    /// the sweep missed cannot exist here: its object would still count as allocated.
    @inline(__always)
    static func noFreeInFlight(_ s: UnsafeMutablePointer<MSpan>) -> Bool {
        s.pointee.remoteFreeCount.load(ordering: .sequentiallyConsistent) == 0
    }

    /// A free from another P landed in `s` (count = remoteFreeCount after it). Called
    /// without locks; acts only if the span is on one of our lists. A count of zero or less
    /// means a sweep merged this free before it was counted (see noFreeInFlight): the span
    /// may be waiting for it, with an allocCount this thread has no reason to see yet.
    mutating func noteRemoteFree(_ s: UnsafeMutablePointer<MSpan>, count: Int, heap: UnsafeMutablePointer<MHeap>) {
        let loc = s.pointee.location.load(ordering: .sequentiallyConsistent)
        if loc == SpanLocation.full
            || (loc == SpanLocation.partial && (count >= s.pointee.allocCount || count <= 0)) {
            lock.lock()
            settleLocked(s, heap: heap)
        }
    }

    /// With `lock` held: move a full span that gained frees to partial, and give a span with
    /// no live objects back to the heap. Releases the lock.
    private mutating func settleLocked(_ s: UnsafeMutablePointer<MSpan>, heap: UnsafeMutablePointer<MHeap>) {
        let loc = s.pointee.location.load(ordering: .sequentiallyConsistent)
        // The span may have been cached or freed (and even reused) since the caller looked.
        guard s.pointee.spanClass == spanClass,
              loc == SpanLocation.partial || loc == SpanLocation.full else {
            lock.unlock()
            return
        }
        let pending = s.pointee.remoteFreeCount.load(ordering: .sequentiallyConsistent)
        if s.pointee.allocCount &- pending <= 0 {
            if loc == SpanLocation.full { full.remove(s) } else { partial.remove(s) }
            s.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
            lock.unlock()
            heap.pointee.freeSpan(s)
            return
        }
        if loc == SpanLocation.full && pending > 0 {
            full.remove(s)
            s.pointee.location.store(SpanLocation.partial, ordering: .sequentiallyConsistent)
            partial.pushBack(s)
        }
        lock.unlock()
    }

    /// Sweep every span on both lists and return the empty ones to the heap (malloc_trim and
    /// tests). Caller holds no lock.
    mutating func reclaimAll(heap: UnsafeMutablePointer<MHeap>) {
        lock.lock()
        var s = partial.first
        while let span = s {
            s = span.pointee.next
            _ = span.pointee.sweep()
            if span.pointee.allocCount == 0 && MCentral.noFreeInFlight(span) {
                partial.remove(span)
                span.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
                heap.pointee.freeSpan(span)
            }
        }
        s = full.first
        while let span = s {
            s = span.pointee.next
            if span.pointee.remoteFreeCount.load(ordering: .relaxed) == 0 { continue }
            _ = span.pointee.sweep()
            full.remove(span)
            if span.pointee.allocCount == 0 && MCentral.noFreeInFlight(span) {
                span.pointee.location.store(SpanLocation.none, ordering: .sequentiallyConsistent)
                heap.pointee.freeSpan(span)
            } else if span.pointee.allocCount < span.pointee.nelems {
                span.pointee.location.store(SpanLocation.partial, ordering: .sequentiallyConsistent)
                partial.pushBack(span)
            } else {
                full.pushBack(span)
            }
        }
        lock.unlock()
    }
}
