// MemStats.swift — statistics with Go's MemStats names, gathered without allocating.
//
// Role: a snapshot of the heap (HeapAlloc, HeapSys, HeapIdle, HeapInuse, HeapReleased,
//   Mallocs, Frees, per-class counts, StackInuse and its parts, Ps and mcaches) for the Swift API, malloc_stats,
//   mallinfo2 and GOMALLOC_STATS, and its one-figure-per-line text form.
// Go counterpart: mstats.go (MemStats, readmemstats_m, updatememstats).
// Invariants:
//   I1. HeapIdle == HeapSys - HeapInuse; HeapReleased <= HeapIdle; HeapSys + StackInuse ==
//       the bytes committed for the heap; StackInuse == StackAlloc + StackCached +
//       StackPoolFree + StackLargeFree once the threads are quiet.
//   I2. Mallocs - Frees == live objects, summed over span classes, large objects and the
//       tiny allocator's packed objects (its blocks are heap bytes, not objects).
//   I3. With no thread inside malloc/free, HeapAlloc == the bytes of all live objects
//       (their size-class or page-rounded sizes), as recounted by checkInvariants.
// Concurrency: heap figures are read under the heap lock; per-P counters are relaxed atomic
//   loads of words their P's holder writes (exact once the threads are quiet).
// Failure: none; before the first allocation every figure is zero.
import CGoMallocSys
import Synchronization

package struct MemStatsSnapshot {
    package var heapAlloc: UInt64 = 0
    package var heapSys: UInt64 = 0
    package var heapIdle: UInt64 = 0
    package var heapInuse: UInt64 = 0
    package var heapReleased: UInt64 = 0
    package var heapObjects: UInt64 = 0
    /// Bytes of stack spans (Go's StackInuse: live stacks and the free ones in caches, pool
    /// spans and stackLarge); not in HeapSys or HeapInuse. StackSys is the same figure
    /// (every stack comes from the heap's arenas; Go adds stacks obtained from the OS).
    package var stackInuse: UInt64 = 0
    package var stackSys: UInt64 = 0
    /// Its parts (Stack.swift I4): stacks handed out and not freed, free stacks in the Ps'
    /// stack caches, in stackpool spans, and waiting on stackLarge.
    package var stackAlloc: UInt64 = 0
    package var stackCached: UInt64 = 0
    package var stackPoolFree: UInt64 = 0
    package var stackLargeFree: UInt64 = 0
    /// Stacks allocated and freed.
    package var stackAllocs: UInt64 = 0
    package var stackFrees: UInt64 = 0
    /// Metadata obtained from the OS (spans, caches, bitmaps, arena map, page tables, summaries).
    package var metadataSys: UInt64 = 0
    package var mallocs: UInt64 = 0
    package var frees: UInt64 = 0
    package var largeMallocs: UInt64 = 0
    package var largeFrees: UInt64 = 0
    package var largeAllocBytes: UInt64 = 0
    package var nprocs: Int = 0
    /// How many of the Ps are bound to CPUs (rseq; 0 = all taken by compare-and-swap).
    package var cpuProcs: Int = 0
    package var mcaches: Int = 0
    package var arenas: Int = 0
    package var classMallocs: InlineArray<68, UInt64> = InlineArray(repeating: 0)
    package var classFrees: InlineArray<68, UInt64> = InlineArray(repeating: 0)
    package var classSize: InlineArray<68, UInt32> = InlineArray(repeating: 0)
    /// The noscan part of classMallocs / classFrees (the rest is scan).
    package var classNoscanMallocs: InlineArray<68, UInt64> = InlineArray(repeating: 0)
    package var classNoscanFrees: InlineArray<68, UInt64> = InlineArray(repeating: 0)
    /// Small-object bytes in use by span class kind: scan, and noscan with the tiny blocks
    /// (heapAlloc = both + largeAllocBytes).
    package var heapAllocScan: UInt64 = 0
    package var heapAllocNoscan: UInt64 = 0
    /// The tiny allocator (Tiny.swift): packed objects allocated and freed (part of mallocs
    /// and frees; not in the class counts), and its 16-byte blocks in use (in heapAlloc and
    /// heapAllocNoscan; heapObjects counts the packed objects, not the blocks).
    package var tinyAllocs: UInt64 = 0
    package var tinyFrees: UInt64 = 0
    package var tinyBlocksInUse: UInt64 = 0

    package init() {}
}

/// Gather the statistics. Takes the heap lock briefly; holds no P.
package func readMemStats() -> MemStatsSnapshot {
    var m = MemStatsSnapshot()
    guard let h = theHeap() else { return m }
    h.pointee.lock.lock()
    let stackBytes = UInt64(h.locked.pointee.stackPages &* pageSize)
    let heapSys = UInt64(h.locked.pointee.heapSys) &- stackBytes
    let inUse = UInt64(h.pagesInUse &* pageSize)
    m.heapReleased = UInt64(h.locked.pointee.pages.scavengedPages &* pageSize)
    m.largeMallocs = h.locked.pointee.largeAllocCount
    m.largeFrees = h.locked.pointee.largeFreeCount
    m.largeAllocBytes = h.locked.pointee.largeAllocBytes &- h.locked.pointee.largeFreeBytes
    m.mcaches = h.locked.pointee.mcachesCreated
    m.arenas = h.locked.pointee.arenas.count
    m.metadataSys = UInt64(h.locked.pointee.persistent.sys &+ h.locked.pointee.arenas.metadataBytes)
    h.pointee.lock.unlock()

    let st = h.readStackStats()
    m.stackInuse = stackBytes
    m.stackSys = stackBytes
    m.stackAlloc = st.liveBytes
    m.stackCached = st.cachedBytes
    m.stackPoolFree = st.poolFreeBytes
    m.stackLargeFree = st.largeFreeBytes
    m.stackAllocs = st.allocs
    m.stackFrees = st.frees
    m.nprocs = h.pointee.nprocs
    m.cpuProcs = h.pointee.cpuProcs
    m.heapSys = heapSys
    m.heapInuse = inUse
    m.heapIdle = m.heapSys &- m.heapInuse
    for c in 0..<numSizeClasses { m.classSize[c] = h.pointee.sizeClasses.classToSize[c] }
    var tinyBlockAllocs: UInt64 = 0, tinyBlockFrees: UInt64 = 0
    for i in 0..<h.pointee.nprocs {
        let p = h.proc(i)
        for spc in 2..<numSpanClasses {
            let c = spc >> 1
            let n = p.mallocs[spc], f = p.frees[spc]
            m.classMallocs[c] &+= n
            m.classFrees[c] &+= f
            if spc & 1 != 0 {
                m.classNoscanMallocs[c] &+= n
                m.classNoscanFrees[c] &+= f
            }
        }
        m.tinyAllocs &+= p.tinyCounters[TinyCounter.allocs.rawValue]
        m.tinyFrees &+= p.tinyCounters[TinyCounter.frees.rawValue]
        tinyBlockAllocs &+= p.tinyCounters[TinyCounter.blockAllocs.rawValue]
        tinyBlockFrees &+= p.tinyCounters[TinyCounter.blockFrees.rawValue]
    }
    m.tinyBlocksInUse = tinyBlockAllocs &- tinyBlockFrees
    m.classMallocs[0] = m.largeMallocs
    m.classFrees[0] = m.largeFrees
    m.mallocs = m.tinyAllocs
    m.frees = m.tinyFrees
    m.heapAllocNoscan = m.tinyBlocksInUse &* UInt64(tinyBlockSize)
    for c in 0..<numSizeClasses {
        m.mallocs &+= m.classMallocs[c]
        m.frees &+= m.classFrees[c]
        if c == 0 { continue }
        let size = UInt64(m.classSize[c])
        let noscanLive = m.classNoscanMallocs[c] &- m.classNoscanFrees[c]
        m.heapAllocNoscan &+= noscanLive &* size
        m.heapAllocScan &+= (m.classMallocs[c] &- m.classFrees[c] &- noscanLive) &* size
    }
    m.heapAlloc = m.largeAllocBytes &+ m.heapAllocScan &+ m.heapAllocNoscan
    m.heapObjects = m.mallocs &- m.frees
    return m
}

private func statLine(_ fd: Int32, _ name: StaticString, _ value: UInt64) {
    var line = ReportLine()
    line.append(name)
    line.append(": ")
    line.append(decimal: UInt(value))
    line.write(to: fd)
}

/// The text form: one figure per line, Go's names; then per-class counts for classes used.
package func printMemStats(fd: Int32) {
    let m = readMemStats()
    var head = ReportLine()
    head.append("gomalloc: statistics")
    head.write(to: fd)
    statLine(fd, "HeapAlloc", m.heapAlloc)
    statLine(fd, "HeapAllocScan", m.heapAllocScan)
    statLine(fd, "HeapAllocNoscan", m.heapAllocNoscan)
    statLine(fd, "HeapSys", m.heapSys)
    statLine(fd, "HeapIdle", m.heapIdle)
    statLine(fd, "HeapInuse", m.heapInuse)
    statLine(fd, "HeapReleased", m.heapReleased)
    statLine(fd, "HeapObjects", m.heapObjects)
    statLine(fd, "StackInuse", m.stackInuse)
    statLine(fd, "StackSys", m.stackSys)
    statLine(fd, "StackAlloc", m.stackAlloc)
    statLine(fd, "StackCached", m.stackCached)
    statLine(fd, "StackPoolFree", m.stackPoolFree)
    statLine(fd, "StackLargeFree", m.stackLargeFree)
    statLine(fd, "StackAllocs", m.stackAllocs)
    statLine(fd, "StackFrees", m.stackFrees)
    statLine(fd, "MetadataSys", m.metadataSys)
    statLine(fd, "Mallocs", m.mallocs)
    statLine(fd, "Frees", m.frees)
    statLine(fd, "TinyAllocs", m.tinyAllocs)
    statLine(fd, "TinyFrees", m.tinyFrees)
    statLine(fd, "TinyBlocks", m.tinyBlocksInUse)
    statLine(fd, "Ps", UInt64(m.nprocs))
    statLine(fd, "CPUPs", UInt64(m.cpuProcs))
    statLine(fd, "mcaches", UInt64(m.mcaches))
    for c in 0..<numSizeClasses where m.classMallocs[c] != 0 {
        var line = ReportLine()
        line.append("class ")
        line.append(decimal: c)
        if c == 0 {
            line.append(" (large)")
        } else {
            line.append(" (")
            line.append(decimal: UInt(m.classSize[c]))
            line.append(" B)")
        }
        line.append(": Mallocs ")
        line.append(decimal: UInt(m.classMallocs[c]))
        line.append(" Frees ")
        line.append(decimal: UInt(m.classFrees[c]))
        if c != 0 {
            line.append(" (noscan Mallocs ")
            line.append(decimal: UInt(m.classNoscanMallocs[c]))
            line.append(" Frees ")
            line.append(decimal: UInt(m.classNoscanFrees[c]))
            line.append(")")
        }
        line.write(to: fd)
    }
}

// MARK: - GOMALLOC_STATS: the summary at exit

private let statsRegistered = Atomic<Bool>(false)
/// A private copy of stderr taken at registration: programs (coreutils) close fd 2 in their
/// own exit handlers, which run before ours.
private let statsFD = Atomic<Int32>(2)
/// With GOMALLOC_STATS=<pid>, the one process that reports (forked children inherit the
/// exit handler and must stay quiet); 0: every process.
private let statsPID = Atomic<Int>(0)

/// With GOMALLOC_STATS=1 (or this process's pid), print the statistics at exit, once per
/// process. Called at library load and after the heap is set up; atexit may call malloc,
/// so never with an allocator lock held.
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
