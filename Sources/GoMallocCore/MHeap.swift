// MHeap.swift — the page heap: arenas from the OS, a page allocator, spans, the centrals.
//
// Role: owns all memory. Grows by reserving 64 MiB heap arenas (HeapArena.swift) and
//   committing 4 MiB chunks of them; hands out runs of pages as spans (allocSpan) through the
//   page allocator (PageAlloc.swift); takes them back (freeSpan); maps every page to its span
//   so free() can find the span of any address; holds the 136 mcentrals, the Ps, the
//   fixallocs for metadata, and the heap-wide statistics.
// Go counterpart: mheap.go (mheap, allocSpan, freeSpan, grow, spanOf), malloc.go (mallocinit).
// Invariants:
//   I1. The page map sends each page of an in-use small span, and the first page of an in-use
//       large or manual span, to that span; every other page of ours maps to nil or to the
//       tombstone left where a large object was freed (so a second free of it can be named a
//       double free rather than an invalid pointer).
//   I2. pagesInUse == sum of npages over in-use spans == pages.inUsePages.
//   I3. heapSys == pages.totalPages * pageSize (bytes committed for the heap).
//   I4. Each span's metadata is owned by exactly one of: spanAlloc's free list, the heap
//       (in use, on a central list or in a cache).
// Concurrency: `lock` guards everything below it unless a field says otherwise. Lock order:
//   P < mcentral < mheap. The arena map is read without the lock (entries only go from nil
//   to non-nil, Go's rule); the page map entries are written under the lock and read
//   without it by free (a pointer being freed was published by its malloc).
// Failure: allocSpan returns nil when the OS refuses memory; the heap stays consistent.
import CGoMallocSys
import Synchronization

struct MHeap: ~Copyable {
    // MARK: - Read on hot paths, immutable after init

    /// The two-level arena map (L1 of 1024 entries -> L2 of 4096 -> per-arena page table).
    /// Racy read: entries only go nil -> non-nil, under the lock.
    var arenasL1: UnsafeMutablePointer<ArenaL2?>
    /// The dummy span every mcache slot starts with (nelems 0: nextFreeFast always misses).
    var emptySpan: UnsafeMutablePointer<MSpan>
    /// The page map entry left on the first page of a freed large object (I1): a dummy span
    /// with nelems 0, so the free fast path's index check sends it to the slow path.
    var tombstone: UnsafeMutablePointer<MSpan>
    /// The Ps (pSlotStride bytes apart) and their count.
    var procs: UnsafeMutableRawPointer
    var nprocs: Int
    /// 136 mcentrals, centralStride bytes apart.
    var centrals: UnsafeMutableRawPointer
    /// Flat copies of the lookup tables for the C fast path (no bounds checks):
    /// cSizeToClass8 (129 bytes) then sizeToClass128 (249 bytes).
    var fastClassTable: UnsafeMutablePointer<UInt8>
    var sizeClasses: SizeClassTable

    // MARK: - Guarded by lock

    let lock: RuntimeLock
    var pages: PageAlloc
    var persistent: PersistentAlloc
    var spanAlloc: FixAlloc
    var cacheAlloc: FixAlloc
    /// Bitmaps for 1, 2, 4, 8, 16 words per bitmap (three bitmaps per span).
    var bitmapAllocs: InlineArray<5, FixAlloc>
    var arenas: ArenaSet
    /// Pages of in-use spans (heap objects and manual). Guarded by lock.
    var pagesInUse: Int
    var pagesManual: Int
    /// Bytes committed for the heap (Go's HeapSys). Guarded by lock.
    var heapSys: Int
    /// Large objects: count and bytes allocated / freed. Guarded by lock.
    var largeAllocCount: UInt64
    var largeAllocBytes: UInt64
    var largeFreeCount: UInt64
    var largeFreeBytes: UInt64
    /// mcaches created so far (<= nprocs). Guarded by lock.
    var mcachesCreated: Int
    /// Scavenger: keep at most this percentage of in-use pages (plus one chunk) free and
    /// unreleased; beyond that, free pages are returned to the OS. Immutable after init.
    var retainPercent: Int
    /// Pages released to the OS by the scavenger, cumulative. Guarded by lock.
    var scavengedTotal: Int
    /// When the scavenger last released memory (CLOCK_MONOTONIC ns). Guarded by lock.
    var lastScavenge: UInt64
    /// mremap moves still allowed (see moveLargeMinPages). Guarded by lock; read racily.
    var movesLeft: Int
    static let moveBudget = 2048

    init(releasesMemory: Bool) {
        arenasL1 = UnsafeMutablePointer(bitPattern: 8)!
        emptySpan = UnsafeMutablePointer(bitPattern: 8)!
        tombstone = UnsafeMutablePointer(bitPattern: 8)!
        procs = UnsafeMutableRawPointer(bitPattern: 8)!
        nprocs = 1
        centrals = UnsafeMutableRawPointer(bitPattern: 8)!
        fastClassTable = UnsafeMutablePointer(bitPattern: 8)!
        sizeClasses = SizeClassTable()
        lock = RuntimeLock()
        pages = PageAlloc(releasesMemory: releasesMemory)
        persistent = PersistentAlloc()
        spanAlloc = FixAlloc(size: MemoryLayout<MSpan>.stride)
        cacheAlloc = FixAlloc(size: MemoryLayout<MCache>.stride)
        bitmapAllocs = InlineArray { i in FixAlloc(size: 3 * 8 * (1 << i)) }
        arenas = ArenaSet()
        pagesInUse = 0; pagesManual = 0; heapSys = 0
        largeAllocCount = 0; largeAllocBytes = 0; largeFreeCount = 0; largeFreeBytes = 0
        mcachesCreated = 0
        retainPercent = 100
        scavengedTotal = 0
        lastScavenge = 0
        movesLeft = MHeap.moveBudget
    }

    static let centralStride = 128

    @inline(__always)
    func central(_ spc: SpanClass) -> UnsafeMutablePointer<MCentral> {
        (centrals + spc.index &* MHeap.centralStride).assumingMemoryBound(to: MCentral.self)
    }

    /// Set up the metadata that must exist before the first allocation. Returns false if
    /// the OS refuses memory. Go's mallocinit + mheap.init.
    mutating func initialize(nprocs: Int, retainPercent: Int) -> Bool {
        sizeClasses.build()
        self.retainPercent = retainPercent
        self.nprocs = nprocs
        let l1Bytes = (1 << arenaL1Bits) * MemoryLayout<UInt>.stride
        guard let l1 = sysAlloc(size: l1Bytes),
              let pc = persistent.alloc(size: nprocs * pSlotStride, align: pSlotStride),
              let cc = persistent.alloc(size: numSpanClasses * MHeap.centralStride, align: MHeap.centralStride),
              let es = persistent.alloc(size: MemoryLayout<MSpan>.stride, align: 64),
              let ts = persistent.alloc(size: MemoryLayout<MSpan>.stride, align: 64),
              let ft = persistent.alloc(size: sizeToClass8Count + sizeToClass128Count, align: 64)
        else { return false }
        fastClassTable = ft.bindMemory(to: UInt8.self, capacity: sizeToClass8Count + sizeToClass128Count)
        for i in 0..<sizeToClass8Count { fastClassTable[i] = sizeClasses.cSizeToClass8[i] }
        for i in 0..<sizeToClass128Count { fastClassTable[sizeToClass8Count + i] = sizeClasses.sizeToClass128[i] }
        arenasL1 = l1.bindMemory(to: ArenaL2?.self, capacity: 1 << arenaL1Bits)
        procs = pc
        for i in 0..<nprocs {
            (pc + i * pSlotStride).bindMemory(to: PSlot.self, capacity: 1).initialize(to: PSlot(index: i))
        }
        centrals = cc
        for i in 0..<numSpanClasses {
            (cc + i * MHeap.centralStride).bindMemory(to: MCentral.self, capacity: 1)
                .initialize(to: MCentral(spanClass: SpanClass(raw: UInt8(i))))
        }
        emptySpan = es.bindMemory(to: MSpan.self, capacity: 1)
        emptySpan.initialize(to: MSpan())
        emptySpan.pointee.state.store(SpanState.manual.rawValue, ordering: .relaxed)
        tombstone = ts.bindMemory(to: MSpan.self, capacity: 1)
        tombstone.initialize(to: MSpan())
        return true
    }

    // MARK: - Page map

    /// The span whose page map entry covers `addr`, or nil if the address is not ours or
    /// its page is free, or `tombstone`. Lock-free (see Concurrency).
    @inline(__always)
    func spanOf(_ addr: UInt) -> UnsafeMutablePointer<MSpan>? {
        if addr >> UInt(heapAddrBits) != 0 { return nil }
        let ai = Int(truncatingIfNeeded: addr >> UInt(logHeapArenaBytes))
        guard let l2 = arenasL1[ai >> arenaL2Bits],
              let table = l2[ai & ((1 << arenaL2Bits) &- 1)] else { return nil }
        return table[Int(truncatingIfNeeded: addr >> UInt(pageShift)) & (pagesPerArena &- 1)]
    }

    /// Set the page map entry of the page holding `addr`. The arena must be registered.
    @inline(__always)
    func setSpan(_ addr: UInt, _ s: UnsafeMutablePointer<MSpan>?) {
        let ai = Int(truncatingIfNeeded: addr >> UInt(logHeapArenaBytes))
        let table = arenasL1[ai >> arenaL2Bits].unsafelyUnwrapped[ai & ((1 << arenaL2Bits) &- 1)].unsafelyUnwrapped
        table[Int(truncatingIfNeeded: addr >> UInt(pageShift)) & (pagesPerArena &- 1)] = s
    }

    /// Map the pages of `s` (all of them for small spans, the first for large and manual).
    func mapSpanPages(_ s: UnsafeMutablePointer<MSpan>, to value: UnsafeMutablePointer<MSpan>?) {
        let n = s.pointee.spanClass.sizeClass == 0 ? 1 : s.pointee.npages
        var a = s.pointee.startAddr
        for _ in 0..<n {
            setSpan(a, value)
            a &+= UInt(pageSize)
        }
    }

    // MARK: - Spans

    /// Go's mheap.alloc: a span of `npages` pages for span class `spanClass` (class 0:
    /// one large object), in use, page map set. nil when the OS refuses memory.
    mutating func allocSpan(npages: Int, spanClass: SpanClass, alignPages: Int = 1) -> UnsafeMutablePointer<MSpan>? {
        lock.lock()
        defer { lock.unlock() }
        return allocSpanLocked(npages: npages, spanClass: spanClass, alignPages: alignPages, manual: false)
    }

    /// A manual span (stacks): in use by its owner, no objects of ours inside.
    mutating func allocManual(npages: Int) -> UnsafeMutablePointer<MSpan>? {
        lock.lock()
        defer { lock.unlock() }
        return allocSpanLocked(npages: npages, spanClass: SpanClass.large, alignPages: 1, manual: true)
    }

    private mutating func allocSpanLocked(npages: Int, spanClass: SpanClass, alignPages: Int,
                                          manual: Bool) -> UnsafeMutablePointer<MSpan>? {
        let want = npages &+ alignPages &- 1
        var (base, scav) = pages.alloc(npages: want)
        if base == 0 {
            guard grow(npages: want) else { return nil }
            (base, scav) = pages.alloc(npages: want)
            if base == 0 { return nil }
        }
        if alignPages > 1 {
            // Keep the aligned part, give back the head and tail.
            let alignBytes = UInt(alignPages &* pageSize)
            let aligned = (base &+ alignBytes &- 1) & ~(alignBytes &- 1)
            let head = Int((aligned &- base) >> UInt(pageShift))
            let tail = want &- head &- npages
            if head > 0 { pages.free(base: base, npages: head) }
            if tail > 0 { pages.free(base: aligned &+ UInt(npages &* pageSize), npages: tail) }
            base = aligned
        }
        guard let raw = spanAlloc.alloc(from: &persistent) else {
            pages.free(base: base, npages: npages)
            return nil
        }
        let s = raw.bindMemory(to: MSpan.self, capacity: 1)
        s.initialize(to: MSpan())
        s.pointee.startAddr = base
        s.pointee.npages = npages
        s.pointee.spanClass = spanClass
        // Pages fresh from the OS or scavenged read as zero (Linux anonymous memory).
        s.pointee.needzero = scav < want
        let c = spanClass.sizeClass
        if c != 0 {
            let size = Int(sizeClasses.classToSize[c])
            let nelems = Int(sizeClasses.classToNElems[c])
            let words = MSpan.bitmapWords(for: nelems)
            let which = words.trailingZeroBitCount
            guard let bits = bitmapAllocs[which].alloc(from: &persistent) else {
                spanAlloc.free(raw)
                pages.free(base: base, npages: npages)
                return nil
            }
            s.pointee.bits = bits.bindMemory(to: UInt64.self, capacity: 3 * words)
            s.pointee.bitmapWords = words
            s.pointee.freeBitsBase = s.pointee.bits.unsafelyUnwrapped + words
            s.pointee.elemSize = size
            s.pointee.nelems = nelems
            s.pointee.divMul = sizeClasses.classToDivMul[c]
            for w in 0..<words { s.pointee.allocBits[w] = MSpan.tailMask(word: w, nelems: nelems) }
            s.pointee.allocCache = ~s.pointee.allocBits[0]
        } else {
            s.pointee.elemSize = npages &* pageSize
            s.pointee.nelems = 1
        }
        s.pointee.state.store(manual ? SpanState.manual.rawValue : SpanState.inUse.rawValue, ordering: .releasing)
        mapSpanPages(s, to: s)
        pagesInUse &+= npages
        if manual { pagesManual &+= npages }
        if c == 0 && !manual {
            largeAllocCount &+= 1
            largeAllocBytes &+= UInt64(npages &* pageSize)
        }
        return s
    }

    /// Go's mheap.freeSpan: return the span's pages to the page allocator and its metadata
    /// to the fixallocs. The span must be in use (or manual) and on no list or cache.
    mutating func freeSpan(_ s: UnsafeMutablePointer<MSpan>) {
        lock.lock()
        freeSpanLocked(s)
        scavengeIfNeeded()
        lock.unlock()
    }

    /// realloc of a large block too big to copy cheaply that cannot grow in place: a new
    /// span of `npages`, onto which the old pages are moved by the kernel (no copy); the old
    /// span is freed as already released. nil (nothing changed) if that is not possible.
    mutating func moveLarge(_ s: UnsafeMutablePointer<MSpan>, to npages: Int) -> UnsafeMutablePointer<MSpan>? {
        guard let t = allocSpan(npages: npages, spanClass: SpanClass.large) else { return nil }
        let n = Swift.min(s.pointee.npages, npages)
        guard sysMovePages(from: s.pointee.startAddr, to: t.pointee.startAddr, size: n &* pageSize) else {
            freeSpan(t)
            return nil
        }
        lock.lock()
        movesLeft &-= 1
        freeSpanLocked(s, released: true)
        lock.unlock()
        return t
    }

    private mutating func freeSpanLocked(_ s: UnsafeMutablePointer<MSpan>, released: Bool = false) {
        let n = s.pointee.npages
        let manual = s.pointee.state.load(ordering: .relaxed) == SpanState.manual.rawValue
        mapSpanPages(s, to: s.pointee.spanClass.sizeClass == 0 && !manual ? tombstone : nil)
        s.pointee.state.store(SpanState.free.rawValue, ordering: .releasing)
        pages.free(base: s.pointee.startAddr, npages: n, released: released)
        pagesInUse &-= n
        if manual { pagesManual &-= n }
        if let bits = s.pointee.bits {
            bitmapAllocs[s.pointee.bitmapWords.trailingZeroBitCount].free(UnsafeMutableRawPointer(bits))
            s.pointee.bits = nil
            s.pointee.freeBitsBase = nil
        }
        if s.pointee.spanClass.sizeClass == 0 && !manual {
            largeFreeCount &+= 1
            largeFreeBytes &+= UInt64(n &* pageSize)
        }
        spanAlloc.free(UnsafeMutableRawPointer(s))
    }

    /// Shrink a large span in place to `npages`, returning its tail pages to the heap.
    mutating func shrinkLarge(_ s: UnsafeMutablePointer<MSpan>, to npages: Int) {
        lock.lock()
        let old = s.pointee.npages
        if npages < old {
            pages.free(base: s.pointee.startAddr &+ UInt(npages &* pageSize), npages: old &- npages)
            s.pointee.npages = npages
            s.pointee.elemSize = npages &* pageSize
            pagesInUse &-= old &- npages
            largeFreeBytes &+= UInt64((old &- npages) &* pageSize)
            scavengeIfNeeded()
        }
        lock.unlock()
    }

    /// Grow a large span in place to `npages` if the pages right after it are free.
    mutating func growLargeInPlace(_ s: UnsafeMutablePointer<MSpan>, to npages: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let old = s.pointee.npages
        let extra = npages &- old
        let end = s.pointee.startAddr &+ UInt(old &* pageSize)
        if extra <= 0 { return false }
        if pages.allocAt(base: end, npages: extra) == nil {
            // Near the end of the committed heap: commit the next chunks and try again (the
            // pages between `end` and the old end must be free, which allocAt checks).
            let limit = end &+ UInt(extra &* pageSize)
            let committed = arenas.currentBase
            guard committed >= end, committed < limit,
                  grow(npages: Int((limit &- committed) >> UInt(pageShift))),
                  pages.allocAt(base: end, npages: extra) != nil else { return false }
        }
        s.pointee.npages = npages
        s.pointee.elemSize = npages &* pageSize
        pagesInUse &+= extra
        largeAllocBytes &+= UInt64(extra &* pageSize)
        return true
    }

    // MARK: - Growth (Go's mheap.grow + sysAlloc)

    /// Add at least `npages` free pages to the page allocator, committing address space in
    /// whole chunks from the current arena reservation and reserving new arenas as needed.
    mutating func grow(npages: Int) -> Bool {
        let ask = (UInt(npages &* pageSize) &+ UInt(pallocChunkBytes) &- 1) & ~(UInt(pallocChunkBytes) &- 1)
        if arenas.currentEnd &- arenas.currentBase < ask {
            guard let (base, size) = reserveArenas(atLeast: ask) else { return false }
            if base != arenas.currentEnd && arenas.currentEnd > arenas.currentBase {
                // Not contiguous: commit the rest of the old reservation so it is not lost.
                let restBase = arenas.currentBase
                let rest = arenas.currentEnd &- restBase
                if sysMap(UnsafeMutableRawPointer(bitPattern: restBase)!, size: Int(rest)),
                   pages.grow(base: restBase, size: rest) {
                    heapSys &+= Int(rest)
                }
                arenas.currentBase = base
            } else if arenas.currentEnd <= arenas.currentBase {
                arenas.currentBase = base
            }
            arenas.currentEnd = base &+ size
        }
        let v = arenas.currentBase
        guard sysMap(UnsafeMutableRawPointer(bitPattern: v)!, size: Int(ask)) else { return false }
        guard pages.grow(base: v, size: ask) else { return false }
        arenas.currentBase = v &+ ask
        heapSys &+= Int(ask)
        return true
    }

    // MARK: - Scavenging (the policy lives in Scavenger.swift)

    /// Bytes in free pages that have not been returned to the OS.
    var freeUnscavengedPages: Int { pages.freePages &- pages.scavengedPages }
}
