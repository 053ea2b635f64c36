// Malloc.swift — the allocation path (Go's mallocgc), one for the C ABI and the Swift API.
//
// Role: malloc of n bytes:
//     0. 0-4 bytes, noscan (every C request; Swift's without pointers): packed by the tiny
//        allocator (Tiny.swift), through the slow path;
//     1. n <= 32 KiB: the size class (SizeClasses.swift: 8-byte steps to 1 KiB, then
//        128-byte steps, read from one flat table; the C rule keeps blocks over 8 bytes
//        16-byte aligned); take this CPU's P (rseq, no locked instruction) or the thread's
//        last one (one CAS); pop the object this P freed last in that class
//        (MCache's recent frees), else the next one of its mcache's span (nextFreeFast);
//     2. anything else — no heap yet, no preferred P or it is busy, an exhausted span, a
//        large or bad size — goes to one slow path, which starts over: on a miss,
//        mcache.nextFree scans the span's bitmap (nextFreeIndex), then refills (sweep the
//        exhausted span, or swap it for one from mcentral, which grows from mheap, which
//        grows from the OS);
//     3. n > 32 KiB: a large span of whole pages straight from mheap.
//   The fast path is inlined into each entry point (gm_malloc, gm_calloc, the Swift API)
//   and stays a leaf: every case it does not finish gives the P back and tail-calls the
//   slow path, so it needs no stack frame or register spills.
// Go counterpart: malloc.go (mallocgc, nextFreeFast, largeAlloc).
// Invariants:
//   I1. Every pointer returned is the start of a live object of ours, aligned as asked.
//   I2. A P is held only between taking it and giving it back inside one call.
//   I3. Nothing is returned while a deferred misuse report is pending (Report.swift I2).
// Concurrency: lock-free on the fast path (the rseq section or one CAS for the P); see Proc.swift.
// Failure: out of memory returns nil with errno = ENOMEM; nothing traps.
import CGoMallocSys
import Synchronization

let ENOMEM: Int32 = 12
let EINVAL: Int32 = 22
/// glibc refuses requests above PTRDIFF_MAX; we cannot map more than our address bits anyway.
let maxRequest = 1 << heapAddrBits
/// The largest alignment honoured (1 GiB); a valid alignment above it gets ENOMEM, as glibc
/// and jemalloc give once the over-allocation it needs cannot be mapped. (Honouring 1 TiB
/// would commit a terabyte of address space to the heap for one object.) Alignments are
/// size_t in C: 2^63 is a valid one, not a negative Int.
let maxAlignment = 1 << 30

/// Allocate `size` bytes of a size class (C alignment rules when `cABI`), zeroed if `zero`,
/// from the noscan span classes when `noscan` (which also lets 1...maxTinySize bytes be
/// packed by the tiny allocator, Tiny.swift). nil, with errno = ENOMEM, when out of memory.
@inline(__always)
func mallocgc(_ size: Int, cABI: Bool, zero: Bool, noscan: Bool) -> UnsafeMutableRawPointer? {
    // Unsigned: SIZE_MAX and friends arrive as negative Ints and take the slow path.
    if UInt(bitPattern: size) <= UInt(maxSmallSize), let h = theHeap() {
        // 0...maxTinySize bytes, packed (malloc(0) gets a 1-byte object) with GOMALLOC_TINY=1
        // (tinyLimit is 0 otherwise). The slow path takes them (a tail call keeps this path a leaf).
        if noscan && UInt(bitPattern: size) < h.tinyLimit { return mallocSlow(size, cABI: cABI, zero: zero, noscan: noscan) }
        // The table only this path reads: with heap profiling on, scan requests map to span
        // class 0 (never cached) and miss here, so that the slow path counts them; noscan
        // ones are served from windows the slow path cut to the next sample (Profile.swift).
        let spc = h.fastSpanClass(for: size, cABI: cABI, noscan: noscan)
        if let slot = h.tryAcquirePreferredP(needsMCache: true) {
            let (v, dirty) = takeCachedObject(slot.heldMCache, spc)
            if v != 0 {
                slot.countMalloc(spc.index)
                h.releaseP(slot)
                let p = UnsafeMutableRawPointer(bitPattern: v).unsafelyUnwrapped
                if zero && dirty { gm_sys_memset(p, 0, size) }
                return p
            }
            h.releaseP(slot)
        }
    }
    return mallocSlow(size, cABI: cABI, zero: zero, noscan: noscan)
}

// MARK: - Slow path (partner of mallocgc)

@inline(never)
func mallocSlow(_ size: Int, cABI: Bool, zero: Bool, noscan: Bool) -> UnsafeMutableRawPointer? {
    // Heap profiling on (Profile.swift): the fast path sent every small scan request here;
    // serve it as the fast path would, with the countdown, before starting over. (A noscan
    // request here found its window empty — a word boundary, or the sampling budget — so
    // the copy would miss too: mallocSmall takes it.)
    let rate = profileRate()
    if rate != 0 && !noscan && UInt(bitPattern: size) <= UInt(maxSmallSize), let h = theHeap(),
       let p = mallocSmallProfiled(h, h.spanClass(for: size, cABI: cABI, noscan: noscan), size: size, zero: zero, rate: rate) {
        return p
    }
    var p: UnsafeMutableRawPointer? = nil
    if size >= 0 && size <= maxRequest, let h = heap() {
        // The bound the fast path sent them here by; with GOMALLOC_DEBUG=1 every noscan
        // request is below it.
        if noscan && UInt(bitPattern: size) < h.tinyLimit {
            return h.pointee.debugMode ? mallocDebug(h, size: size, cABI: cABI, zero: zero) : mallocTiny(h, size: size, zero: zero)
        }
        p = size > maxSmallSize
            ? mallocLarge(h, size: size, alignPages: 1, zero: zero, noscan: noscan)
            : mallocSmall(h, h.spanClass(for: size, cABI: cABI, noscan: noscan), size: size, zero: zero)
    }
    if p == nil { gm_sys_set_errno(ENOMEM) }
    // The heap may have grown past the background scavenger's threshold (no P held here).
    startScavengerIfWanted()
    return p
}

/// mallocgc's fast path with heap profiling's countdown (Profile.swift), for mallocSlow while
/// sampling is on: this thread's P without waiting, a recent free or the span's next free
/// object; nil (nothing counted) on any miss, for the general path.
@inline(__always)
private func mallocSmallProfiled(_ h: UnsafeMutablePointer<MHeap>, _ spc: SpanClass, size: Int, zero: Bool,
                                 rate: Int) -> UnsafeMutableRawPointer? {
    guard let slot = h.tryAcquirePreferredP(needsMCache: true) else { return nil }
    let cache = slot.heldMCache
    let (v, dirty) = takeCachedObject(cache, spc)
    if v == 0 {
        h.releaseP(slot)
        return nil
    }
    slot.countMalloc(spc.index)
    profileCount(h, slot, cache, spc, addr: v, rate: rate)
    h.releaseP(slot)
    let p = UnsafeMutableRawPointer(bitPattern: v).unsafelyUnwrapped
    if zero && dirty { gm_sys_memset(p, 0, size) }
    return p
}

/// The object P's mcache `cache` freed last in class `spc`, else the next free one of its
/// span (0: neither, without a refill), and whether it may hold old data (a recent free
/// always may; a span's object when the span says so). Caller holds the P. Inlined into
/// the fast path.
@inline(__always)
private func takeCachedObject(_ cache: UnsafeMutablePointer<MCache>, _ spc: SpanClass) -> (addr: UInt, dirty: Bool) {
    let v = cache.popRecent(spc.index)
    if v != 0 { return (v, true) }
    let s = MCache.allocSlot(cache, spc).pointee
    return (s.nextFreeFast(), s.pointee.needzero)
}

/// Heap profiling's countdown for an object of class `spc` just taken and counted on P
/// `slot` (Profile.swift, MCache.profileCountClass): the sample, when it is due, recorded
/// holding the P.
@inline(__always)
private func profileCount(_ h: UnsafeMutablePointer<MHeap>, _ slot: UnsafeMutablePointer<PSlot>,
                          _ cache: UnsafeMutablePointer<MCache>, _ spc: SpanClass, addr v: UInt, rate: Int) {
    let bytes = Int(h.pointee.sizeClasses.classToSize[spc.sizeClass])
    if cache.profileCountClass(spc, slot: slot, bytes: bytes, rate: rate), let s = h.spanOf(v) {
        profileRecord(addr: v, size: bytes, span: s)
    }
}

/// An object of span class `spc`, through any P, refilling as needed.
func mallocSmall(_ h: UnsafeMutablePointer<MHeap>, _ spc: SpanClass, size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    let slot = h.acquireP()
    guard let cache = mcacheOf(h, slot) else {
        h.releaseP(slot)
        return nil
    }
    // Recent frees first (MCache I3: refill below is reached only with the stack empty).
    var (v, needzero) = takeCachedObject(cache, spc)
    if v == 0 {
        v = cache.nextFree(spc, heap: h)
        needzero = MCache.allocSlot(cache, spc).pointee.pointee.needzero
    }
    if v != 0 {
        slot.countMalloc(spc.index)
        let rate = profileRate()
        if rate != 0 { profileCount(h, slot, cache, spc, addr: v, rate: rate) }
    }
    h.releaseP(slot)
    // A refill may have swept a span and found a bad free: report it before handing out.
    reportDeferred()
    guard let ptr = UnsafeMutableRawPointer(bitPattern: v) else { return nil }
    if zero && needzero { gm_sys_memset(ptr, 0, size) }
    return ptr
}

/// Go's largeAlloc: whole pages, aligned to `alignPages` pages.
@inline(never)
func mallocLarge(_ h: UnsafeMutablePointer<MHeap>, size: Int, alignPages: Int, zero: Bool, noscan: Bool) -> UnsafeMutableRawPointer? {
    // Overflow-safe page count.
    if size > maxRequest { return nil }
    let npages = (size &+ pageMask) >> pageShift
    guard let s = h.pointee.debugMode
        ? mallocLargeGuarded(h, npages: npages, alignPages: alignPages, noscan: noscan)
        : h.allocSpan(npages: npages, spanClass: SpanClass(sizeClass: 0, noscan: noscan), alignPages: alignPages)
    else { return nil }
    let ptr = UnsafeMutableRawPointer(bitPattern: s.pointee.startAddr).unsafelyUnwrapped
    if zero && s.pointee.needzero { gm_sys_memset(ptr, 0, size) }
    let rate = profileRate()
    if rate != 0 { profileLarge(h, s, rate: rate) }
    return ptr
}

/// Allocation with an explicit alignment (a power of two). C's aligned family and the
/// Swift API go through here when the alignment exceeds what size classes give anyway.
/// nil with errno = ENOMEM when it cannot be honoured.
func mallocAligned(_ size: Int, alignment: Int, zero: Bool, noscan: Bool) -> UnsafeMutableRawPointer? {
    var p: UnsafeMutableRawPointer? = nil
    if size >= 0 && size <= maxRequest, let h = heap() {
        if alignment <= pageSize {
            let c = size <= maxSmallSize ? h.alignedSizeClass(for: size, align: alignment) : 0
            p = c != 0
                ? mallocSmall(h, SpanClass(sizeClass: c, noscan: noscan), size: size, zero: zero)
                : mallocLarge(h, size: Swift.max(size, maxSmallSize &+ 1), alignPages: 1, zero: zero, noscan: noscan)
        } else if alignment <= maxAlignment {
            p = mallocLarge(h, size: Swift.max(size, maxSmallSize &+ 1), alignPages: alignment >> pageShift, zero: zero, noscan: noscan)
        }
    }
    if p == nil { gm_sys_set_errno(ENOMEM) }
    startScavengerIfWanted()
    return p
}
