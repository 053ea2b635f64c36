// Malloc.swift — the allocation and free paths (Go's mallocgc, with an explicit free).
//
// Role: the entry into the allocator for both the C ABI and the Swift API. See DESIGN.md for
//   the whole picture; in short, malloc of n bytes:
//     1. n <= 32 KiB: look up the size class (8-byte steps to 1 KiB, then 128-byte steps);
//        take a P (one CAS); pop an object from its mcache's span with nextFreeFast;
//     2. on a miss, mcache.nextFree scans the span's bitmap (nextFreeIndex), then refills:
//        sweep the exhausted span, or swap it for a span from mcentral, which grows from
//        mheap, which grows from the OS;
//     3. n > 32 KiB: a large span of whole pages straight from mheap.
//   free(p): find p's span through the page map; check p is the start of a live object;
//   record the free in the span's freeBits (plain stores: the span is cached by the P we
//   hold) or remoteBits (atomic: anyone else's span); large spans go back to mheap at once.
// Go counterpart: malloc.go (mallocgc, largeAlloc), mgcsweep.go (the free side), mfinal.go.
// Invariants:
//   I1. Every pointer returned is the start of a live object of ours, aligned as asked.
//   I2. Nothing is freed that is not the start of a live object: anything else is reported
//       ("free(): invalid pointer 0x..." / "double free 0x...") and the process aborts.
//   I3. A P is held only between acquireP and releaseP inside one call.
// Concurrency: lock-free on the fast paths (one CAS for the P); see Proc.swift.
// Failure: out of memory returns nil (the C ABI sets ENOMEM); nothing traps.
import CGoMallocSys
import Synchronization

// MARK: - The heap root

/// The heap, published once (release) after initialisation. Atomic: acquire loads.
let heapRootWord = Atomic<UInt>(0)
/// Serialises initialisation: 0 idle, 1 initialising.
let heapInitLock = Atomic<UInt32>(0)

@inline(__always)
func theHeap() -> UnsafeMutablePointer<MHeap>? {
    UnsafeMutablePointer(bitPattern: heapRootWord.load(ordering: .acquiring))
}

@inline(__always)
func heap() -> UnsafeMutablePointer<MHeap>? {
    if let h = theHeap() { return h }
    return heapInitSlow()
}

/// Go's mallocinit. Runs on the first allocation; nil if the OS refuses memory.
@inline(never)
func heapInitSlow() -> UnsafeMutablePointer<MHeap>? {
    // Setting up probes the system (options, the cgroup CPU quota: files that may not
    // exist) and may set errno on the way; a successful malloc leaves it as it was.
    let savedErrno = gm_sys_errno()
    defer { gm_sys_set_errno(savedErrno) }
    while !heapInitLock.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
        if let h = theHeap() { return h }
        gm_sys_yield()
    }
    if let h = theHeap() {
        heapInitLock.store(0, ordering: .releasing)
        return h
    }
    let bytes = (MemoryLayout<MHeap>.stride + pageSize - 1) & ~(pageSize - 1)
    guard let raw = sysAlloc(size: bytes) else {
        heapInitLock.store(0, ordering: .releasing)
        return nil
    }
    let h = raw.bindMemory(to: MHeap.self, capacity: 1)
    h.initialize(to: MHeap(releasesMemory: true))
    var procs = Option.maxProcs.read()
    if procs == 0 { procs = Int(gm_sys_ncpu()) }
    procs = Swift.min(Swift.max(procs, 1), maxProcs)
    guard h.pointee.initialize(nprocs: procs, retainPercent: Option.retainPercent.read()) else {
        heapInitLock.store(0, ordering: .releasing)
        return nil
    }
    heapRootWord.store(UInt(bitPattern: h), ordering: .releasing)
    heapInitLock.store(0, ordering: .releasing)
    // After publication: these may call malloc themselves (glibc's handler lists).
    _ = gm_sys_atfork(forkPrepare, forkParent, forkChild)
    registerStatsAtExit()
    return h
}

// MARK: - fork

/// Take every P, then every mcentral, then the heap (the lock order), so the child starts
/// with consistent metadata and no lock held by a thread that does not exist there.
private func forkPrepare() {
    guard let h = theHeap() else { return }
    h.pointee.acquireAllPs()
    for i in 0..<numSpanClasses { h.pointee.central(SpanClass(raw: UInt8(i))).pointee.lock.lock() }
    h.pointee.lock.lock()
}

private func forkRelease() {
    guard let h = theHeap() else { return }
    h.pointee.lock.unlock()
    for i in 0..<numSpanClasses { h.pointee.central(SpanClass(raw: UInt8(i))).pointee.lock.unlock() }
    h.pointee.releaseAllPs()
}

private func forkParent() { forkRelease() }
private func forkChild() { forkRelease() }

// MARK: - GOMALLOC_STATS

private let statsRegistered = Atomic<Bool>(false)
/// A private copy of stderr taken at registration: programs (coreutils) close fd 2 in their
/// own exit handlers, which run before ours.
private let statsFD = Atomic<Int32>(2)
/// With GOMALLOC_STATS=<pid>, the one process that reports (forked children inherit the
/// exit handler and must stay quiet); 0: every process.
private let statsPID = Atomic<Int>(0)

/// With GOMALLOC_STATS=1, print the statistics at exit (once per process).
func registerStatsAtExit() {
    let which = Option.stats.read()
    if which == 0 || (which > 1 && which != Int(gm_sys_getpid())) { return }
    statsPID.store(which > 1 ? which : 0, ordering: .relaxed)
    if statsRegistered.exchange(true, ordering: .acquiringAndReleasing) { return }
    let fd = gm_sys_dup_private(2)
    if fd >= 0 { statsFD.store(fd, ordering: .relaxed) }
    _ = gm_sys_atexit(printStatsAtExit)
}

private func printStatsAtExit() {
    let pid = statsPID.load(ordering: .relaxed)
    if pid != 0 && pid != Int(gm_sys_getpid()) { return }
    printMemStats(fd: statsFD.load(ordering: .relaxed))
}

// MARK: - Size classes

extension MHeap {
    /// Size class for a small request; `cABI` keeps blocks > 8 bytes 16-byte aligned.
    @inline(__always)
    func sizeClass(for size: Int, cABI: Bool) -> Int {
        if size <= smallSizeMax &- 8 {
            let i = (size &+ 7) >> 3
            return Int(cABI ? sizeClasses.cSizeToClass8[i] : sizeClasses.sizeToClass8[i])
        }
        return Int(sizeClasses.sizeToClass128[(size &- smallSizeMax &+ largeSizeDiv &- 1) >> 7])
    }

    /// Smallest class >= the class of `size` whose objects are all `align`-aligned
    /// (align <= pageSize), or 0 if none.
    func alignedSizeClass(for size: Int, align: Int) -> Int {
        var c = sizeClass(for: Swift.max(size, 1), cABI: false)
        while c < numSizeClasses {
            if Int(sizeClasses.classToSize[c]) % align == 0 { return c }
            c &+= 1
        }
        return 0
    }

}

/// The mcache of P `slot`, created the first time the P is used. Caller holds the P.
@inline(__always)
func mcacheOf(_ h: UnsafeMutablePointer<MHeap>, _ slot: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MCache>? {
    if let c = slot.pointee.mcache { return c }
    return createMCache(h, slot)
}

@inline(never)
func createMCache(_ h: UnsafeMutablePointer<MHeap>, _ slot: UnsafeMutablePointer<PSlot>) -> UnsafeMutablePointer<MCache>? {
    h.pointee.lock.lock()
    defer { h.pointee.lock.unlock() }
    if let c = slot.pointee.mcache { return c }
    guard let raw = h.pointee.cacheAlloc.alloc(from: &h.pointee.persistent) else { return nil }
    let c = raw.bindMemory(to: MCache.self, capacity: 1)
    c.initialize(to: MCache(p: slot, emptySpan: h.pointee.emptySpan))
    slot.pointee.mcache = c
    h.pointee.mcachesCreated &+= 1
    return c
}

// MARK: - malloc

/// Allocate `size` bytes of a size class (C alignment rules when `cABI`), zeroed if `zero`.
/// nil when out of memory.
@inline(__always)
func mallocgc(_ size: Int, cABI: Bool, zero: Bool) -> UnsafeMutableRawPointer? {
    guard let h = heap() else { return nil }
    if size > maxSmallSize { return mallocLarge(h, size: size, alignPages: 1, zero: zero) }
    return mallocSmall(h, sizeClass: h.pointee.sizeClass(for: size, cABI: cABI), size: size, zero: zero)
}

@inline(__always)
func mallocSmall(_ h: UnsafeMutablePointer<MHeap>, sizeClass c: Int, size: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    let spc = SpanClass(sizeClass: c, noscan: false)
    let p = h.pointee.acquireP()
    guard let cache = mcacheOf(h, p) else {
        h.pointee.releaseP(p)
        return nil
    }
    let s = MCache.allocSlot(cache, spc).pointee
    var v = s.pointee.nextFreeFast()
    var needzero = s.pointee.needzero
    if v == 0 {
        v = cache.pointee.nextFree(spc, heap: h)
        needzero = MCache.allocSlot(cache, spc).pointee.pointee.needzero
        if v == 0 {
            h.pointee.releaseP(p)
            return nil
        }
    }
    MCache.countMalloc(cache, c)
    h.pointee.releaseP(p)
    let ptr = UnsafeMutableRawPointer(bitPattern: v).unsafelyUnwrapped
    if zero && needzero { gm_sys_memset(ptr, 0, size) }
    return ptr
}

/// Go's largeAlloc: whole pages, aligned to `alignPages` pages.
@inline(never)
func mallocLarge(_ h: UnsafeMutablePointer<MHeap>, size: Int, alignPages: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    // Overflow-safe page count.
    if size > (1 << heapAddrBits) { return nil }
    let npages = (size &+ pageMask) >> pageShift
    guard let s = h.pointee.allocSpan(npages: npages, spanClass: SpanClass.large, alignPages: alignPages) else {
        return nil
    }
    let ptr = UnsafeMutableRawPointer(bitPattern: s.pointee.startAddr).unsafelyUnwrapped
    if zero && s.pointee.needzero { gm_sys_memset(ptr, 0, size) }
    return ptr
}

/// Allocation with an explicit alignment (a power of two). C's aligned family and the
/// Swift API go through here when the alignment exceeds what size classes give anyway.
func mallocAligned(_ size: Int, alignment: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    guard let h = heap() else { return nil }
    if alignment <= pageSize {
        if size <= maxSmallSize {
            let c = h.pointee.alignedSizeClass(for: size, align: alignment)
            if c != 0 { return mallocSmall(h, sizeClass: c, size: size, zero: zero) }
        }
        return mallocLarge(h, size: Swift.max(size, maxSmallSize &+ 1), alignPages: 1, zero: zero)
    }
    if alignment > (1 << 40) { return nil }
    return mallocLarge(h, size: Swift.max(size, maxSmallSize &+ 1), alignPages: alignment >> pageShift, zero: zero)
}

// MARK: - free

/// The span and object index of a pointer that must be the start of a live object;
/// anything else is reported under `function`'s name and aborts.
@inline(__always)
func findObject(_ h: UnsafeMutablePointer<MHeap>, _ addr: UInt, function: StaticString)
    -> (span: UnsafeMutablePointer<MSpan>, index: Int)
{
    guard let s = h.pointee.spanOf(addr) else {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    if s == h.pointee.tombstone {
        reportBadPointer(function: function, problem: "double free", address: addr)
    }
    let off = addr &- s.pointee.startAddr
    if s.pointee.spanClass.sizeClass == 0 {
        let state = s.pointee.state.load(ordering: .acquiring)
        if off == 0 && state == SpanState.free.rawValue {
            reportBadPointer(function: function, problem: "double free", address: addr)
        }
        if off != 0 || state != SpanState.inUse.rawValue {
            reportBadPointer(function: function, problem: "invalid pointer", address: addr)
        }
        return (s, 0)
    }
    // i * elemSize == off with i < nelems also proves off lies inside the span.
    let i = s.pointee.objIndex(addr)
    if i >= s.pointee.nelems || UInt(bitPattern: i &* s.pointee.elemSize) != off
        || s.pointee.state.load(ordering: .relaxed) != SpanState.inUse.rawValue {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    return (s, i)
}

/// free(). `function` names the caller in reports ("free", "realloc").
@inline(__always)
func freeObject(_ ptr: UnsafeMutableRawPointer, function: StaticString) {
    let addr = UInt(bitPattern: ptr)
    guard let h = theHeap() else {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    let (s, i) = findObject(h, addr, function: function)
    let c = s.pointee.spanClass.sizeClass
    if c == 0 {
        freeLarge(h, s, addr: addr, function: function)
        return
    }
    let p = h.pointee.acquireP()
    guard let cache = mcacheOf(h, p) else {
        h.pointee.releaseP(p)
        freeRemote(h, s, index: i, addr: addr, function: function)
        return
    }
    MCache.countFree(cache, c)
    if s.pointee.location.load(ordering: .relaxed) == SpanLocation.cached(p) {
        // Our own span: plain stores.
        let w = i >> 6
        let bit = UInt64(1) << UInt64(i & 63)
        if !s.pointee.isLive(i) {
            h.pointee.releaseP(p)
            reportBadPointer(function: function, problem: "double free", address: addr)
        }
        s.pointee.freeBits[w] |= bit
        s.pointee.localFreeCount &+= 1
        h.pointee.releaseP(p)
        return
    }
    freeRemoteReleasingP(h, s, index: i, addr: addr, slot: p, function: function)
}

/// A remote free by a thread holding P `slot`, which has already counted it in its nfree.
/// The P is kept until the free is recorded (bit set, counted in remoteFreeCount, mcentral
/// notified), then given back: a stopped world (every P taken) thus never sees a free
/// counted in nfree but not yet recorded in its span, nor a span whose remoteFreeCount
/// lags its remoteBits. Lock order: P < mcentral < mheap, as noteRemoteFree needs.
@inline(never)
func freeRemoteReleasingP(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, index i: Int,
                          addr: UInt, slot: UnsafeMutablePointer<PSlot>, function: StaticString) {
    freeRemote(h, s, index: i, addr: addr, function: function)
    h.pointee.releaseP(slot)
}

/// A free into a span some other P caches, or one sitting in mcentral: atomic bits.
@inline(never)
func freeRemote(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, index i: Int,
                addr: UInt, function: StaticString) {
    let w = i >> 6
    let bit = UInt64(1) << UInt64(i & 63)
    if s.pointee.state.load(ordering: .relaxed) != SpanState.inUse.rawValue {
        reportBadPointer(function: function, problem: "invalid pointer", address: addr)
    }
    // Racy reads (see MSpan.isLive): a correct free always sees the object allocated.
    let allocated = i < s.pointee.freeIndex || s.pointee.allocBits[w] & bit != 0
    if !allocated || s.pointee.freeBits[w] & bit != 0 {
        reportBadPointer(function: function, problem: "double free", address: addr)
    }
    let old = s.pointee.remoteWord(w).pointee.bitwiseOr(bit, ordering: .relaxed).oldValue
    if old & bit != 0 {
        reportBadPointer(function: function, problem: "double free", address: addr)
    }
    let n = s.pointee.remoteFreeCount.add(1, ordering: .sequentiallyConsistent).newValue
    h.pointee.central(s.pointee.spanClass).pointee.noteRemoteFree(s, count: n, heap: h)
}

@inline(never)
func freeLarge(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>, addr: UInt, function: StaticString) {
    // Held from the state change until the pages are back, so that a stopped world never
    // sees a span marked free that still owns its pages (as freeRemoteReleasingP).
    let p = h.pointee.acquireP()
    // The state CAS makes a racing second free of the same block lose cleanly.
    if !s.pointee.state.compareExchange(expected: SpanState.inUse.rawValue, desired: SpanState.free.rawValue,
                                        ordering: .acquiringAndReleasing).exchanged {
        h.pointee.releaseP(p)
        reportBadPointer(function: function, problem: "double free", address: addr)
    }
    h.pointee.freeSpan(s)
    h.pointee.releaseP(p)
}

// MARK: - usable size and realloc

/// Bytes that belong to the block at `ptr` (its class size, or its pages).
func usableSize(_ ptr: UnsafeMutableRawPointer, function: StaticString) -> Int {
    guard let h = theHeap() else {
        reportBadPointer(function: function, problem: "invalid pointer", address: UInt(bitPattern: ptr))
    }
    let (s, i) = findObject(h, UInt(bitPattern: ptr), function: function)
    if s.pointee.spanClass.sizeClass != 0 && !s.pointee.isLive(i) {
        reportBadPointer(function: function, problem: "invalid pointer", address: UInt(bitPattern: ptr))
    }
    return s.pointee.elemSize
}

/// realloc for a non-nil pointer and a non-zero size. In place when the new size keeps the
/// same size class, or for large blocks when the pages after them are free (growing) or by
/// returning the tail (shrinking); otherwise allocate, copy, free.
func reallocObject(_ ptr: UnsafeMutableRawPointer, size: Int, cABI: Bool) -> UnsafeMutableRawPointer? {
    guard let h = theHeap() else {
        reportBadPointer(function: "realloc", problem: "invalid pointer", address: UInt(bitPattern: ptr))
    }
    let (s, i) = findObject(h, UInt(bitPattern: ptr), function: "realloc")
    let c = s.pointee.spanClass.sizeClass
    let old = s.pointee.elemSize
    if c != 0 {
        if !s.pointee.isLive(i) {
            reportBadPointer(function: "realloc", problem: "invalid pointer", address: UInt(bitPattern: ptr))
        }
        if size <= maxSmallSize && h.pointee.sizeClass(for: size, cABI: cABI) == c { return ptr }
    } else if size > maxSmallSize {
        let npages = (size &+ pageMask) >> pageShift
        if npages == s.pointee.npages { return ptr }
        if npages < s.pointee.npages {
            h.pointee.shrinkLarge(s, to: npages)
            return ptr
        }
        if h.pointee.growLargeInPlace(s, to: npages) { return ptr }
        // Big enough that moving page tables beats copying: mremap.
        if s.pointee.npages >= moveLargeMinPages, h.pointee.movesLeft > 0,
           let t = h.pointee.moveLarge(s, to: npages) {
            return UnsafeMutableRawPointer(bitPattern: t.pointee.startAddr)
        }
    }
    guard let new = mallocgc(size, cABI: cABI, zero: false) else { return nil }
    gm_sys_memcpy(new, ptr, Swift.min(old, size))
    freeObject(ptr, function: "realloc")
    return new
}

/// Large blocks of at least this many pages (32 MiB) move by mremap instead of memcpy when
/// realloc cannot grow them in place. Every move splits a kernel mapping (the moved pages
/// become a mapping of their own), and a process may have at most ~65,530 of them: moving
/// every megabyte-sized buffer made a realloc-heavy test reach 31,712 mappings and run 7x
/// slower than glibc. So only blocks big enough that copying them really costs move, and
/// at most MHeap.moveBudget times per process; the rest are copied.
let moveLargeMinPages = 4096

// MARK: - trim

/// malloc_trim: flush every mcache, sweep every mcentral, release all free pages.
/// Returns pages released to the OS.
func trimHeap() -> Int {
    guard let h = theHeap() else { return 0 }
    for i in 0..<h.pointee.nprocs {
        let slot = h.pointee.proc(i)
        while !slot.pointee.owner.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
            gm_sys_yield()
        }
        if let c = slot.pointee.mcache { c.pointee.releaseAll(heap: h) }
        h.pointee.releaseP(slot)
    }
    for i in 0..<numSpanClasses {
        h.pointee.central(SpanClass(raw: UInt8(i))).pointee.reclaimAll(heap: h)
    }
    h.pointee.lock.lock()
    let n = h.pointee.scavengeAll()
    h.pointee.lock.unlock()
    return n
}

// MARK: - Entry points for the Swift API (GoMalloc module)

/// Allocate with Swift's raw-pointer rules: `alignment` is a power of two; size classes serve
/// alignments they satisfy by construction, larger ones come from aligned classes or spans.
package func allocateBytes(_ size: Int, alignment: Int, zero: Bool) -> UnsafeMutableRawPointer? {
    if size < 0 || size > (1 << heapAddrBits) { return nil }
    if alignment <= 8 { return mallocgc(size, cABI: false, zero: zero) }
    if alignment == 16 { return mallocgc(Swift.max(size, 9), cABI: true, zero: zero) }
    return mallocAligned(size, alignment: alignment, zero: zero)
}

package func deallocateBytes(_ ptr: UnsafeMutableRawPointer) {
    freeObject(ptr, function: "free")
}

/// Resize keeping the contents; nil (and the old block intact) when out of memory.
package func reallocateBytes(_ ptr: UnsafeMutableRawPointer, size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
    if size < 0 || size > (1 << heapAddrBits) { return nil }
    if alignment <= 16 { return reallocObject(ptr, size: Swift.max(size, 1), cABI: alignment == 16) }
    // Over-aligned: keep the block if it still fits, else move.
    let old = usableSize(ptr, function: "realloc")
    if size <= old && UInt(bitPattern: ptr) % UInt(alignment) == 0 { return ptr }
    guard let new = mallocAligned(size, alignment: alignment, zero: false) else { return nil }
    gm_sys_memcpy(new, ptr, Swift.min(old, size))
    freeObject(ptr, function: "realloc")
    return new
}

package func usableBytes(_ ptr: UnsafeMutableRawPointer) -> Int {
    usableSize(ptr, function: "malloc_usable_size")
}

package func trimBytes() -> Int { trimHeap() &* pageSize }
