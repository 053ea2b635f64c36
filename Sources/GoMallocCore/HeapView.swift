// HeapView.swift — a stopped-world picture of the heap for people studying it (`gomalloc heap`).
//
// Role: walk the arenas, the page map, the mcaches and the mcentrals and report what is where:
//   arenas, page states (in a span, free resident, released), and for each span class its
//   spans by location (allocating in an mcache, retired in an mcache, on the partial or full
//   list) with live and total objects. Only the hosted build has it (it returns Swift arrays).
// Go counterpart: none (Go has runtime/debug and GODEBUG traces, not a heap view).
// Invariants:
//   I1. The view is taken with the world stopped (every P, every mcentral, the heap lock, in
//       lock order), so its counts are consistent with each other.
// Concurrency: stops the world (Proc.swift); safe while other threads allocate.
// Failure: none; an uninitialised heap gives an empty view.

#if GOMALLOC_HOSTED
import Synchronization

package struct HeapView {
    package struct ClassRow {
        package var spanClass = 0
        package var size = 0
        package var spans = 0
        package var allocating = 0
        package var retired = 0
        package var partial = 0
        package var full = 0
        package var liveObjects = 0
        package var totalObjects = 0
        package var pages = 0
    }

    package var arenaBases: [UInt] = []
    package var committedPages = 0
    package var inUsePages = 0
    package var freePages = 0
    package var releasedPages = 0
    package var largeSpans = 0
    package var largePages = 0
    /// Stack spans (Stack.swift) and their pages (part of inUsePages).
    package var stackSpans = 0
    package var stackPages = 0
    package var classes: [ClassRow] = []
    /// One character per page of the first `mapPages` pages of the lowest arena:
    /// 's' small-object span, 'L' large span, 'M' manual (stack) span, '.' free, 'r' free and released,
    /// ' ' not committed.
    package var pageMap: [UInt8] = []
}

package func takeHeapView(mapPages: Int) -> HeapView {
    var v = HeapView()
    guard let h = theHeap() else { return v }
    h.stopTheWorld()
    defer { h.startTheWorld() }
    var rows = (0..<numSpanClasses).map { i -> HeapView.ClassRow in
        var r = HeapView.ClassRow()
        r.spanClass = i
        r.size = Int(h.pointee.sizeClasses.classToSize[i >> 1])
        return r
    }
    // Which spans are retired in an mcache (the rest cached there are allocating).
    var retired = Set<UInt>()
    for p in 0..<h.pointee.nprocs {
        guard let cache = h.proc(p).mcache else { continue }
        for spc in 0..<numSpanClasses {
            var r = cache.pointee.retired[spc].first
            while let t = r { retired.insert(UInt(bitPattern: t)); r = t.pointee.next }
        }
    }
    for ai in h.registeredArenaIndices {
        guard let table = h.pointee.arenaMap[ai] else { continue }
        let base = UInt(ai) << UInt(logHeapArenaBytes)
        v.arenaBases.append(base)
        for pg in 0..<pagesPerArena {
            guard let s = table[pg], s != h.pointee.tombstone else { continue }
            let addr = base &+ UInt(pg &* pageSize)
            if addr != s.pointee.startAddr { continue }
            let state = s.pointee.state.load(ordering: .relaxed)
            if s.isStack && state == SpanState.manual.rawValue {
                v.stackSpans += 1
                v.stackPages += s.pointee.npages
                continue
            }
            if state != SpanState.inUse.rawValue { continue }
            let spc = s.spanClass
            if spc.sizeClass == 0 {
                v.largeSpans += 1
                v.largePages += s.pointee.npages
                continue
            }
            var r = rows[spc.index]
            r.spans += 1
            r.pages += s.pointee.npages
            r.totalObjects += s.nelems
            r.liveObjects += s.liveObjectsSlow()
            let loc = s.pointee.location.load(ordering: .relaxed)
            if loc == SpanLocation.partial || loc == SpanLocation.empty { r.partial += 1 }
            else if loc == SpanLocation.full { r.full += 1 }
            else if retired.contains(UInt(bitPattern: s)) { r.retired += 1 }
            else { r.allocating += 1 }
            rows[spc.index] = r
        }
    }
    v.classes = rows.filter { $0.spans > 0 }
    v.committedPages = h.locked.pointee.pages.totalPages
    // Pages held by page caches are free (the page allocator counts them allocated).
    v.inUsePages = h.pagesInUse &+ h.locked.pointee.stackPages
    // ...and so are the runs the scavenger is releasing (Scavenger.I3).
    v.freePages = h.locked.pointee.pages.freePages &+ h.cachedPages &+ h.locked.pointee.scavengeBatch.totalPages
    v.releasedPages = h.locked.pointee.pages.scavengedPages
    if let first = v.arenaBases.min() {
        for pg in 0..<min(mapPages, pagesPerArena) {
            let addr = first &+ UInt(pg &* pageSize)
            if let s = h.spanOf(addr), s != h.pointee.tombstone,
               addr >= s.pointee.startAddr, addr < s.limit,
               s.pointee.state.load(ordering: .relaxed) != SpanState.free.rawValue {
                v.pageMap.append(s.isStack ? UInt8(ascii: "M") : s.spanClass.sizeClass == 0 ? UInt8(ascii: "L") : UInt8(ascii: "s"))
            } else if h.pageCachesHold(addr) {
                v.pageMap.append(UInt8(ascii: "."))  // free, held by a P's page cache
            } else if h.locked.pointee.pages.isAllocated(addr) {
                v.pageMap.append(UInt8(ascii: "L"))  // inner page of a large span (only its first is mapped)
            } else if h.locked.pointee.pages.isScavenged(addr) {
                v.pageMap.append(UInt8(ascii: "r"))
            } else if h.locked.pointee.pages.contains(addr) {
                v.pageMap.append(UInt8(ascii: "."))
            } else {
                v.pageMap.append(UInt8(ascii: " "))
            }
        }
    }
    return v
}
#endif
