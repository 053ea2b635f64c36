// Free.swift — the free path (explicit free in Go's spirit), one for the C ABI and the Swift API.
//
// Role: free(p): find p's span through the page map; check that p is the start of a live
//   object; record the free in the span's freeBits (plain stores, relaxed atomics: the span is
//   cached by the P we hold, which also pushes it on its mcache's recent frees for reuse
//   first) or remoteBits (an atomic fetch-or: anyone else's span), which a
//   sweep merges into allocBits later; large spans go back to mheap at once. Also the object
//   lookup that malloc_usable_size and realloc share with free.
//   The fast path (the span is cached by this thread's preferred P) is inlined into the
//   entry points and stays a leaf; a remote free keeps the P it took and moves on to
//   freeRemoteHoldingP; everything else starts over on the slow path, which reports misuse.
// Go counterpart: mgcsweep.go (the free side of the bitmaps), malloc.go (findObject in
//   mbitmap.go), mheap.go (freeSpan for large objects).
// Invariants:
//   I1. Nothing is freed that is not the start of a live object: anything else is reported
//       ("free(): invalid pointer 0x..." / "double free 0x...") and the process aborts.
//   I2. A free is counted in its P's frees exactly when it is recorded in a span; the P is
//       held until then, so a stopped world never sees a free half done.
//   I3. Reports are made holding no P and no lock (Report.swift I2).
// Concurrency: see MSpan (bitmaps) and MCentral (the remote-free handshake). A free never
//   needs an mcache (the counters are the P's), so it cannot fail for want of metadata.
// Failure: none: a valid free always succeeds; an invalid one aborts with one line.
import CGoMallocSys
import Synchronization

/// free(). `function` names the caller in reports ("free", "realloc").
@inline(__always)
func freeObject(_ ptr: UnsafeMutableRawPointer, function: StaticString) {
    freeAddress(UInt(bitPattern: ptr), function: function)
}

/// free() of an address, 0 included (C's free(NULL), a no-op): no arena is ever registered
/// at address 0 (mmap never maps page 0), so the lookup itself sends it to the slow path and
/// the fast path spends no test on it.
@inline(__always)
func freeAddress(_ addr: UInt, function: StaticString) {
    // The tombstone and the empty span have nelems 0 and fail the index check; large spans
    // pass it (index 0) and leave below, at the size-class test.
    if let h = theHeap(), let s = h.spanOf(addr) {
        let i = s.objIndex(addr)
        // fastFreeLimit is 0 for a tiny span, whose blocks hold sub-objects (Tiny.swift).
        if UInt32(truncatingIfNeeded: i) < UInt32(s.fastFreeLimit), UInt(bitPattern: i &* Int(s.pointee.elemSizeWord)) == addr &- s.pointee.startAddr,
           let slot = h.tryAcquirePreferredP(needsMCache: false) {
            if s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(slot) {
                // We hold the P whose mcache allocates from `s`: the span is ours and its
                // bitmaps are exact. The object must be allocated (below freeIndex or in
                // allocBits) and not freed here since the last sweep; anything else (a second
                // free after a sweep merged the first, a slot never handed out) goes to the
                // slow path, which reports it. Left to the sweep, such a slot would be handed
                // out again first, and the sweep would then free the new owner's object. An
                // object already freed by another P stays allocated until the sweep, which
                // catches that double free.
                let w = i &>> 6
                let bit = UInt64(1) &<< UInt64(i & 63)
                let f = s.freeBits[w]
                if f & bit == 0 && (i < s.freeIndex || s.allocBits[w] & bit != 0) {
                    s.freeBits[w] = f | bit
                    let c = s.ownedSpanClassIndex
                    slot.heldMCache.pushRecent(c, addr: addr, span: s, index: i)
                    slot.countFree(c)
                    h.releaseP(slot)
                    return
                }
            } else if s.spanClass.sizeClass != 0 {
                return freeRemoteHoldingP(h, s, index: i, addr: addr, slot: slot, function: function)
            }
            h.releaseP(slot)
        }
    }
    freeSlow(addr, function: function)
}

// MARK: - Slow path (partner of freeObject)

/// The span and object index of a pointer that must be the start of a live object;
/// anything else is reported under `function`'s name and aborts. Holds nothing. For a tiny
/// span the index is the block's and the address may be anywhere in it: the caller checks
/// the block's record (Tiny.swift).
func findObject(_ addr: UInt, function: StaticString)
    -> (heap: UnsafeMutablePointer<MHeap>, span: UnsafeMutablePointer<MSpan>, index: Int)
{
    guard let h = theHeap(), let s = h.spanOf(addr) else {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    if s == h.pointee.tombstone {
        // A large block started on this page and was freed. Large spans map only their first
        // page, so the tombstone may now sit on an inner page of a newer large block: then
        // the address is an interior pointer. Only the start of a block freed for good is a
        // double free. (The page allocator is read under the heap lock; we hold nothing.)
        h.pointee.lock.lock()
        // A page held by a page cache counts as allocated there but is free (PageCache.I1).
        let inUse = h.locked.pointee.pages.isAllocated(addr) && !h.pageCachesHold(addr)
        h.pointee.lock.unlock()
        let doubleFree = !inUse && addr & UInt(pageMask) == 0
        reportBadPointer(function: function, problem: doubleFree ? "double free" : "invalid pointer", address: addr)
    }
    let off = addr &- s.pointee.startAddr
    if s.spanClass.sizeClass == 0 {
        let state = s.pointee.state.load(ordering: .acquiring)
        if off == 0 && state == SpanState.free.rawValue {
            reportBadPointer(function: function, problem: "double free", address: addr)
        }
        if off != 0 || state != SpanState.inUse.rawValue {
            reportBadPointer(function: function, problem: "invalid pointer", address: addr)
        }
        return (h, s, 0)
    }
    // i * elemSize == off with i < nelems also proves off lies inside the span.
    let i = s.objIndex(addr)
    if i >= s.nelems || (UInt(bitPattern: i &* s.elemSize) != off && !s.isTiny)
        || s.pointee.state.load(ordering: .acquiring) != SpanState.inUse.rawValue {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    return (h, s, i)
}

@inline(never)
func freeSlow(_ addr: UInt, function: StaticString) {
    if addr == 0 { return }
    let (h, s, i) = findObject(addr, function: function)
    // A span holding sampled objects sends every free here (Profile.swift I2).
    if s.profiledObjects != 0 { profileFree(h, s, addr: addr) }
    if s.spanClass.sizeClass == 0 {
        freeLarge(h, s, addr: addr, function: function)
        return
    }
    if s.isTiny {
        freeTiny(h, s, index: i, addr: addr, function: function)
        return
    }
    let slot = h.acquireP()
    if s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(slot) {
        // Our own span: plain stores.
        let w = i >> 6
        let bit = UInt64(1) << UInt64(i & 63)
        if !s.isLive(i) {
            h.releaseP(slot)
            reportBadPointer(function: function, problem: "double free", address: addr)
        }
        if h.pointee.debugMode { poisonFreed(addr, size: s.elemSize) }
        s.freeBits[w] = s.freeBits[w] | bit
        // The fast path's ring and counter (heap profiling's while it is on: MSpan.ownedSpanClassByte).
        let c = s.ownedSpanClassIndex
        // The span is cached by this P, which therefore has an mcache.
        slot.heldMCache.pushRecent(c, addr: addr, span: s, index: i)
        slot.countFree(c)
        h.releaseP(slot)
        return
    }
    freeRemoteHoldingP(h, s, index: i, addr: addr, slot: slot, function: function)
}

/// A remote free by a thread holding P `slot`. The P is kept until the free is recorded (bit
/// set, counted in the P's frees, mcentral notified), then given back: a stopped world (every
/// P taken) thus never sees a free recorded in the span and not counted. Lock order:
/// P < mcentral < mheap, as noteRemoteFree needs.
@inline(never)
func freeRemoteHoldingP(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, index i: Int,
                        addr: UInt, slot: UnsafeMutablePointer<PSlot>, function: StaticString) {
    // The class first: once the free is recorded the span may go back to the heap and be
    // reused for another class.
    let spc = s.spanClass
    let problem = freeRemote(h, s, spanClass: spc, index: i)
    if problem == nil { slot.countFree(spc.index) }
    h.releaseP(slot)
    if let problem { reportBadPointer(function: function, problem: problem.text, address: addr) }
}

/// A free into a span some other P caches, or one sitting in mcentral: one atomic
/// read-modify-write, the fetch-or of the object's remoteBits bit, is the whole record; then
/// a load of the span's location, and only for a span on a central list (not cached by any
/// P) the mcentral's attention (MCentral, the remote-free handshake). Returns the misuse
/// found (nothing recorded then) for the caller to report once it lets go of its P. Also
/// the remote free of a tiny block (Tiny.swift), whose mcentral is the tiny one.
func freeRemote(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>,
                        spanClass: SpanClass, index i: Int) -> BadPointerProblem? {
    let w = i >> 6
    let bit = UInt64(1) << UInt64(i & 63)
    if s.pointee.state.load(ordering: .acquiring) != SpanState.inUse.rawValue { return .invalidPointer }
    // The owner's index (acquire), then its words (see MSpan.isLive): a correct free always
    // sees the object allocated.
    let allocated = i < s.publishedFreeIndex || s.allocBits[w] & bit != 0
    if !allocated || s.freeBits[w] & bit != 0 { return .doubleFree }
    if h.pointee.debugMode && !s.isTiny { poisonFreed(s.pointee.startAddr &+ UInt(i &* s.elemSize), size: s.elemSize) }
    // Sequentially consistent: the freer's half of the handshake (its location load follows).
    let old = s.remoteWord(w).pointee.bitwiseOr(bit, ordering: .sequentiallyConsistent).oldValue
    if old & bit != 0 { return .doubleFree }
    h.central(of: s, spanClass).noteRemoteFree(s, heap: h)
    return nil
}

@inline(never)
func freeLarge(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, addr: UInt, function: StaticString) {
    // Held from the state change until the pages are back, so that a stopped world never
    // sees a span marked free that still owns its pages (as freeRemoteHoldingP).
    let slot = h.acquireP()
    // The state CAS makes a racing second free of the same block lose cleanly.
    if !s.pointee.state.compareExchange(expected: SpanState.inUse.rawValue, desired: SpanState.free.rawValue,
                                        ordering: .acquiringAndReleasing).exchanged {
        h.releaseP(slot)
        reportBadPointer(function: function, problem: "double free", address: addr)
    }
    if h.pointee.debugMode { unguardLarge(s) }
    h.freeSpan(s)
    h.releaseP(slot)
}

// MARK: - Usable size

/// Bytes that belong to the block at `ptr` (its class size, or its pages). The pointer must
/// be the start of an object of an in-use span (anything else is reported); whether that
/// object is live is not checked — glibc leaves malloc_usable_size of a freed block
/// undefined, and checking costs a cold bitmap line on every call of programs that ask
/// before each free (Redis): the free that follows checks it.
func usableSize(_ ptr: UnsafeMutableRawPointer, function: StaticString) -> Int {
    let (_, s, i) = findObject(UInt(bitPattern: ptr), function: function)
    if s.isTiny { return tinyUsableSize(s, index: i, addr: UInt(bitPattern: ptr), requireLive: false, function: function) }
    return s.elemSize
}

/// The usable size of a live block, for callers about to reuse it (realloc): a freed block is
/// reported as an invalid pointer too.
func liveBlockSize(_ ptr: UnsafeMutableRawPointer, function: StaticString) -> Int {
    let (_, s, i) = findObject(UInt(bitPattern: ptr), function: function)
    if s.isTiny { return tinyUsableSize(s, index: i, addr: UInt(bitPattern: ptr), requireLive: true, function: function) }
    if s.spanClass.sizeClass != 0 && !s.isLive(i) {
        reportBadPointer(function: function, problem: "invalid pointer", address: UInt(bitPattern: ptr))
    }
    return s.elemSize
}

/// Whether the block at `ptr` came from a noscan span class, so that a block moved by
/// realloc keeps its kind.
func blockIsNoscan(_ ptr: UnsafeMutableRawPointer) -> Bool {
    findObject(UInt(bitPattern: ptr), function: "realloc").span.spanClass.noscan
}
