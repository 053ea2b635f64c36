// CABI.swift — the C allocation family with glibc 2.36's semantics, as gm_* entry points.
//
// Role: what the drop-in library exports. The C layer (Sources/GoMallocExports) defines
//   malloc, free, ... with default visibility and jumps here; this file owns the C rules:
//   errno, NULL and zero cases, overflow checks, alignment validation, and the alignment
//   promise (a block of more than 8 bytes is 16-byte aligned; 1-8 bytes get the largest
//   power of two not above their size, which the 8-byte class gives).
// Go counterpart: none (Go has no C allocator API).
// Invariants:
//   I1. Every failure returns NULL (or an error code) with errno as glibc sets it; nothing
//       traps on bad sizes or alignments.
//   I2. free / realloc of anything that is not a live block of ours aborts with one line.
// Concurrency: as Malloc.swift.
// Failure: ENOMEM for sizes the heap cannot hold or that overflow; EINVAL for bad alignments.
import CGoMallocSys
import Synchronization

private let ENOMEM: Int32 = 12
private let EINVAL: Int32 = 22
/// glibc refuses requests above PTRDIFF_MAX; we cannot map more than our address bits anyway.
private let maxRequest = 1 << heapAddrBits

@inline(__always)
private func failENOMEM() -> UnsafeMutableRawPointer? {
    gm_sys_set_errno(ENOMEM)
    return nil
}

// MARK: - Fast paths
//
// gm_malloc and gm_free are leaf functions: every case they do not finish themselves (no P
// preferred yet or it is busy, no mcache yet, an empty span, a large or remote or bad free)
// gives the P back and tail-calls the general path, which starts over. Keeping calls out of
// the fast path keeps it free of register spills.

@c(gm_malloc)
public func gmMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    // Unsigned: SIZE_MAX and friends arrive here as negative Ints.
    guard UInt(bitPattern: size) <= UInt(maxSmallSize), let h = theHeap(),
          let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p) else {
        return gmMallocSlow(size)
    }
    let c = Int(size <= smallSizeMax &- 8
        ? h.pointee.fastClassTable[(size &+ 7) &>> 3]
        : h.pointee.fastClassTable[sizeToClass8Count &+ ((size &- smallSizeMax &+ largeSizeDiv &- 1) &>> 7)])
    guard slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged else {
        return gmMallocSlow(size)
    }
    let cache = slot.pointee.mcache.unsafelyUnwrapped  // set before the slot reached the TLS
    let s = MCache.allocSlot(cache, SpanClass(sizeClass: c, noscan: false)).pointee
    let v = s.pointee.nextFreeFast()
    if v != 0 {
        MCache.countMalloc(cache, c)
        h.pointee.releaseP(slot)
        return UnsafeMutableRawPointer(bitPattern: v)
    }
    h.pointee.releaseP(slot)
    return gmMallocSlow(size)
}

@inline(never)
private func gmMallocSlow(_ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return failENOMEM() }
    return mallocgc(size, cABI: true, zero: false) ?? failENOMEM()
}

@c(gm_free)
public func gmFree(_ ptr: UnsafeMutableRawPointer?) {
    guard let ptr else { return }
    let addr = UInt(bitPattern: ptr)
    // The tombstone and the empty span have nelems 0 and fail the index check; large spans
    // pass it (index 0) and leave below, at the location test.
    guard let h = theHeap(), let s = h.pointee.spanOf(addr),
          let slot = UnsafeMutablePointer<PSlot>(bitPattern: gm_tls_preferred_p) else {
        return freeSlow(ptr)
    }
    let i = s.pointee.objIndex(addr)
    guard i < s.pointee.nelems, UInt(bitPattern: i &* s.pointee.elemSize) == addr &- s.pointee.startAddr,
          slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged else {
        return freeSlow(ptr)
    }
    let cache = slot.pointee.mcache.unsafelyUnwrapped  // set before the slot reached the TLS
    let w = i &>> 6
    let bit = UInt64(1) &<< UInt64(i & 63)
    if s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(slot) {
        // We hold the P whose mcache allocates from `s`: the span is ours (plain stores),
        // and its bitmaps are exact. The object must be allocated (below freeIndex or in
        // allocBits) and not freed here since the last sweep; anything else (a second free
        // after a sweep merged the first, a slot never handed out) goes to the slow path,
        // which reports it. Left to the sweep, such a slot would be handed out again first,
        // and the sweep would then free the new owner's object. An object already freed by
        // another P stays allocated until the sweep, which catches that double free.
        let f = s.pointee.freeBits[w]
        if f & bit == 0 && (i < s.pointee.freeIndex || s.pointee.allocBits[w] & bit != 0) {
            s.pointee.freeBits[w] = f | bit
            s.pointee.localFreeCount &+= 1
            MCache.countFree(cache, s.pointee.spanClass.sizeClass)
            h.pointee.releaseP(slot)
            return
        }
        h.pointee.releaseP(slot)
        return freeSlow(ptr)  // reports the double free
    }
    let c = s.pointee.spanClass.sizeClass
    if c == 0 {
        h.pointee.releaseP(slot)
        return freeSlow(ptr)
    }
    MCache.countFree(cache, c)
    return freeRemoteReleasingP(h, s, index: i, addr: addr, slot: slot, function: "free")
}

@inline(never)
private func freeSlow(_ ptr: UnsafeMutableRawPointer) {
    freeObject(ptr, function: "free")
}

@c(gm_calloc)
public func gmCalloc(_ n: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // size_t arithmetic, as in C: calloc(0, SIZE_MAX) asks for zero bytes.
    let (total, overflow) = UInt(bitPattern: n).multipliedReportingOverflow(by: UInt(bitPattern: size))
    if overflow || total > UInt(maxRequest) { return failENOMEM() }
    return mallocgc(Int(total), cABI: true, zero: true) ?? failENOMEM()
}

@c(gm_realloc)
public func gmRealloc(_ ptr: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let ptr else { return gmMalloc(size) }
    if size == 0 {
        // glibc: realloc(p, 0) frees p and returns NULL.
        freeObject(ptr, function: "realloc")
        return nil
    }
    if size < 0 || size > maxRequest { return failENOMEM() }
    return reallocObject(ptr, size: size, cABI: true) ?? failENOMEM()
}

@c(gm_reallocarray)
public func gmReallocarray(_ ptr: UnsafeMutableRawPointer?, _ n: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // size_t arithmetic: a zero product is realloc(p, 0) (glibc frees p) or malloc(0),
    // however big the other factor.
    let (total, overflow) = UInt(bitPattern: n).multipliedReportingOverflow(by: UInt(bitPattern: size))
    if overflow { return failENOMEM() }
    return gmRealloc(ptr, Int(bitPattern: total))
}

/// The aligned family's common core: `alignment` is a power of two.
private func alignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return nil }
    if alignment <= 16 {
        // Size classes give 16 bytes for anything over 8 bytes; 8 for the rest.
        return mallocgc(alignment > 8 ? Swift.max(size, 9) : size, cABI: true, zero: false)
    }
    return mallocAligned(size, alignment: alignment, zero: false)
}

/// Alignments are size_t: 2^63 is a valid one (that no allocator can honour), not a negative
/// Int. Above this (mallocAligned's limit) a valid alignment gets ENOMEM, as from glibc.
private let maxAlignment: UInt = 1 << 40

@inline(__always)
private func isPowerOfTwo(_ x: UInt) -> Bool { x != 0 && x & (x &- 1) == 0 }

@c(gm_posix_memalign)
public func gmPosixMemalign(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int) -> Int32 {
    let a = UInt(bitPattern: alignment)
    if !isPowerOfTwo(a) || a % UInt(MemoryLayout<UnsafeRawPointer>.size) != 0 { return EINVAL }
    if a > maxAlignment { return ENOMEM }
    guard let p = alignedAlloc(Int(a), size) else { return ENOMEM }
    out?.pointee = p
    return 0
}

@c(gm_aligned_alloc)
public func gmAlignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // glibc 2.36's aligned_alloc is memalign: an alignment that is not a power of two is
    // rounded up (2.38 started rejecting it with EINVAL).
    gmMemalign(alignment, size)
}

@c(gm_memalign)
public func gmMemalign(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // glibc: alignments above SIZE_MAX/2 + 1 are EINVAL; others round up to a power of two
    // (at most 2^63, which cannot be honoured: ENOMEM).
    let a0 = UInt(bitPattern: alignment)
    if a0 > UInt.max / 2 + 1 {
        gm_sys_set_errno(EINVAL)
        return nil
    }
    if a0 > maxAlignment { return failENOMEM() }
    var a = Swift.max(Int(a0), 1)
    if !isPowerOfTwo(UInt(a)) { a = 1 << (Int.bitWidth - (a - 1).leadingZeroBitCount) }
    return alignedAlloc(a, size) ?? failENOMEM()
}

/// The OS page size glibc uses for valloc/pvalloc on x86-64 and most AArch64 systems.
private let osPageSize = 4096

@c(gm_valloc)
public func gmValloc(_ size: Int) -> UnsafeMutableRawPointer? {
    alignedAlloc(osPageSize, size) ?? failENOMEM()
}

@c(gm_pvalloc)
public func gmPvalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return failENOMEM() }
    let rounded = Swift.max((size + osPageSize - 1) & ~(osPageSize - 1), osPageSize)
    return alignedAlloc(osPageSize, rounded) ?? failENOMEM()
}

@c(gm_malloc_usable_size)
public func gmMallocUsableSize(_ ptr: UnsafeMutableRawPointer?) -> Int {
    guard let ptr else { return 0 }
    return usableSize(ptr, function: "malloc_usable_size")
}

@c(gm_free_sized)
public func gmFreeSized(_ ptr: UnsafeMutableRawPointer?, _ size: Int) {
    gmFree(ptr)
}

@c(gm_free_aligned_sized)
public func gmFreeAlignedSized(_ ptr: UnsafeMutableRawPointer?, _ alignment: Int, _ size: Int) {
    gmFree(ptr)
}

@c(gm_malloc_trim)
public func gmMallocTrim(_ pad: Int) -> Int32 {
    trimHeap() > 0 ? 1 : 0
}

@c(gm_malloc_stats)
public func gmMallocStats() {
    printMemStats(fd: 2)
}

/// Called by the drop-in library's constructor: with GOMALLOC_STATS=1, arrange for the
/// summary at exit even if the program never allocates or closes stderr first.
@c(gm_library_load)
public func gmLibraryLoad() {
    registerStatsAtExit()
}

@c(gm_stats_print)
public func gmStatsPrint(_ fd: Int32) {
    printMemStats(fd: fd)
}

@c(gm_mallopt)
public func gmMallopt(_ param: Int32, _ value: Int32) -> Int32 {
    // None of glibc's parameters (M_MXFAST 1, M_TRIM_THRESHOLD -1 ... M_ARENA_MAX -8) has an
    // effect here: our heap has no arenas, top pad or mmap threshold to tune. glibc 2.36
    // answers 1 for every parameter, known or not, except M_MXFAST above its maximum of
    // 80 * sizeof(size_t) / 4 = 160 bytes.
    (param == 1 && value > 80 * Int32(MemoryLayout<Int>.size) / 4) ? 0 : 1
}

/// mallinfo2's fields in order: arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks,
/// uordblks, fordblks, keepcost.
@c(gm_mallinfo_fill)
public func gmMallinfoFill(_ out: UnsafeMutablePointer<Int>?) {
    guard let out else { return }
    let m = readMemStats()
    out[0] = Int(m.heapSys)                                   // arena: bytes from the OS
    out[1] = 0                                                // ordblks
    out[2] = 0                                                // smblks
    out[3] = Int(m.largeMallocs &- m.largeFrees)              // hblks: live large blocks
    out[4] = Int(m.largeAllocBytes)                           // hblkhd: their bytes
    out[5] = 0                                                // usmblks
    out[6] = 0                                                // fsmblks
    out[7] = Int(m.heapAlloc)                                 // uordblks: in use
    out[8] = Int(m.heapSys &- Swift.min(m.heapSys, m.heapAlloc)) // fordblks: free
    out[9] = Int(m.heapReleased)                              // keepcost: releasable
}
