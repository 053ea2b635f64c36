// MemStats.swift — statistics with Go's MemStats names, gathered without allocating.
//
// Role: a snapshot of the heap (HeapAlloc, HeapSys, HeapIdle, HeapInuse, HeapReleased,
//   Mallocs, Frees, per-class counts, StackInuse and its parts, Ps and mcaches, the
//   scavenger's released bytes, its thread, the memory limit and its hits) for the Swift API, malloc_stats, mallinfo2, malloc_info and
//   GOMALLOC_STATS; its text form (one figure per line, then a per-class table), its JSON
//   form (gomalloc_stats_json, GOMALLOC_STATS=json) and glibc's malloc_info XML, each
//   formatted without allocating.
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
    /// Bytes the scavenger has returned to the OS so far (cumulative; pages freed already
    /// released, such as a large realloc's moved pages, are not counted).
    package var scavengedBytes: UInt64 = 0
    /// The part of scavengedBytes the background thread released (BackgroundScavenger.swift).
    package var backgroundScavengedBytes: UInt64 = 0
    /// Whether the background scavenger thread runs (0 or 1).
    package var scavengerThread: UInt64 = 0
    /// GOMALLOC_MEMORY_LIMIT in bytes (0: none), and how many times the resident heap went
    /// past it.
    package var memoryLimit: UInt64 = 0
    package var memoryLimitHits: UInt64 = 0

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
    m.scavengedBytes = UInt64(h.locked.pointee.pages.scavengedTotal &* pageSize)
    m.backgroundScavengedBytes = UInt64(h.locked.pointee.backgroundScavengedTotal &* pageSize)
    m.memoryLimitHits = h.locked.pointee.memoryLimitHits
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
    m.memoryLimit = UInt64(h.pointee.memoryLimitPages &* pageSize)
    m.scavengerThread = scavengerThreadRunning ? 1 : 0
    m.heapSys = heapSys
    m.heapInuse = inUse
    m.heapIdle = m.heapSys &- m.heapInuse
    for c in 0..<numSizeClasses { m.classSize[c] = h.pointee.sizeClasses.classToSize[c] }
    var tinyBlockAllocs: UInt64 = 0, tinyBlockFrees: UInt64 = 0
    for i in 0..<h.pointee.nprocs {
        let p = h.proc(i)
        for spc in 2..<numSpanClasses {
            let c = spc >> 1
            let n = p.mallocs[spc], f = p.freeCount(spc)
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

/// A byte figure: the exact number, then from 1 KiB on the readable size in parentheses
/// (`HeapAlloc: 123456 (120.5 KiB)`). Parsers read the number up to the space.
private func byteLine(_ fd: Int32, _ name: StaticString, _ value: UInt64) {
    var line = ReportLine()
    line.append(name)
    line.append(": ")
    line.append(decimal: UInt(value))
    if value >= 1024 {
        line.append(" (")
        appendReadableBytes(&line, value)
        line.append(")")
    }
    line.write(to: fd)
}

/// `value` in B, KiB, MiB or GiB with one decimal (truncated).
private func appendReadableBytes(_ line: inout ReportLine, _ value: UInt64) {
    if value < 1 << 10 {
        line.append(decimal: UInt(value))
        line.append(" B")
    } else if value < 1 << 20 {
        line.append(fixed: UInt(value), scale: 1 << 10, places: 1)
        line.append(" KiB")
    } else if value < 1 << 30 {
        line.append(fixed: UInt(value), scale: 1 << 20, places: 1)
        line.append(" MiB")
    } else {
        line.append(fixed: UInt(value), scale: 1 << 30, places: 1)
        line.append(" GiB")
    }
}

/// Append `value` right-aligned so that it ends at column `end`, after at least one space.
private func appendColumn(_ line: inout ReportLine, _ value: UInt64, endingAt end: Int) {
    var digits = 1
    var x = value
    while x >= 10 { x /= 10; digits += 1 }
    line.appendByte(0x20)
    line.padTo(end - digits)
    line.append(decimal: UInt(value))
}

/// The text form: one figure per line, Go's names (byte figures with their readable size
/// after the exact number); then a table of the per-class counts for the classes used.
package func printMemStats(fd: Int32) {
    let m = readMemStats()
    var head = ReportLine()
    head.append("gomalloc: statistics")
    head.write(to: fd)
    byteLine(fd, "HeapAlloc", m.heapAlloc)
    byteLine(fd, "HeapAllocScan", m.heapAllocScan)
    byteLine(fd, "HeapAllocNoscan", m.heapAllocNoscan)
    byteLine(fd, "HeapSys", m.heapSys)
    byteLine(fd, "HeapIdle", m.heapIdle)
    byteLine(fd, "HeapInuse", m.heapInuse)
    byteLine(fd, "HeapReleased", m.heapReleased)
    statLine(fd, "HeapObjects", m.heapObjects)
    byteLine(fd, "StackInuse", m.stackInuse)
    byteLine(fd, "StackSys", m.stackSys)
    byteLine(fd, "StackAlloc", m.stackAlloc)
    byteLine(fd, "StackCached", m.stackCached)
    byteLine(fd, "StackPoolFree", m.stackPoolFree)
    byteLine(fd, "StackLargeFree", m.stackLargeFree)
    statLine(fd, "StackAllocs", m.stackAllocs)
    statLine(fd, "StackFrees", m.stackFrees)
    byteLine(fd, "MetadataSys", m.metadataSys)
    byteLine(fd, "ScavengerReleased", m.scavengedBytes)
    byteLine(fd, "ScavengerBackgroundReleased", m.backgroundScavengedBytes)
    statLine(fd, "ScavengerThread", m.scavengerThread)
    byteLine(fd, "MemoryLimit", m.memoryLimit)
    statLine(fd, "MemoryLimitHits", m.memoryLimitHits)
    statLine(fd, "Mallocs", m.mallocs)
    statLine(fd, "Frees", m.frees)
    statLine(fd, "TinyAllocs", m.tinyAllocs)
    statLine(fd, "TinyFrees", m.tinyFrees)
    statLine(fd, "TinyBlocks", m.tinyBlocksInUse)
    statLine(fd, "Ps", UInt64(m.nprocs))
    statLine(fd, "CPUPs", UInt64(m.cpuProcs))
    statLine(fd, "mcaches", UInt64(m.mcaches))
    // The per-class table: right-aligned columns ending at these columns.
    let cClass = 5, cSize = 12, cMallocs = 25, cFrees = 38, cLive = 51, cNoscanM = 66, cNoscanF = 81
    var any = false
    for c in 0..<numSizeClasses where m.classMallocs[c] != 0 {
        if !any {
            any = true
            var header = ReportLine()
            header.append("class")
            header.padTo(cSize - 4); header.append("size")
            header.padTo(cMallocs - 7); header.append("Mallocs")
            header.padTo(cFrees - 5); header.append("Frees")
            header.padTo(cLive - 4); header.append("Live")
            header.padTo(cNoscanM - 13); header.append("NoscanMallocs")
            header.padTo(cNoscanF - 11); header.append("NoscanFrees")
            header.write(to: fd)
        }
        var line = ReportLine()
        line.padTo(cClass - (c < 10 ? 1 : 2))
        line.append(decimal: c)
        if c == 0 {
            line.padTo(cSize - 5)
            line.append("large")
        } else {
            appendColumn(&line, UInt64(m.classSize[c]), endingAt: cSize)
        }
        appendColumn(&line, m.classMallocs[c], endingAt: cMallocs)
        appendColumn(&line, m.classFrees[c], endingAt: cFrees)
        appendColumn(&line, m.classMallocs[c] &- m.classFrees[c], endingAt: cLive)
        if c != 0 {
            appendColumn(&line, m.classNoscanMallocs[c], endingAt: cNoscanM)
            appendColumn(&line, m.classNoscanFrees[c], endingAt: cNoscanF)
        }
        line.write(to: fd)
    }
}

// MARK: - JSON

/// Append `,"name":value` (or `{"name":value` for the first field).
private func jsonField(_ t: inout TextBuffer, _ name: StaticString, _ value: UInt64, first: Bool = false) {
    t.appendByte(first ? 0x7B : 0x2C)
    t.appendByte(0x22)
    t.append(name)
    t.append("\":")
    t.append(decimal: value)
}

/// The statistics as one JSON object with Go's MemStats names (every figure of `m`, and
/// `BySize`: one {Size, Mallocs, Frees, NoscanMallocs, NoscanFrees} per size class, class 0
/// being the large objects), snprintf-style: writes at most `capacity - 1` bytes and a NUL
/// into `buffer` (nothing when `capacity` is 0) and returns the full length, NUL excluded.
/// No newline. Never allocates.
package func formatMemStatsJSON(_ m: MemStatsSnapshot, into buffer: UnsafeMutablePointer<UInt8>?, capacity: Int) -> Int {
    var t = TextBuffer(buffer, capacity: capacity)
    jsonField(&t, "HeapAlloc", m.heapAlloc, first: true)
    jsonField(&t, "HeapAllocScan", m.heapAllocScan)
    jsonField(&t, "HeapAllocNoscan", m.heapAllocNoscan)
    jsonField(&t, "HeapSys", m.heapSys)
    jsonField(&t, "HeapIdle", m.heapIdle)
    jsonField(&t, "HeapInuse", m.heapInuse)
    jsonField(&t, "HeapReleased", m.heapReleased)
    jsonField(&t, "HeapObjects", m.heapObjects)
    jsonField(&t, "StackInuse", m.stackInuse)
    jsonField(&t, "StackSys", m.stackSys)
    jsonField(&t, "StackAlloc", m.stackAlloc)
    jsonField(&t, "StackCached", m.stackCached)
    jsonField(&t, "StackPoolFree", m.stackPoolFree)
    jsonField(&t, "StackLargeFree", m.stackLargeFree)
    jsonField(&t, "StackAllocs", m.stackAllocs)
    jsonField(&t, "StackFrees", m.stackFrees)
    jsonField(&t, "MetadataSys", m.metadataSys)
    jsonField(&t, "ScavengerReleasedBytes", m.scavengedBytes)
    jsonField(&t, "ScavengerBackgroundReleasedBytes", m.backgroundScavengedBytes)
    jsonField(&t, "ScavengerThread", m.scavengerThread)
    jsonField(&t, "MemoryLimit", m.memoryLimit)
    jsonField(&t, "MemoryLimitHits", m.memoryLimitHits)
    jsonField(&t, "Mallocs", m.mallocs)
    jsonField(&t, "Frees", m.frees)
    jsonField(&t, "TinyAllocs", m.tinyAllocs)
    jsonField(&t, "TinyFrees", m.tinyFrees)
    jsonField(&t, "TinyBlocks", m.tinyBlocksInUse)
    jsonField(&t, "Ps", UInt64(m.nprocs))
    jsonField(&t, "CPUPs", UInt64(m.cpuProcs))
    jsonField(&t, "MCaches", UInt64(m.mcaches))
    jsonField(&t, "Arenas", UInt64(m.arenas))
    t.append(",\"BySize\":[")
    for c in 0..<numSizeClasses {
        if c != 0 { t.appendByte(0x2C) }
        jsonField(&t, "Size", UInt64(m.classSize[c]), first: true)
        jsonField(&t, "Mallocs", m.classMallocs[c])
        jsonField(&t, "Frees", m.classFrees[c])
        jsonField(&t, "NoscanMallocs", m.classNoscanMallocs[c])
        jsonField(&t, "NoscanFrees", m.classNoscanFrees[c])
        t.appendByte(0x7D)
    }
    t.append("]}")
    return t.finish()
}

/// The JSON form on one line to `fd` (GOMALLOC_STATS=json), formatted on the stack.
package func printMemStatsJSON(fd: Int32) {
    let m = readMemStats()
    // At most 68 classes x 162 bytes + 28 figures x 45 bytes: 12.3 KiB.
    var buffer: InlineArray<16384, UInt8> = InlineArray(repeating: 0)
    withUnsafeMutableBytes(of: &buffer) { raw in
        let p = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var n = formatMemStatsJSON(m, into: p, capacity: raw.count - 1)
        if n > raw.count - 2 { n = raw.count - 2 }
        p[n] = 0x0A
        gm_sys_write(fd, raw.baseAddress, n + 1)
    }
}

// MARK: - malloc_info's XML

/// `<name attr="value" ...>` pieces for malloc_info.
private func xmlAttribute(_ t: inout TextBuffer, _ name: StaticString, _ value: UInt64) {
    t.appendByte(0x20)
    t.append(name)
    t.append("=\"")
    t.append(decimal: value)
    t.appendByte(0x22)
}

private func xmlTotals(_ t: inout TextBuffer, _ m: MemStatsSnapshot, mmap: Bool) {
    let committed = m.heapSys &+ m.stackInuse
    t.append("<total type=\"fast\" count=\"0\" size=\"0\"/>\n")
    t.append("<total type=\"rest\"")
    xmlAttribute(&t, "count", 0)
    xmlAttribute(&t, "size", m.heapSys &- Swift.min(m.heapSys, m.heapAlloc))
    t.append("/>\n")
    if mmap {
        t.append("<total type=\"mmap\"")
        xmlAttribute(&t, "count", m.largeMallocs &- m.largeFrees)
        xmlAttribute(&t, "size", m.largeAllocBytes)
        t.append("/>\n")
    }
    t.append("<system type=\"current\"")
    xmlAttribute(&t, "size", committed)
    t.append("/>\n<system type=\"max\"")
    xmlAttribute(&t, "size", committed)
    t.append("/>\n<aspace type=\"total\"")
    xmlAttribute(&t, "size", UInt64(m.arenas) &* UInt64(heapArenaBytes))
    t.append("/>\n<aspace type=\"mprotect\"")
    xmlAttribute(&t, "size", committed)
    t.append("/>\n")
}

/// glibc's malloc_info(0, fp) document with our figures, snprintf-style (as
/// formatMemStatsJSON). One heap; `<sizes>` has one `<size>` per size class with live objects
/// (from = the previous class's size + 1, to = the class size, count = live objects, total =
/// their bytes): glibc lists its free chunks there, we have no free lists to list. `rest`:
/// the free bytes of the heap (mallinfo2's fordblks, count 0: not counted); `mmap`: the live
/// large objects; `system`: the bytes committed (heap and stacks; no peak is kept, so max
/// is current); `aspace total`: the arenas reserved.
package func formatMallocInfo(_ m: MemStatsSnapshot, into buffer: UnsafeMutablePointer<UInt8>?, capacity: Int) -> Int {
    var t = TextBuffer(buffer, capacity: capacity)
    t.append("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n")
    var previous: UInt64 = 0
    for c in 1..<numSizeClasses {
        let size = UInt64(m.classSize[c])
        let live = m.classMallocs[c] &- m.classFrees[c]
        if live != 0 {
            t.append("  <size")
            xmlAttribute(&t, "from", previous &+ 1)
            xmlAttribute(&t, "to", size)
            xmlAttribute(&t, "total", live &* size)
            xmlAttribute(&t, "count", live)
            t.append("/>\n")
        }
        previous = size
    }
    t.append("</sizes>\n")
    xmlTotals(&t, m, mmap: false)
    t.append("</heap>\n")
    xmlTotals(&t, m, mmap: true)
    t.append("</malloc>\n")
    return t.finish()
}

// MARK: - GOMALLOC_STATS: the summary at exit

private let statsRegistered = Atomic<Bool>(false)
/// A private copy of stderr taken at registration: programs (coreutils) close fd 2 in their
/// own exit handlers, which run before ours.
private let statsFD = Atomic<Int32>(2)
/// With GOMALLOC_STATS=<pid>, the one process that reports (forked children inherit the
/// exit handler and must stay quiet); 0: every process.
private let statsPID = Atomic<Int>(0)

/// Whether the summary at exit is the JSON form (GOMALLOC_STATS=json).
private let statsJSON = Atomic<Bool>(false)

/// With GOMALLOC_STATS=1 (or this process's pid, or json), print the statistics at exit,
/// once per process. Called at library load and after the heap is set up; atexit may call
/// malloc, so never with an allocator lock held.
func registerStatsAtExit() {
    let json = Option.stats.isSet(to: "json")
    let which = json ? 1 : Option.stats.read()
    if which == 0 || (which > 1 && which != Int(gm_sys_getpid())) { return }
    statsPID.store(which > 1 ? which : 0, ordering: .relaxed)
    statsJSON.store(json, ordering: .relaxed)
    if statsRegistered.exchange(true, ordering: .acquiringAndReleasing) { return }
    let fd = gm_sys_dup_private(2)
    if fd >= 0 { statsFD.store(fd, ordering: .relaxed) }
    _ = gm_sys_atexit(printStatsAtExit)
}

private func printStatsAtExit() {
    let pid = statsPID.load(ordering: .relaxed)
    if pid != 0 && pid != Int(gm_sys_getpid()) { return }
    let fd = statsFD.load(ordering: .relaxed)
    if statsJSON.load(ordering: .relaxed) { printMemStatsJSON(fd: fd) } else { printMemStats(fd: fd) }
}
