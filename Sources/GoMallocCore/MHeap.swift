// MHeap.swift — the page heap: arenas from the OS, a page allocator, spans, the centrals.
//
// Role: owns all memory. Grows by reserving 64 MiB heap arenas (HeapArena.swift) and
//   committing 4 MiB chunks of them; hands out runs of pages as spans (allocSpan) through the
//   page allocator (PageAlloc.swift); takes them back (freeSpan); maps every page to its span
//   so free() can find the span of any address; holds the 136 mcentrals (and the tiny
//   spans' one), the Ps, the fixallocs for metadata, and the heap-wide statistics. Small
//   spans come from the P's page cache when the caller names its P (PageCache.swift),
//   without the lock.
// Go counterpart: mheap.go (mheap, allocSpan, freeSpan, grow, spanOf), malloc.go (mallocinit).
// Invariants:
//   I1. The page map sends each page of an in-use small span or a stack span, and the first
//       page of an in-use large span, to that span; every other page of ours maps to nil or to the tombstone
//       left where a large object started (so a second free of it can be named a double free
//       rather than an invalid pointer; the tombstone may outlive it on an inner page of a
//       newer large span, which findObject tells apart through the page allocator).
//   I2. pagesInUse == sum of npages over in-use spans == pages.inUsePages - pages held by
//       the Ps' page caches (PageCache.I1: the page allocator counts cached pages as
//       allocated; HeapInuse counts span pages only, so cached pages are idle) - stackPages
//       (the pages of the stack spans, which Go counts as StackInuse, not HeapInuse).
//   I3. heapSys == pages.totalPages * pageSize (bytes committed for the heap).
//   I4. Each span's metadata is owned by exactly one of: its spanAllocs free list, a P's
//       page cache (PageCache.I4), the heap (in use, on a central list or in a cache).
// Concurrency: `lock` guards everything below it unless a field says otherwise. Lock order:
//   P < mcentral < mheap. The arena map is read without the lock (entries only go from nil
//   to non-nil, Go's rule); the page map entries are written under the lock and read
//   without it by free (a pointer being freed was published by its malloc): both through
//   release stores and acquire loads (mapStore, mapLoad); a P also writes them without the
//   lock for a span made from its page cache (PageCache.swift argues why). Methods are on
//   `UnsafeMutablePointer<MHeap>` and touch one stored field at a time: the fields read
//   without the lock are never inside a modify access of the whole heap.
// Failure: allocSpan returns nil when the OS refuses memory; the heap stays consistent.
import CGoMallocSys
import Synchronization

struct MHeap: ~Copyable {
    // MARK: - Read without the lock, immutable after initialisation

    /// The arena map: arena index (addr >> 26) -> that arena's page table, one flat table of
    /// arenaMapEntries words (32 MiB of address space; only written pages become resident).
    /// Its words are read without the lock (mapLoad); entries only go nil -> non-nil.
    var arenaMap: UnsafeMutablePointer<ArenaPageTable?>
    /// The dummy span every mcache slot starts with (nelems 0: nextFreeFast always misses).
    var emptySpan: UnsafeMutablePointer<MSpan>
    /// The page map entry left on the first page of a freed large object (I1): a dummy span
    /// with nelems 0, so the free fast path's index check sends it to the slow path.
    var tombstone: UnsafeMutablePointer<MSpan>
    /// The Ps (pSlotStride bytes apart) and their count.
    var procs: UnsafeMutableRawPointer
    var nprocs: Int
    /// How many of them (the first) are bound to CPUs (P i is CPU i's, taken by the rseq
    /// critical section, Proc.swift); 0 when Ps are taken by compare-and-swap only. Set
    /// before the heap is published; changed only in a forked child, while it has one thread.
    var cpuProcs: Int
    /// The address just past the CPU Ps (procs + cpuProcs * pSlotStride): the rseq section
    /// indexes them back from here (gomalloc_sys.h). Set with cpuProcs.
    var cpuProcsEnd: UInt
    /// numCentrals mcentrals, centralStride bytes apart (central(at:)).
    var centrals: UnsafeMutableRawPointer
    /// The flat size-to-class tables of the malloc fast path (SizeClasses.swift:
    /// fastSpanClass(for:)), read without bounds checks: classTable, or while heap profiling
    /// is on its table (noscan classes as they are, scan classes 0; Profile.swift). Changed
    /// only with the world stopped (or before the heap is published).
    var fastClassTable: UnsafeMutablePointer<UInt8>
    /// The flat size-to-class tables everyone else reads (spanClass(for:)). Immutable.
    var classTable: UnsafeMutablePointer<UInt8>
    var sizeClasses: SizeClassTable
    /// Noscan requests of fewer bytes than this take the slow path, where the tiny allocator
    /// packs them: maxTinySize + 1 with GOMALLOC_TINY=1, else 0 (one unsigned compare in
    /// malloc). With GOMALLOC_DEBUG=1, maxSmallSize + 1: every noscan request is checked
    /// there (Debug.swift) and none is packed.
    /// Plain: set before the heap is published, and changed after only by tests
    /// (setTinyPacking) while no other thread is in the allocator; an atomic load here cost
    /// the malloc+free pair an instruction (151 -> 150, callgrind). Packed objects stay valid
    /// either way (their spans say what they are).
    var tinyLimitValue: UInt
    /// The stack allocator's shared state: stackpool[0..<4], then stackLarge (Stack.swift).
    var stackState: UnsafeMutableRawPointer
    /// Bytes of the guard page below each large stack (GOMALLOC_STACK_GUARD; 0 = none).
    var stackGuardBytes: Int
    /// Scavenger: keep at most this percentage of in-use pages (plus one chunk) free and
    /// unreleased; beyond that, free pages are returned to the OS.
    var retainPercent: Int
    /// GOMALLOC_SCAVENGE (Scavenger.swift). Set before the heap is published; tests change it
    /// while no other thread is in the allocator.
    var scavengeMode: ScavengeMode
    /// GOMALLOC_MEMORY_LIMIT in pages (0: none). Set like scavengeMode.
    var memoryLimitPages: Int
    /// GOMALLOC_DEBUG: the hardened mode (Debug.swift). Set before the heap is published.
    var debugMode: Bool

    /// The heap lock (mutable only through its atomic word).
    let lock: RuntimeLock
    /// Everything the lock guards, in memory of its own: a change to it is never an access
    /// to this struct, which other threads read without the lock.
    let guarded: UnsafeMutablePointer<HeapLocked>

    init(guarded: UnsafeMutablePointer<HeapLocked>) {
        arenaMap = UnsafeMutablePointer(bitPattern: 8)!
        emptySpan = UnsafeMutablePointer(bitPattern: 8)!
        tombstone = UnsafeMutablePointer(bitPattern: 8)!
        procs = UnsafeMutableRawPointer(bitPattern: 8)!
        nprocs = 1
        cpuProcs = 0
        cpuProcsEnd = 0
        centrals = UnsafeMutableRawPointer(bitPattern: 8)!
        fastClassTable = UnsafeMutablePointer(bitPattern: 8)!
        classTable = UnsafeMutablePointer(bitPattern: 8)!
        sizeClasses = SizeClassTable()
        retainPercent = 100
        scavengeMode = .on
        memoryLimitPages = 0
        debugMode = false
        stackState = UnsafeMutableRawPointer(bitPattern: 8)!
        stackGuardBytes = 0
        tinyLimitValue = 0
        lock = RuntimeLock(rank: .mheap)
        self.guarded = guarded
    }

    static let centralStride = 128

    /// Which of spanAllocs holds the metadata of a span of `kind` with `words` words per
    /// bitmap (0: large).
    @inline(__always)
    static func spanAllocIndex(kind: UInt8, words: Int) -> Int {
        kind == SpanKind.tiny ? 6 : kind == SpanKind.stack ? 7 : words == 0 ? 0 : 1 &+ words.trailingZeroBitCount
    }
}

/// The heap's state under its lock. Guarded by: MHeap.lock (every field).
struct HeapLocked: ~Copyable {
    var pages: PageAlloc
    var persistent: PersistentAlloc
    /// Span metadata blocks (MSpan followed by its three bitmaps): [0] large spans (no
    /// bitmaps), [1 + k] small spans with 2^k words per bitmap (k = 0...4), [6] tiny spans
    /// (bitmaps, then one record per block: Tiny.swift), [7] stack spans (one word per
    /// bitmap: Stack.swift; their own, so that a stale stack-span pointer held by a bad
    /// stack_free never reaches an object span's bitmaps).
    var spanAllocs: InlineArray<8, FixAlloc>
    var cacheAlloc: FixAlloc
    var arenas: ArenaSet
    /// Bytes committed for the heap (Go's HeapSys).
    var heapSys: Int
    /// Large objects: count and bytes allocated / freed.
    var largeAllocCount: UInt64
    var largeAllocBytes: UInt64
    var largeFreeCount: UInt64
    var largeFreeBytes: UInt64
    /// mcaches created so far (<= nprocs).
    var mcachesCreated: Int
    /// When the scavenger last released memory (CLOCK_MONOTONIC ns).
    var lastScavenge: UInt64
    /// Pages of stack spans (Stack.swift): allocated in the page allocator, not in HeapInuse
    /// or HeapSys (Go moves them to StackInuse).
    var stackPages: Int
    /// Free runs the inline scavenger reserved and is releasing without the lock
    /// (Scavenger.I3): allocated in the page allocator, in no span, not in HeapInuse.
    var scavengeBatch: ScavengeBatch
    /// The memory limit (Scavenger.swift): whether the resident heap is past it now, and how
    /// many times it went past (MemoryLimitHits).
    var overMemoryLimit: Bool
    var memoryLimitHits: UInt64
    /// Pages the background thread released (part of pages.scavengedTotal).
    var backgroundScavengedTotal: Int

    init(releasesMemory: Bool) {
        pages = PageAlloc(releasesMemory: releasesMemory)
        persistent = PersistentAlloc()
        // Span metadata is type-stable and not zeroed on reuse: threads holding a stale span
        // pointer read its atomics concurrently (MSpan's Concurrency; Go: spanalloc.zero =
        // false). Bitmaps are cleared word by word with atomic stores when a span is set up.
        spanAllocs = InlineArray { i in
            FixAlloc(size: i == 6 ? tinySpanMetadataBytes : MSpan.blockBytes(words: i == 7 ? 1 : i == 0 ? 0 : 1 << (i - 1)), zero: false)
        }
        cacheAlloc = FixAlloc(size: MCache.blockBytes)
        arenas = ArenaSet()
        heapSys = 0
        largeAllocCount = 0; largeAllocBytes = 0; largeFreeCount = 0; largeFreeBytes = 0
        mcachesCreated = 0
        lastScavenge = 0
        stackPages = 0
        scavengeBatch = ScavengeBatch()
        overMemoryLimit = false
        memoryLimitHits = 0
        backgroundScavengedTotal = 0
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// The state under the heap lock (HeapLocked). Caller holds the lock.
    @inline(__always) var locked: UnsafeMutablePointer<HeapLocked> { pointee.guarded }

    @inline(__always)
    func central(_ spc: SpanClass) -> UnsafeMutablePointer<MCentral> { central(at: spc.index) }

    /// mcentral `i` of numCentrals: the 136 span classes', then the tiny spans'.
    @inline(__always)
    func central(at i: Int) -> UnsafeMutablePointer<MCentral> {
        (pointee.centrals + i &* MHeap.centralStride).assumingMemoryBound(to: MCentral.self)
    }

    /// See MHeap.tinyLimitValue.
    @inline(__always)
    var tinyLimit: UInt { pointee.tinyLimitValue }

    /// The mcentral of the tiny spans (Tiny.swift).
    @inline(__always)
    var tinyCentral: UnsafeMutablePointer<MCentral> { central(at: numSpanClasses) }

    /// The mcentral span `s` belongs to (read while `s` is in use).
    @inline(__always)
    func central(of s: UnsafeMutablePointer<MSpan>, _ spc: SpanClass) -> UnsafeMutablePointer<MCentral> {
        s.isTiny ? tinyCentral : central(spc)
    }

    /// Set up the metadata that must exist before the first allocation. Returns false if
    /// the OS refuses memory. Go's mallocinit + mheap.init.
    func initialize(nprocs n: Int, cpuProcs: Int, retainPercent: Int, scavengeMode: ScavengeMode = .on,
                    memoryLimitBytes: Int = 0) -> Bool {
        pointee.sizeClasses.build()
        pointee.retainPercent = retainPercent
        pointee.scavengeMode = scavengeMode
        pointee.memoryLimitPages = memoryLimitBytes == 0 ? 0 : Swift.max(memoryLimitBytes / pageSize, 1)
        pointee.nprocs = n
        pointee.cpuProcs = cpuProcs
        guard let map = sysAllocSparse(size: arenaMapEntries * MemoryLayout<UInt>.stride),
              let pc = locked.pointee.persistent.alloc(size: n * pSlotStride, align: 128),
              let cc = locked.pointee.persistent.alloc(size: numCentrals * MHeap.centralStride, align: MHeap.centralStride),
              let es = locked.pointee.persistent.alloc(size: MemoryLayout<MSpan>.stride, align: 64),
              let ts = locked.pointee.persistent.alloc(size: MemoryLayout<MSpan>.stride, align: 64),
              let ft = locked.pointee.persistent.alloc(size: fastClassTableBytes, align: 64),
              let st = locked.pointee.persistent.alloc(size: stackStateBytes, align: 128)
        else { return false }
        pointee.stackState = st
        for o in 0..<numStackOrders {
            let item = (st + o * stackPoolStride).bindMemory(to: StackPoolItem.self, capacity: 1)
            item.initialize(to: StackPoolItem())
            item.spans.initialize(to: SpanList())
        }
        let large = (st + stackLargeOffset).bindMemory(to: StackLarge.self, capacity: 1)
        large.initialize(to: StackLarge())
        for i in 0..<stackLargeLists { large.freeList(i).initialize(to: SpanList()) }
        pointee.classTable = ft.bindMemory(to: UInt8.self, capacity: fastClassTableBytes)
        pointee.fastClassTable = pointee.classTable
        pointee.sizeClasses.writeFastTable(pointee.classTable)
        pointee.arenaMap = map.bindMemory(to: ArenaPageTable?.self, capacity: arenaMapEntries)
        pointee.procs = pc
        pointee.cpuProcsEnd = UInt(bitPattern: pc + cpuProcs * pSlotStride)
        for i in 0..<n {
            (pc + i * pSlotStride).bindMemory(to: PSlot.self, capacity: 1).initialize(to: PSlot(index: i))
            proc(i).pageCache.initialize(to: PageCache())
        }
        pointee.centrals = cc
        for i in 0..<numCentrals {
            let c = (cc + i * MHeap.centralStride).bindMemory(to: MCentral.self, capacity: 1)
            c.initialize(to: i < numSpanClasses
                ? MCentral(spanClass: SpanClass(raw: UInt8(i)), kind: SpanKind.ordinary)
                : MCentral(spanClass: SpanClass(sizeClass: tinySizeClass, noscan: true), kind: SpanKind.tiny))
            c.lists.initialize(to: CentralLists())
        }
        pointee.emptySpan = es.bindMemory(to: MSpan.self, capacity: 1)
        pointee.emptySpan.initialize(to: MSpan())
        pointee.emptySpan.pointee.state.store(SpanState.manual.rawValue, ordering: .relaxed)
        pointee.tombstone = ts.bindMemory(to: MSpan.self, capacity: 1)
        pointee.tombstone.initialize(to: MSpan())
        return true
    }

    // MARK: - Page map

    /// The span whose page map entry covers `addr`, or nil if the address is not ours or
    /// its page is free, or `tombstone`. Lock-free (see Concurrency): two dependent
    /// acquiring loads (the arena map, the arena's page table).
    @inline(__always)
    func spanOf(_ addr: UInt) -> UnsafeMutablePointer<MSpan>? {
        if addr >> UInt(heapAddrBits) != 0 { return nil }
        let ai = Int(truncatingIfNeeded: addr >> UInt(logHeapArenaBytes))
        guard let table = ArenaPageTable(bitPattern: mapLoad(pointee.arenaMap + ai)) else { return nil }
        return UnsafeMutablePointer<MSpan>(bitPattern:
            mapLoad(table + (Int(truncatingIfNeeded: addr >> UInt(pageShift)) & (pagesPerArena &- 1))))
    }

    /// Set the page map entry of the page holding `addr`. The arena must be registered.
    /// Caller holds the heap lock, or owns the page (a P's page cache, PageCache.swift).
    @inline(__always)
    func setSpan(_ addr: UInt, _ s: UnsafeMutablePointer<MSpan>?) {
        let ai = Int(truncatingIfNeeded: addr >> UInt(logHeapArenaBytes))
        let table = pointee.arenaMap[ai].unsafelyUnwrapped
        mapStore(table + (Int(truncatingIfNeeded: addr >> UInt(pageShift)) & (pagesPerArena &- 1)),
                 UInt(bitPattern: s))
    }

    /// Map the pages of `s` (all of them for small and stack spans, the first for large ones).
    func mapSpanPages(_ s: UnsafeMutablePointer<MSpan>, to value: UnsafeMutablePointer<MSpan>?) {
        let n = s.spanClass.sizeClass == 0 && !s.isStack ? 1 : s.pointee.npages
        var a = s.pointee.startAddr
        for _ in 0..<n {
            setSpan(a, value)
            a &+= UInt(pageSize)
        }
    }

    // MARK: - Spans

    /// Pages of in-use spans (I2). Caller holds the heap lock; exact once the world is
    /// stopped (a P may be making a span from its page cache meanwhile).
    var pagesInUse: Int {
        locked.pointee.pages.inUsePages &- cachedPages &- locked.pointee.stackPages &- locked.pointee.scavengeBatch.totalPages
    }

    /// Go's mheap.alloc: a span of `npages` pages for span class `spanClass` (class 0:
    /// one large object; `kind`: ordinary or tiny), in use, page map set. nil when the OS
    /// refuses memory. `p`: the caller's P (held), whose page cache serves ordinary small
    /// spans of fewer than PageCache.maxSpanPages pages without the heap lock (Go's pcache
    /// path).
    func allocSpan(npages: Int, spanClass: SpanClass, alignPages: Int = 1, kind: UInt8 = SpanKind.ordinary,
                   p: UnsafeMutablePointer<PSlot>? = nil) -> UnsafeMutablePointer<MSpan>? {
        if let p, npages < PageCache.maxSpanPages, alignPages == 1, spanClass.sizeClass != 0, kind == SpanKind.ordinary {
            return allocSpanCached(npages: npages, spanClass: spanClass, p: p)
        }
        pointee.lock.lock()
        let s = allocSpanLocked(npages: npages, spanClass: spanClass, alignPages: alignPages, kind: kind)
        let release = pointee.memoryLimitPages != 0 && checkMemoryLimit()
        pointee.lock.unlock()
        if release { finishScavenge() }
        return s
    }

    /// Go's mheap.allocManual: a stack span of `npages` pages cut into stacks of `stackSize`
    /// bytes, state manual, every page mapped, no stack live (Stack.swift). nil when the OS
    /// refuses memory. Takes the heap lock (callers may hold a stackpool lock).
    func allocStackSpan(npages: Int, stackSize: Int) -> UnsafeMutablePointer<MSpan>? {
        pointee.lock.lock()
        let s = allocSpanLocked(npages: npages, spanClass: SpanClass(raw: 0), alignPages: 1,
                                kind: SpanKind.stack, stackSize: stackSize)
        if s != nil { locked.pointee.stackPages &+= npages }
        let release = pointee.memoryLimitPages != 0 && checkMemoryLimit()
        pointee.lock.unlock()
        if release { finishScavenge() }
        return s
    }

    private func allocSpanLocked(npages: Int, spanClass: SpanClass, alignPages: Int, kind: UInt8,
                                 stackSize: Int = 0) -> UnsafeMutablePointer<MSpan>? {
        let want = npages &+ alignPages &- 1
        var (base, scav) = locked.pointee.pages.alloc(npages: want)
        if base == 0 {
            guard grow(npages: want) else { return nil }
            (base, scav) = locked.pointee.pages.alloc(npages: want)
            if base == 0 { return nil }
        }
        if alignPages > 1 {
            // Keep the aligned part, give back the head and tail.
            let alignBytes = UInt(alignPages &* pageSize)
            let aligned = (base &+ alignBytes &- 1) & ~(alignBytes &- 1)
            let head = Int((aligned &- base) >> UInt(pageShift))
            let tail = want &- head &- npages
            if head > 0 { locked.pointee.pages.free(base: base, npages: head) }
            if tail > 0 { locked.pointee.pages.free(base: aligned &+ UInt(npages &* pageSize), npages: tail) }
            base = aligned
        }
        let c = spanClass.sizeClass
        let which = MHeap.spanAllocIndex(kind: kind, words: c != 0 ? MSpan.bitmapWords(for: Int(pointee.sizeClasses.classToNElems[c])) : 0)
        guard let raw = locked.pointee.spanAllocs[which].alloc(from: &locked.pointee.persistent) else {
            locked.pointee.pages.free(base: base, npages: npages)
            return nil
        }
        let s = raw.assumingMemoryBound(to: MSpan.self)
        // Pages fresh from the OS or scavenged read as zero (Linux anonymous memory).
        initSpan(s, base: base, npages: npages, spanClass: spanClass, kind: kind, needzero: scav < want, stackSize: stackSize)
        if c == 0 && kind != SpanKind.stack {
            locked.pointee.largeAllocCount &+= 1
            locked.pointee.largeAllocBytes &+= UInt64(npages &* pageSize)
        }
        return s
    }

    /// Set up span `s` (a metadata block of the right size) over [base, base + npages pages),
    /// in use, and map its pages. The caller owns the pages and the block: under the heap
    /// lock, or a P making the span from its page cache (PageCache.swift).
    /// A stack span (kind stack) has `stackSize`-byte stacks, one bitmap word, state manual.
    func initSpan(_ s: UnsafeMutablePointer<MSpan>, base: UInt, npages: Int, spanClass: SpanClass, kind: UInt8, needzero: Bool,
                  stackSize: Int = 0) {
        let c = spanClass.sizeClass
        let stack = kind == SpanKind.stack
        let nelems = stack ? (npages &* pageSize) / stackSize : c != 0 ? Int(pointee.sizeClasses.classToNElems[c]) : 1
        let words = c != 0 || stack ? MSpan.bitmapWords(for: nelems) : 0
        // Fresh FixAlloc memory is zero, a valid MSpan; reused memory is an old MSpan of the
        // same block size (its first word overwritten by the free list). Either way every
        // field is set here, one at a time, the atomics and bitmaps through atomic stores:
        // stale readers may be looking (MSpan).
        s.pointee.startAddr = base
        s.pointee.npages = npages
        s.spanClass = spanClass
        s.kind = kind
        // The hardened mode poisons a new small span whole, so every free slot reads as poison
        // (Debug.swift I2); its memory is then not zero.
        let poison = pointee.debugMode && c != 0 && kind == SpanKind.ordinary
        if poison { poisonFreed(base, size: npages &* pageSize) }
        s.pointee.needzero = needzero || poison
        s.pointee.next = nil
        s.pointee.prev = nil
        s.freeIndex = 0
        s.allocCount = 0
        s.pointee.location.store(SpanLocation.none, ordering: .relaxed)
        s.pointee.nelemsWord = UInt16(nelems)
        // 0 sends every free of the span to the slow path: tiny blocks, and every span in the
        // hardened mode (Debug.swift).
        s.fastFreeLimit = kind == SpanKind.ordinary && !pointee.debugMode ? UInt16(nelems) : 0
        s.profiledObjects = 0
        s.pointee.bitmapWordsWord = UInt8(words)
        if c != 0 {
            s.pointee.elemSizeWord = pointee.sizeClasses.classToSize[c]
            s.pointee.divMul = pointee.sizeClasses.classToDivMul[c]
            let a = s.allocBits, f = s.freeBits, r = s.remoteBits
            for w in 0..<words {
                a[w] = MSpan.tailMask(word: w, nelems: nelems)
                f[w] = 0
                r[w] = 0
            }
            s.pointee.allocCache = ~a[0]
            // Tiny spans: every record reads "never opened" (Tiny.swift I3).
            if kind == SpanKind.tiny {
                for i in 0..<nelems { s.tinyRecord(i).pointee.store(0, ordering: .relaxed) }
            }
        } else if stack {
            // Stacks: elemSize is the stack size; the bitmap words say live (allocBits) and
            // free in the pool (freeBits), nothing yet (Stack.swift I2).
            s.pointee.elemSizeWord = UInt32(stackSize)
            s.pointee.divMul = 0
            s.allocBits[0] = 0
            s.freeBits[0] = 0
            s.remoteBits[0] = 0
            s.pointee.allocCache = 0
        } else {
            s.pointee.elemSizeWord = 0  // elemSize follows npages
            s.pointee.divMul = 0
            s.pointee.allocCache = 0
        }
        s.pointee.state.store(stack ? SpanState.manual.rawValue : SpanState.inUse.rawValue, ordering: .releasing)
        mapSpanPages(s, to: s)
    }

    /// Go's mheap.freeSpan: return the span's pages to the page allocator and its metadata
    /// to the fixallocs. The span must be in use and on no list or cache. `released`: its
    /// pages are already returned to the OS (moved away by mremap).
    func freeSpan(_ s: UnsafeMutablePointer<MSpan>, released: Bool = false) {
        pointee.lock.lock()
        let n = s.pointee.npages
        let stack = s.isStack
        let large = s.spanClass.sizeClass == 0 && !stack
        mapSpanPages(s, to: large ? pointee.tombstone : nil)
        if stack { locked.pointee.stackPages &-= n }
        s.pointee.state.store(SpanState.free.rawValue, ordering: .releasing)
        locked.pointee.pages.free(base: s.pointee.startAddr, npages: n, released: released)
        if large {
            locked.pointee.largeFreeCount &+= 1
            locked.pointee.largeFreeBytes &+= UInt64(n &* pageSize)
        }
        locked.pointee.spanAllocs[MHeap.spanAllocIndex(kind: s.kind, words: s.bitmapWords)].free(UnsafeMutableRawPointer(s))
        let release = scavengeIfNeeded()
        pointee.lock.unlock()
        if release { finishScavenge() }
        wakeScavengerIfParked()
    }

    // MARK: - Large spans resized in place (realloc's mechanisms; its policy is in Realloc.swift)

    /// Shrink a large span in place to `npages`, returning its tail pages to the heap.
    func shrinkLarge(_ s: UnsafeMutablePointer<MSpan>, to npages: Int) {
        var release = false
        pointee.lock.lock()
        let old = s.pointee.npages
        if npages < old {
            locked.pointee.pages.free(base: s.pointee.startAddr &+ UInt(npages &* pageSize), npages: old &- npages)
            s.pointee.npages = npages
            locked.pointee.largeFreeBytes &+= UInt64((old &- npages) &* pageSize)
            release = scavengeIfNeeded()
        }
        pointee.lock.unlock()
        if release { finishScavenge() }
    }

    /// Grow a large span in place to `npages` if the pages right after it are free.
    func growLargeInPlace(_ s: UnsafeMutablePointer<MSpan>, to npages: Int) -> Bool {
        pointee.lock.lock()
        defer { pointee.lock.unlock() }
        let old = s.pointee.npages
        let extra = npages &- old
        let end = s.pointee.startAddr &+ UInt(old &* pageSize)
        if extra <= 0 { return false }
        if locked.pointee.pages.allocAt(base: end, npages: extra) == nil {
            // Near the end of the committed heap: commit the next chunks and try again (the
            // pages between `end` and the old end must be free, which allocAt checks).
            let limit = end &+ UInt(extra &* pageSize)
            let committed = locked.pointee.arenas.currentBase
            guard committed >= end, committed < limit,
                  grow(npages: Int((limit &- committed) >> UInt(pageShift))),
                  locked.pointee.pages.allocAt(base: end, npages: extra) != nil else { return false }
        }
        s.pointee.npages = npages
        locked.pointee.largeAllocBytes &+= UInt64(extra &* pageSize)
        return true
    }

    // MARK: - Growth (Go's mheap.grow + sysAlloc)

    /// Add at least `npages` free pages to the page allocator, committing address space in
    /// whole chunks from the current arena reservation and reserving new arenas as needed.
    func grow(npages: Int) -> Bool {
        let ask = (UInt(npages &* pageSize) &+ UInt(pallocChunkBytes) &- 1) & ~(UInt(pallocChunkBytes) &- 1)
        if locked.pointee.arenas.currentEnd &- locked.pointee.arenas.currentBase < ask {
            guard let (base, size) = reserveArenas(atLeast: ask) else { return false }
            if base != locked.pointee.arenas.currentEnd && locked.pointee.arenas.currentEnd > locked.pointee.arenas.currentBase {
                // Not contiguous: commit the rest of the old reservation so it is not lost.
                let restBase = locked.pointee.arenas.currentBase
                let rest = locked.pointee.arenas.currentEnd &- restBase
                if sysMap(UnsafeMutableRawPointer(bitPattern: restBase)!, size: Int(rest)),
                   locked.pointee.pages.grow(base: restBase, size: rest) {
                    locked.pointee.heapSys &+= Int(rest)
                }
                locked.pointee.arenas.currentBase = base
            } else if locked.pointee.arenas.currentEnd <= locked.pointee.arenas.currentBase {
                locked.pointee.arenas.currentBase = base
            }
            locked.pointee.arenas.currentEnd = base &+ size
        }
        let v = locked.pointee.arenas.currentBase
        guard sysMap(UnsafeMutableRawPointer(bitPattern: v)!, size: Int(ask)) else { return false }
        guard locked.pointee.pages.grow(base: v, size: ask) else { return false }
        locked.pointee.arenas.currentBase = v &+ ask
        locked.pointee.heapSys &+= Int(ask)
        if locked.pointee.heapSys >= backgroundScavengeThreshold && pointee.scavengeMode == .on {
            wantScavengerThread()
        }
        return true
    }

}
