// Invariants.swift — checkInvariants(): the whole heap walked and recounted the slow way.
//
// Role: the expensive tier of checks (mimalloc's "expensive", Go's doubleCheck and
//   ReadMemStatsSlow). Stops the world (Proc.swift), then checks span states, bitmaps against counts, the page map against the
//   spans, the page allocator's bitmaps against its summaries, the central lists against
//   span locations, the mcaches, and the statistics against a recount.
// Go counterpart: mstats.go (ReadMemStatsSlow), mgcsweep.go / mheap.go (debug checks).
// Invariants: those of every other file, referenced as File.In in the messages.
// Concurrency: stops the world; safe to call while other threads allocate.
// Failure: returns the first violation found (nil when all hold); never modifies the heap.
import Synchronization

/// A violated invariant: what, and where.
package struct InvariantViolation {
    package let message: StaticString
    package let address: UInt
}

/// Walk the heap; nil when every invariant holds. Tests and debug builds call this; it is
/// never on a release fast path.
package func checkInvariants() -> InvariantViolation? {
    guard let h = theHeap() else { return nil }
    h.stopTheWorld()
    defer { h.startTheWorld() }
    return checkHeapLocked(h)
}

private func checkHeapLocked(_ h: UnsafeMutablePointer<MHeap>) -> InvariantViolation? {
    var spanPages = 0
    var liveSmallBytes: UInt64 = 0
    var liveLargeBytes: UInt64 = 0
    var listed = 0
    var liveTinyObjects = 0
    var openTinyBlocks = 0
    var stacks = StackRecount()
    var profiled = 0
    // Walk every registered arena's page table.
    for ai in h.registeredArenaIndices {
        guard let table = h.pointee.arenaMap[ai] else { continue }
        let arenaBase = UInt(ai) << UInt(logHeapArenaBytes)
        for pg in 0..<pagesPerArena {
            guard let s = table[pg], s != h.pointee.tombstone else { continue }
            let addr = arenaBase &+ UInt(pg &* pageSize)
            let state = s.pointee.state.load(ordering: .relaxed)
            if state == SpanState.free.rawValue {
                return InvariantViolation(message: "MHeap.I1: page maps to a free span", address: addr)
            }
            if addr < s.pointee.startAddr || addr >= s.limit {
                return InvariantViolation(message: "MHeap.I1: page maps to a span not covering it", address: addr)
            }
            if !h.locked.pointee.pages.isAllocated(addr) {
                return InvariantViolation(message: "MHeap.I1: page of a span is free in the page allocator", address: addr)
            }
            if s.isStack != (state == SpanState.manual.rawValue) {
                return InvariantViolation(message: "Stack.I1: a manual span that is not a stack span, or the reverse", address: addr)
            }
            if addr != s.pointee.startAddr { continue }
            if s.isStack {
                if let v = checkStackSpan(h, s, &stacks) { return v }
                continue
            }
            // First page: check the span once.
            if let v = checkSpan(h, s) { return v }
            if s.profiledObjects != 0 {
                if s.fastFreeLimit != 0 {
                    return InvariantViolation(message: "Profile.I2: a span with sampled objects lets frees take the fast path", address: addr)
                }
                profiled &+= Int(s.profiledObjects)
            }
            spanPages &+= s.pointee.npages
            if s.spanClass.sizeClass == 0 {
                liveLargeBytes &+= UInt64(s.pointee.npages &* pageSize)
            } else {
                if s.isTiny {
                    if let v = checkTinySpan(s, live: &liveTinyObjects, open: &openTinyBlocks) { return v }
                }
                liveSmallBytes &+= UInt64(s.liveObjectsSlow() &* s.elemSize)
                let loc = s.pointee.location.load(ordering: .relaxed)
                if loc == SpanLocation.partial || loc == SpanLocation.full || loc == SpanLocation.empty { listed &+= 1 }
            }
        }
    }
    if let v = checkPageCaches(h) { return v }
    if let v = checkProfileObjects(h, spansSay: profiled) { return v }
    if let v = checkStackLists(h, &stacks) { return v }
    if stacks.pages != h.locked.pointee.stackPages {
        return InvariantViolation(message: "Stack.I4: stackPages differs from the stack spans' pages", address: UInt(stacks.pages))
    }
    if spanPages != h.pagesInUse {
        return InvariantViolation(message: "MHeap.I2: pagesInUse differs from the pages of in-use spans", address: UInt(spanPages))
    }
    if spanPages &+ h.cachedPages &+ stacks.pages &+ h.locked.pointee.scavengeBatch.totalPages != h.locked.pointee.pages.inUsePages {
        return InvariantViolation(message: "MHeap.I2: page allocator in-use count differs from the spans and page caches", address: UInt(spanPages))
    }
    if h.locked.pointee.heapSys != h.locked.pointee.pages.totalPages &* pageSize {
        return InvariantViolation(message: "MHeap.I3: heapSys differs from the page allocator's pages", address: UInt(h.locked.pointee.heapSys))
    }
    // Central lists: every listed span has the right class and location.
    var onLists = 0
    for i in 0..<numCentrals {
        let c = h.central(at: i)
        for which in 0..<2 {
            var s = which == 0 ? c.lists.pointee.partial.first : c.lists.pointee.full.first
            var n = 0
            var empties = 0
            let want = which == 0 ? SpanLocation.partial : SpanLocation.full
            while let span = s {
                if span.spanClass != c.pointee.spanClass || span.kind != c.pointee.kind {
                    return InvariantViolation(message: "MCentral.I1: span on the wrong central", address: span.pointee.startAddr)
                }
                let loc = span.pointee.location.load(ordering: .relaxed)
                if loc != want && !(which == 0 && loc == SpanLocation.empty) {
                    return InvariantViolation(message: "MCentral.I1: span location does not match its list", address: span.pointee.startAddr)
                }
                if which == 1 && span.allocCount < span.nelems {
                    return InvariantViolation(message: "MCentral.I2: span on the full list has a free object", address: span.pointee.startAddr)
                }
                if (span.liveObjectsSlow() == 0) != (loc == SpanLocation.empty) {
                    return InvariantViolation(message: "MCentral.I3: an empty span outside the reserve, or a reserved span with live objects", address: span.pointee.startAddr)
                }
                if loc == SpanLocation.empty { empties &+= 1 }
                n &+= 1
                s = span.pointee.next
            }
            let count = which == 0 ? c.lists.pointee.partial.count : c.lists.pointee.full.count
            if n != count {
                return InvariantViolation(message: "MCentral: list count differs from its length", address: UInt(n))
            }
            if which == 0 && (empties != c.lists.pointee.emptyCount || empties > MCentral.emptyReserve) {
                return InvariantViolation(message: "MCentral.I3: reserve of emptied spans miscounted or over its bound", address: UInt(empties))
            }
            onLists &+= n
        }
    }
    if onLists != listed {
        return InvariantViolation(message: "MCentral.I1: spans with a central location not on a list", address: UInt(listed))
    }
    // mcaches: each slot holds the empty span or a span of that class cached by this P.
    var mcaches = 0
    for p in 0..<h.pointee.nprocs {
        guard let cache = h.proc(p).mcache else { continue }
        mcaches &+= 1
        var retiredPages = 0
        for spc in 0..<numSpanClasses {
            var n = 0
            var r = cache.pointee.retired[spc].first
            var prev: UnsafeMutablePointer<MSpan>? = nil
            while let t = r {
                if t.pointee.prev != prev {
                    return InvariantViolation(message: "MCache.I1b: retired list links", address: t.pointee.startAddr)
                }
                prev = t
                if t.spanClass.raw != UInt8(spc) || t == cache.pointee.alloc[spc]
                    || t.pointee.location.load(ordering: .relaxed) != SpanLocation.cached(h.proc(p))
                    || t.pointee.state.load(ordering: .relaxed) != SpanState.inUse.rawValue {
                    return InvariantViolation(message: "MCache.I1b: retired span has the wrong class, location or state", address: t.pointee.startAddr)
                }
                n &+= 1
                r = t.pointee.next
            }
            if n != cache.pointee.retired[spc].count || n > MCache.maxRetired {
                return InvariantViolation(message: "MCache.I1b: retired count", address: UInt(n))
            }
            var t = cache.pointee.retired[spc].first
            while let span = t {
                retiredPages &+= span.pointee.npages
                t = span.pointee.next
            }
            let s = cache.pointee.alloc[spc]
            if s == h.pointee.emptySpan { continue }
            if s.spanClass.raw != UInt8(spc)
                || s.pointee.location.load(ordering: .relaxed) != SpanLocation.cached(h.proc(p))
                || s.pointee.state.load(ordering: .relaxed) != SpanState.inUse.rawValue {
                return InvariantViolation(message: "MCache.I1: cached span has the wrong class, location or state", address: s.pointee.startAddr)
            }
        }
        // The tiny allocator: its span is a tiny one this P caches; its open block, if any,
        // is an allocated block of a tiny span with OPEN set (Tiny I1).
        let ts = cache.pointee.tinySpan
        if ts != h.pointee.emptySpan
            && (!ts.isTiny || ts.pointee.location.load(ordering: .relaxed) != SpanLocation.cached(h.proc(p))) {
            return InvariantViolation(message: "MCache: tinySpan is not a tiny span cached by this P", address: ts.pointee.startAddr)
        }
        if cache.pointee.tiny != 0 {
            let t = cache.pointee.tiny
            let s = cache.pointee.tinySpanOfOpen
            guard h.spanOf(t) == s, s.isTiny, s.isLive(s.objIndex(t)),
                  s.tinyRecord(s.objIndex(t)).pointee.load(ordering: .relaxed) & TinyRecord.open != 0,
                  cache.pointee.tinyOffset <= tinyBlockSize else {
                return InvariantViolation(message: "Tiny.I1: the open block is not an open block of a tiny span", address: t)
            }
            openTinyBlocks &-= 1
        }
        // Recent frees: objects of spans this P caches, marked free, each once.
        for c in 2..<numSpanClasses {
            let count = cache.recentCount(c)
            if count > MCache.recentCapacity || !cache.recentRingIsContiguous(c) {
                return InvariantViolation(message: "MCache.I3: recent-free count", address: UInt(count))
            }
            for k in 0..<count {
                let e = cache.recentFree(c, k)
                guard let s = h.spanOf(e.addr) else {
                    return InvariantViolation(message: "MCache.I3: recent free outside the heap", address: e.addr)
                }
                let i = s.objIndex(e.addr)
                let bit = UInt64(1) << UInt64(i & 63)
                if s.pointee.location.load(ordering: .relaxed) != SpanLocation.cached(h.proc(p))
                    || s.spanClass.index != c || s.isTiny || i >= s.nelems
                    || e.addr != s.pointee.startAddr &+ UInt(bitPattern: i &* s.elemSize)
                    || e.bit != RecentFree.bitAddress(s, i)
                    || s.freeBits[i >> 6] & bit == 0 {
                    return InvariantViolation(message: "MCache.I3: recent free not a freed object of a span of this P", address: e.addr)
                }
                for j in 0..<k where cache.recentFree(c, j).addr == e.addr {
                    return InvariantViolation(message: "MCache.I3: recent free listed twice", address: e.addr)
                }
            }
        }
        if retiredPages != cache.pointee.retiredPages || retiredPages > MCache.maxRetiredPages {
            return InvariantViolation(message: "MCache.I1b: retired pages", address: UInt(retiredPages))
        }
    }
    if mcaches != h.locked.pointee.mcachesCreated || mcaches > h.pointee.nprocs {
        return InvariantViolation(message: "Proc.I2: mcache count", address: UInt(mcaches))
    }
    if openTinyBlocks != 0 {
        return InvariantViolation(message: "Tiny.I1: OPEN set on a block no mcache holds open", address: UInt(bitPattern: openTinyBlocks))
    }
    // Statistics recounted the slow way (the world is stopped: the counters are exact).
    var counted: UInt64 = h.locked.pointee.largeAllocBytes &- h.locked.pointee.largeFreeBytes
    var tinyLive = 0
    for p in 0..<h.pointee.nprocs {
        let slot = h.proc(p)
        for spc in 2..<numSpanClasses {
            counted &+= (slot.mallocs[spc] &- slot.freeCount(spc)) &* UInt64(h.pointee.sizeClasses.classToSize[spc >> 1])
        }
        let t = slot.tinyCounters
        counted &+= (t[TinyCounter.blockAllocs.rawValue] &- t[TinyCounter.blockFrees.rawValue]) &* UInt64(tinyBlockSize)
        tinyLive &+= Int(truncatingIfNeeded: t[TinyCounter.allocs.rawValue] &- t[TinyCounter.frees.rawValue])
    }
    if tinyLive != liveTinyObjects {
        return InvariantViolation(message: "Tiny.I4: packed objects counted differ from the records", address: UInt(bitPattern: liveTinyObjects))
    }
    if liveLargeBytes != h.locked.pointee.largeAllocBytes &- h.locked.pointee.largeFreeBytes {
        return InvariantViolation(message: "MemStats: large bytes differ from the large spans", address: UInt(liveLargeBytes))
    }
    if counted != liveSmallBytes &+ liveLargeBytes {
        return InvariantViolation(message: "MemStats.I3: HeapAlloc differs from the live objects recounted", address: UInt(liveSmallBytes &+ liveLargeBytes))
    }
    // The page allocator checks its own summaries against its bitmaps (aborts on failure).
    h.locked.pointee.pages.checkInvariants()
    return nil
}


/// PageCache.I1-I4: each cached page allocated in the page allocator, mapped to no span,
/// in one cache only; scav within cache; windows aligned; metadata lists bounded.
private func checkPageCaches(_ h: UnsafeMutablePointer<MHeap>) -> InvariantViolation? {
    for p in 0..<h.pointee.nprocs {
        let pc = h.proc(p).pageCache
        let cache = pc.pointee.cacheWord.load(ordering: .relaxed)
        let base = pc.pointee.baseWord.load(ordering: .relaxed)
        if pc.pointee.scav & ~cache != 0 {
            return InvariantViolation(message: "PageCache.I2: scavenged bit of a page not cached", address: base)
        }
        if cache != 0 && base & UInt(pageCachePages &* pageSize &- 1) != 0 {
            return InvariantViolation(message: "PageCache.I3: window not 64-page aligned", address: base)
        }
        for i in 0..<pageCachePages where cache & (UInt64(1) << UInt64(i)) != 0 {
            let addr = base &+ UInt(i &* pageSize)
            if !h.locked.pointee.pages.isAllocated(addr) {
                return InvariantViolation(message: "PageCache.I1: cached page free in the page allocator", address: addr)
            }
            if let s = h.spanOf(addr), s != h.pointee.tombstone {
                return InvariantViolation(message: "PageCache.I1: cached page maps to a span", address: addr)
            }
            for q in 0..<p where h.proc(q).pageCache.holds(addr) {
                return InvariantViolation(message: "PageCache.I1: page in two page caches", address: addr)
            }
        }
        for k in 0..<5 {
            var n = 0
            var b = pc.pointee.spanBlocks[k]
            while let blk = b {
                n &+= 1
                if n > PageCache.spanBlockBatch {
                    return InvariantViolation(message: "PageCache.I4: span metadata list too long", address: UInt(bitPattern: blk))
                }
                b = blk.load(as: UnsafeMutableRawPointer?.self)
            }
        }
    }
    return nil
}

private func checkSpan(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>) -> InvariantViolation? {
    if s.pointee.startAddr & UInt(pageMask) != 0 {
        return InvariantViolation(message: "MSpan.I1: span start not page-aligned", address: s.pointee.startAddr)
    }
    let c = s.spanClass.sizeClass
    if c == 0 { return nil }
    let size = Int(h.pointee.sizeClasses.classToSize[c])
    if s.elemSize != size || s.nelems != s.pointee.npages &* pageSize / size {
        return InvariantViolation(message: "MSpan.I2: nelems or elemSize disagree with the class", address: s.pointee.startAddr)
    }
    if s.freeIndex < 0 || s.freeIndex > s.nelems {
        return InvariantViolation(message: "MSpan.I2: freeIndex out of range", address: s.pointee.startAddr)
    }
    // allocCount == objects below freeIndex or marked in allocBits.
    var allocated = 0
    for w in 0..<s.bitmapWords
    where s.allocBits[w] & MSpan.tailMask(word: w, nelems: s.nelems)
        != MSpan.tailMask(word: w, nelems: s.nelems) {
        return InvariantViolation(message: "MSpan.I3b: allocBits past nelems not set", address: s.pointee.startAddr)
    }
    for i in 0..<s.nelems {
        let bit = UInt64(1) << UInt64(i & 63)
        if i < s.freeIndex || s.allocBits[i >> 6] & bit != 0 { allocated &+= 1 }
        let inFree = s.freeBits[i >> 6] & bit != 0
        let inRemote = s.remoteWord(i >> 6).pointee.load(ordering: .relaxed) & bit != 0
        if inFree && inRemote {
            return InvariantViolation(message: "MSpan.I5: object freed both locally and remotely", address: s.pointee.startAddr)
        }
    }
    if allocated != s.allocCount {
        return InvariantViolation(message: "MSpan: allocCount differs from the bitmap", address: s.pointee.startAddr)
    }
    // allocCache mirrors allocBits from freeIndex on (within its word): exactly, or a subset
    // while heap profiling budgets the fast path (and 0 on a word boundary).
    let fi = s.freeIndex
    if fi < s.nelems {
        let word = ~s.allocBits[fi >> 6] >> UInt64(fi & 63)
        let cache = s.pointee.allocCache
        let valid = 64 - (fi & 63)
        let mask: UInt64 = valid >= 64 ? ~0 : (UInt64(1) << UInt64(valid)) &- 1
        if cache & mask & ~word != 0 {
            return InvariantViolation(message: "MSpan.I3: allocCache differs from allocBits", address: s.pointee.startAddr)
        }
    }
    return nil
}

/// Tiny.I1 and I3 for one tiny span: a block is allocated iff its record has a live
/// sub-object or OPEN. Adds its live sub-objects to `live` and its open blocks to `open`.
private func checkTinySpan(_ s: UnsafeMutablePointer<MSpan>, live: inout Int, open: inout Int) -> InvariantViolation? {
    for i in 0..<s.nelems {
        let v = s.tinyRecord(i).pointee.load(ordering: .relaxed)
        let addr = s.pointee.startAddr &+ UInt(i &* tinyBlockSize)
        if s.isLive(i) == TinyRecord.isDead(v) {
            return InvariantViolation(message: "Tiny.I1: a block's record and its bitmaps disagree", address: addr)
        }
        if v & TinyRecord.open != 0 { open &+= 1 }
        live &+= TinyRecord.liveCount(v)
    }
    return nil
}

// MARK: - Stacks (Stack.swift I1-I5)

/// What the page walk and the lists found of the stack allocator.
private struct StackRecount {
    var pages = 0
    var liveBytes = 0
    var poolFreeBytes = InlineArray<4, Int>(repeating: 0)
    var poolSpans = InlineArray<4, Int>(repeating: 0)
    var largeOnLists = 0
}

/// Stack.I1-I3 for one stack span found by the page walk.
private func checkStackSpan(_ h: UnsafeMutablePointer<MHeap>, _ s: UnsafeMutablePointer<MSpan>,
                            _ r: inout StackRecount) -> InvariantViolation? {
    let size = s.stackSize
    let n = s.nelems
    if size < fixedStack || size > maxStackSize || size & (size &- 1) != 0 || s.spanClass.raw != 0
        || n < 1 || n &* size != s.pointee.npages &* pageSize || s.bitmapWords != 1
        || (size < stackCacheSize) != (s.pointee.npages &* pageSize == stackCacheSize && n > 1) {
        return InvariantViolation(message: "Stack.I1: a stack span's size, count or class", address: s.pointee.startAddr)
    }
    let mask = n == 64 ? ~UInt64(0) : (UInt64(1) << UInt64(n)) &- 1
    let live = s.stackLiveWord.pointee.load(ordering: .relaxed)
    let free = s.freeBits[0]
    if live & free != 0 || (live | free) & ~mask != 0 || s.remoteBits[0] != 0 {
        return InvariantViolation(message: "Stack.I2: a stack both live and free in its pool, or bits past the span", address: s.pointee.startAddr)
    }
    if size >= stackCacheSize && free != 0 {
        return InvariantViolation(message: "Stack.I2: a large stack span with pool bits", address: s.pointee.startAddr)
    }
    if free == mask && size < stackCacheSize {
        return InvariantViolation(message: "Stack.I3: a pool span with every stack free", address: s.pointee.startAddr)
    }
    r.pages &+= s.pointee.npages
    r.liveBytes &+= live.nonzeroBitCount &* size
    if size < stackCacheSize {
        let order = (size >> 11).trailingZeroBitCount
        r.poolFreeBytes[order] &+= free.nonzeroBitCount &* size
        if free != 0 { r.poolSpans[order] &+= 1 }
    }
    return nil
}

/// Stack.I2-I5 for the pools, stackLarge and the Ps' stack caches (the world is stopped,
/// with the stack locks), then the sum of I4 against the counters.
private func checkStackLists(_ h: UnsafeMutablePointer<MHeap>, _ r: inout StackRecount) -> InvariantViolation? {
    for o in 0..<numStackOrders {
        let pool = h.stackPool(o)
        var n = 0
        var s = pool.spans.pointee.first
        while let span = s {
            if !span.isStack || span.stackSize != fixedStack << o || span.freeBits[0] == 0 {
                return InvariantViolation(message: "Stack.I3: a span on stackpool of the wrong order or with no free stack", address: span.pointee.startAddr)
            }
            n &+= 1
            s = span.pointee.next
        }
        if n != r.poolSpans[o] || n != pool.spans.pointee.count {
            return InvariantViolation(message: "Stack.I3: stackpool lists differ from the spans with free stacks", address: UInt(n))
        }
        if pool.pointee.freeBytes.load(ordering: .relaxed) != r.poolFreeBytes[o] {
            return InvariantViolation(message: "Stack.I4: stackpool freeBytes differs from the spans' bits", address: UInt(r.poolFreeBytes[o]))
        }
    }
    let large = h.stackLarge
    var largeBytes = 0
    for i in 0..<stackLargeLists {
        var s = large.freeList(i).pointee.first
        while let span = s {
            if !span.isStack || span.pointee.npages != 1 << i || span.nelems != 1
                || span.stackLiveWord.pointee.load(ordering: .relaxed) != 0 {
                return InvariantViolation(message: "Stack.I2: a span on stackLarge of the wrong size, or live", address: span.pointee.startAddr)
            }
            largeBytes &+= span.stackSize
            s = span.pointee.next
        }
    }
    if largeBytes != large.pointee.bytes.load(ordering: .relaxed) || largeBytes > stackLargeRetainBytes {
        return InvariantViolation(message: "Stack.I4: stackLarge bytes differ from its lists, or exceed the budget", address: UInt(largeBytes))
    }
    var cached = 0
    var cachedCounted = 0
    var live: UInt64 = 0
    for p in 0..<h.pointee.nprocs {
        let slot = h.proc(p)
        let c = slot.stackCounters
        live &+= c[StackCounter.allocBytes.rawValue] &- c[StackCounter.freeBytes.rawValue]
        cachedCounted &+= Int(truncatingIfNeeded: c[StackCounter.cachedBytes.rawValue])
        guard let cache = slot.mcache else { continue }
        for o in 0..<numStackOrders {
            let size = fixedStack << o
            let count = cache.pointee.stackCache[o].count
            if count < 0 || count > stackCacheCapacity || count &* size > stackCacheSize {
                return InvariantViolation(message: "Stack.I5: a stack cache over its budget", address: UInt(bitPattern: count))
            }
            for k in 0..<count {
                let x = cache.pointee.stackCache[o].entries[k]
                guard let s = h.spanOf(x), s.isStack, s.stackSize == size,
                      (x &- s.pointee.startAddr) & UInt(size &- 1) == 0 else {
                    return InvariantViolation(message: "Stack.I2: a cached stack that is not a stack of its order", address: x)
                }
                let bit = UInt64(1) << UInt64((x &- s.pointee.startAddr) >> UInt(size.trailingZeroBitCount))
                if (s.stackLiveWord.pointee.load(ordering: .relaxed) | s.freeBits[0]) & bit != 0 {
                    return InvariantViolation(message: "Stack.I2: a cached stack that is also live or free in its pool", address: x)
                }
            }
            cached &+= count &* size
        }
    }
    if cached != cachedCounted {
        return InvariantViolation(message: "Stack.I4: the Ps' cached-bytes counters differ from their caches", address: UInt(cached))
    }
    if live != UInt64(r.liveBytes) {
        return InvariantViolation(message: "Stack.I4: stack bytes counted live differ from the live bits", address: UInt(r.liveBytes))
    }
    var poolFree = 0
    for o in 0..<numStackOrders { poolFree &+= r.poolFreeBytes[o] }
    // Every stack is in exactly one place (I2): duplicates in the caches would overcount.
    if r.pages &* pageSize != r.liveBytes &+ cached &+ poolFree &+ largeBytes {
        return InvariantViolation(message: "Stack.I4: stack pages differ from live + cached + pool free + stackLarge", address: UInt(r.pages))
    }
    return nil
}
