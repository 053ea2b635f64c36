// CABI.swift — the C allocation family with glibc 2.36's semantics, as gm_* entry points.
//
// Role: what the drop-in library exports. The C layer (Sources/GoMallocExports) defines
//   malloc, free, ... with default visibility and jumps here; this file owns the C rules:
//   errno, NULL and zero cases, overflow checks, alignment validation, and the alignment
//   promise (a block of more than 8 bytes is 16-byte aligned; 1-8 bytes get the largest
//   power of two not above their size, which the 8-byte class and the tiny allocator give).
//   C has no types: every C allocation is noscan, as Go's mallocgc treats untyped memory.
// Go counterpart: none (Go has no C allocator API).
// Invariants:
//   I1. Every failure returns NULL (or an error code) with errno as glibc sets it; nothing
//       traps on bad sizes or alignments.
//   I2. free / realloc of anything that is not a live block of ours aborts with one line.
// Concurrency: as Malloc.swift.
// Failure: ENOMEM for sizes the heap cannot hold or that overflow; EINVAL for bad alignments.
import CGoMallocSys
import Synchronization

@inline(__always)
private func failENOMEM() -> UnsafeMutableRawPointer? {
    gm_sys_set_errno(ENOMEM)
    return nil
}

// MARK: - malloc and free (the paths themselves are Malloc.swift's and Free.swift's)

@c(gm_malloc)
public func gmMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    mallocgc(size, cABI: true, zero: false, noscan: true)
}

@c(gm_free)
public func gmFree(_ ptr: UnsafeMutableRawPointer?) {
    freeAddress(UInt(bitPattern: ptr), function: "free")
}

@c(gm_calloc)
public func gmCalloc(_ n: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // size_t arithmetic, as in C: calloc(0, SIZE_MAX) asks for zero bytes.
    let (total, overflow) = UInt(bitPattern: n).multipliedReportingOverflow(by: UInt(bitPattern: size))
    if overflow { return failENOMEM() }
    return mallocgc(Int(bitPattern: total), cABI: true, zero: true, noscan: true)
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
    return reallocObject(ptr, size: size, cABI: true)
}

@c(gm_reallocarray)
public func gmReallocarray(_ ptr: UnsafeMutableRawPointer?, _ n: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    // size_t arithmetic: a zero product is realloc(p, 0) (glibc frees p) or malloc(0),
    // however big the other factor.
    let (total, overflow) = UInt(bitPattern: n).multipliedReportingOverflow(by: UInt(bitPattern: size))
    if overflow { return failENOMEM() }
    return gmRealloc(ptr, Int(bitPattern: total))
}

/// The aligned family's common core: `alignment` is a power of two. nil with errno = ENOMEM
/// when out of memory.
private func alignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return failENOMEM() }
    if alignment <= 16 {
        // Size classes give 16 bytes for anything over 8 bytes; 8 for the rest (and a
        // packed object of n bytes is aligned to its rounded size, at least n).
        return mallocgc(alignment > 8 ? Swift.max(size, 9) : Swift.max(size, alignment), cABI: true, zero: false, noscan: true)
    }
    return mallocAligned(size, alignment: alignment, zero: false, noscan: true)
}

@inline(__always)
private func isPowerOfTwo(_ x: UInt) -> Bool { x != 0 && x & (x &- 1) == 0 }

@c(gm_posix_memalign)
public func gmPosixMemalign(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int) -> Int32 {
    let a = UInt(bitPattern: alignment)
    if !isPowerOfTwo(a) || a % UInt(MemoryLayout<UnsafeRawPointer>.size) != 0 { return EINVAL }
    if a > UInt(maxAlignment) { return ENOMEM }
    // POSIX: the error is the return value; errno is left alone.
    let saved = gm_sys_errno()
    guard let p = alignedAlloc(Int(a), size) else {
        gm_sys_set_errno(saved)
        return ENOMEM
    }
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
    if a0 > UInt(maxAlignment) { return failENOMEM() }
    var a = Swift.max(Int(a0), 1)
    if !isPowerOfTwo(UInt(a)) { a = 1 << (Int.bitWidth - (a - 1).leadingZeroBitCount) }
    return alignedAlloc(a, size) ?? failENOMEM()
}

@c(gm_valloc)
public func gmValloc(_ size: Int) -> UnsafeMutableRawPointer? {
    alignedAlloc(physPageSize, size) ?? failENOMEM()
}

@c(gm_pvalloc)
public func gmPvalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > maxRequest { return failENOMEM() }
    let rounded = Swift.max((size + physPageSize - 1) & ~(physPageSize - 1), physPageSize)
    return alignedAlloc(physPageSize, rounded) ?? failENOMEM()
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
/// summary at exit even if the program never allocates or closes stderr first; with
/// GOMALLOC_HEAPMAP, the heap dump at exit (HeapMap.swift).
@c(gm_library_load)
public func gmLibraryLoad() {
    installForkHandlers()
    registerStatsAtExit()
    registerHeapMapAtExit()
    registerProfileAtExit()
}

@c(gm_stats_print)
public func gmStatsPrint(_ fd: Int32) {
    printMemStats(fd: fd)
}

/// gomalloc_stats_json: the statistics as JSON into `buffer`, snprintf-style (returns the
/// length needed, NUL excluded; writes at most len - 1 bytes and a NUL when len > 0).
@c(gm_stats_json)
public func gmStatsJSON(_ buffer: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int {
    formatMemStatsJSON(readMemStats(), into: UnsafeMutableRawPointer(buffer)?.assumingMemoryBound(to: UInt8.self),
                       capacity: len)
}

/// malloc_info's document into `buffer` (snprintf-style, as gm_stats_json); the C side
/// (exports.c) writes it to the FILE with no lock held. options != 0: -1 with errno EINVAL
/// (glibc 2.36 reserves them).
@c(gm_malloc_info_format)
public func gmMallocInfoFormat(_ options: Int32, _ buffer: UnsafeMutablePointer<CChar>?, _ len: Int) -> Int {
    if options != 0 {
        gm_sys_set_errno(EINVAL)
        return -1
    }
    return formatMallocInfo(readMemStats(), into: UnsafeMutableRawPointer(buffer)?.assumingMemoryBound(to: UInt8.self),
                            capacity: len)
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
    out[0] = Int(m.heapSys &+ m.stackInuse)                   // arena: bytes from the OS (stacks too)
    out[1] = 0                                                // ordblks
    out[2] = 0                                                // smblks
    out[3] = Int(m.largeMallocs &- m.largeFrees)              // hblks: live large blocks
    out[4] = Int(m.largeAllocBytes)                           // hblkhd: their bytes
    out[5] = 0                                                // usmblks
    out[6] = 0                                                // fsmblks
    out[7] = Int(m.heapAlloc &+ m.stackInuse)                 // uordblks: in use (stack spans too)
    out[8] = Int(m.heapSys &- Swift.min(m.heapSys, m.heapAlloc)) // fordblks: free
    out[9] = Int(m.heapReleased)                              // keepcost: releasable
}

// MARK: - Stacks (Stack.swift; declared in gomalloc.h)

@c(gm_stack_alloc)
public func gmStackAlloc(_ size: Int) -> UnsafeMutableRawPointer? {
    if size == 0 {
        gm_sys_set_errno(EINVAL)
        return nil
    }
    // Negative: a size_t past Int.max, more than any stack.
    let n = stackRoundedSize(size)
    guard n != 0, let h = heap(), let p = stackAlloc(h, size: n) else { return failENOMEM() }
    return p
}

@c(gm_stack_free)
public func gmStackFree(_ lo: UnsafeMutableRawPointer?, _ size: Int) {
    // stack_free(NULL, n) does nothing, as free(NULL) does.
    guard let lo else { return }
    stackFree(UInt(bitPattern: lo), size: size)
}

@c(gm_stack_grow)
public func gmStackGrow(_ lo: UnsafeMutableRawPointer?, _ size: Int, _ used: Int) -> UnsafeMutableRawPointer? {
    stackGrow(UInt(bitPattern: lo), size: size, used: used)
}

@c(gm_stack_guard_size)
public func gmStackGuardSize(_ size: Int) -> Int {
    let n = stackRoundedSize(size)
    guard n != 0, let h = heap() else { return 0 }
    return stackGuardBytes(h, size: n)
}
