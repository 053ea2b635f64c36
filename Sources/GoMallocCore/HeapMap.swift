// HeapMap.swift — GOMALLOC_HEAPMAP: a page-by-page dump of every arena, written at exit.
//
// Role: with GOMALLOC_HEAPMAP=<path>, an exit handler (registered at library load and after
//   the heap is set up, as the GOMALLOC_STATS summary is) stops the world and writes the
//   state of every page of every registered arena to <path> (`%p` in it: the process id),
//   for `gomalloc heapmap` to draw. The format (version 1), one record per line, fields
//   separated by one space:
//     gomalloc-heapmap 1 pagesize <bytes> arenapages <pages per arena>
//     heap committed <pages> inuse <pages> free <pages> released <pages> stack <pages>
//                                          (the heap's own counters, as `gomalloc heap` shows them)
//     arena 0x<base> <pages>               (then its runs, in address order, covering <pages>)
//     small <class> <object bytes> <pages> (one span of small objects of that size class)
//     large <pages>                        (one large span, or the part of it in this arena;
//                                          also a run of pages of one not in the page map)
//     stack <pages>                        (one stack span, Stack.swift)
//     free <pages> | released <pages> | uncommitted <pages>   (merged runs of such pages)
//     totals small <p> large <p> stack <p> free <p> released <p> uncommitted <p> spans <n>
//                                          (the sums of the runs above)
//     end
// Go counterpart: none (runtime/debug.WriteHeapDump is object-level, not a page map).
// Invariants:
//   I1. Nothing here allocates: the path is expanded into a fixed stack buffer, the text is
//       formatted into a 4 KiB stack buffer and written with write(2) whenever it fills.
//   I2. The dump is taken with the world stopped (HeapView.I1), so its runs are consistent.
//   I3. Only the process that registered the handler writes (forked children inherit it and
//       stay quiet); an exec'd program loads the library afresh and writes its own dump.
//   I4. A page is classified as HeapView's page map does: a span mapped at it (stack, large,
//       small), else held by a page cache (free), else allocated in the page allocator (the
//       inner page of a large span), else scavenged (released), else in the page allocator
//       (free), else uncommitted.
// Concurrency: the exit handler stops the world; other threads may still be running.
// Failure: a path that cannot be created, or is too long, gives no dump and no report.
import CGoMallocSys
import Synchronization

private let heapMapRegistered = Atomic<Bool>(false)
/// The process that registered the handler (I3).
private let heapMapPID = Atomic<Int>(0)

/// With GOMALLOC_HEAPMAP set, write the heap dump at exit, once per process. Called at
/// library load and after the heap is set up; atexit may call malloc, so never with an
/// allocator lock held.
func registerHeapMapAtExit() {
    guard Option.heapMap.string() != nil else { return }
    if heapMapRegistered.exchange(true, ordering: .acquiringAndReleasing) { return }
    heapMapPID.store(Int(gm_sys_getpid()), ordering: .relaxed)
    _ = gm_sys_atexit(writeHeapMapAtExit)
}

private func writeHeapMapAtExit() {
    if heapMapPID.load(ordering: .relaxed) != Int(gm_sys_getpid()) { return }
    guard let path = Option.heapMap.string() else { return }
    let fd = createDumpFile(path)
    if fd < 0 { return }
    writeHeapMap(fd: fd)
    gm_sys_close(fd)
}

/// Create (or truncate) the dump file `path`, `%p` in it replaced by the process id, the
/// name expanded in a stack buffer (I1); -1 if it is too long or cannot be created. Also
/// the heap profile's (Profile.swift).
func createDumpFile(_ path: UnsafePointer<CChar>) -> Int32 {
    let pid = Int(gm_sys_getpid())
    var name: InlineArray<1024, UInt8> = InlineArray(repeating: 0)
    var n = 0
    var i = 0
    while path[i] != 0 {
        if path[i] == 0x25 && path[i &+ 1] == 0x70 {  // "%p"
            var digits: InlineArray<20, UInt8> = InlineArray(repeating: 0)
            var d = 0
            var x = UInt(pid)
            repeat { digits[d] = UInt8(x % 10) &+ 0x30; d += 1; x /= 10 } while x != 0
            while d > 0 {
                d -= 1
                if n >= 1023 { return -1 }
                name[n] = digits[d]; n += 1
            }
            i &+= 2
            continue
        }
        if n >= 1023 { return -1 }
        name[n] = UInt8(bitPattern: path[i]); n += 1
        i &+= 1
    }
    return withUnsafeBytes(of: &name) { raw in
        gm_sys_create_file(raw.baseAddress!.assumingMemoryBound(to: CChar.self))
    }
}

/// Text formatted into a 4 KiB stack buffer and written to `fd` whenever it fills (I1).
/// Also the heap profile's writer (Profile.swift).
struct DumpWriter: ~Copyable {
    private var buffer: InlineArray<4096, UInt8> = InlineArray(repeating: 0)
    private var count = 0
    private let fd: Int32

    init(fd: Int32) { self.fd = fd }

    mutating func flush() {
        let n = count
        if n == 0 { return }
        withUnsafeBytes(of: &buffer) { raw in gm_sys_write(fd, raw.baseAddress, n) }
        count = 0
    }

    mutating func appendByte(_ b: UInt8) {
        if count == 4096 { flush() }
        buffer[count] = b
        count &+= 1
    }

    mutating func append(_ s: StaticString) {
        s.withUTF8Buffer { bytes in
            for b in bytes { appendByte(b) }
        }
    }

    mutating func append(decimal v: Int) {
        let d = DecimalDigits(UInt64(UInt(bitPattern: v)))
        for i in 0..<d.count { appendByte(d.bytes[i]) }
    }

    /// " <v>"
    mutating func field(_ v: Int) { appendByte(0x20); append(decimal: v) }

    mutating func append(hex v: UInt) {
        append("0x")
        var started = false
        var shift = 60
        while shift >= 0 {
            let d = UInt8((v >> UInt(shift)) & 0xF)
            if d != 0 || started || shift == 0 {
                started = true
                appendByte(d < 10 ? d &+ 0x30 : d &+ 0x57)
            }
            shift -= 4
        }
    }
}

/// Page kinds of the dump, in its order.
private enum PageKind: Int {
    case small, large, stack, free, released, uncommitted
    static let count = 6

    /// The kind's word in the dump.
    var name: StaticString {
        switch self {
        case .small: "small"
        case .large: "large"
        case .stack: "stack"
        case .free: "free"
        case .released: "released"
        case .uncommitted: "uncommitted"
        }
    }
}

/// Per-kind page counts and the span count (the `totals` line).
private struct DumpTotals {
    var pages: InlineArray<6, Int> = InlineArray(repeating: 0)  // PageKind.count
    var spans = 0
}

private func writeRun(_ w: inout DumpWriter, _ t: inout DumpTotals, _ kind: PageKind, _ pages: Int) {
    if pages == 0 { return }
    w.append(kind.name)
    w.field(pages)
    w.appendByte(0x0A)
    t.pages[kind.rawValue] &+= pages
}

/// Write the dump (the format above) to `fd`, stopping the world while the heap is walked.
package func writeHeapMap(fd: Int32) {
    var w = DumpWriter(fd: fd)
    w.append("gomalloc-heapmap 1 pagesize")
    w.field(pageSize)
    w.append(" arenapages")
    w.field(pagesPerArena)
    w.appendByte(0x0A)
    var t = DumpTotals()
    if let h = theHeap() {
        h.stopTheWorld()
        writeArenas(h, &w, &t)
        h.startTheWorld()
    }
    w.append("totals")
    for i in 0..<PageKind.count {
        w.appendByte(0x20)
        w.append(PageKind(rawValue: i).unsafelyUnwrapped.name)
        w.field(t.pages[i])
    }
    w.append(" spans")
    w.field(t.spans)
    w.append("\nend\n")
    w.flush()
}

/// The `heap` line and every arena's runs; the world is stopped.
private func writeArenas(_ h: UnsafeMutablePointer<MHeap>, _ w: inout DumpWriter, _ t: inout DumpTotals) {
    w.append("heap committed")
    w.field(h.locked.pointee.pages.totalPages)
    w.append(" inuse")
    w.field(h.pagesInUse &+ h.locked.pointee.stackPages)
    w.append(" free")
    w.field(h.locked.pointee.pages.freePages &+ h.cachedPages &+ h.locked.pointee.scavengeBatch.totalPages)
    w.append(" released")
    w.field(h.locked.pointee.pages.scavengedPages)
    w.append(" stack")
    w.field(h.locked.pointee.stackPages)
    w.appendByte(0x0A)
    for ai in h.registeredArenaIndices {
        guard let table = h.pointee.arenaMap[ai] else { continue }
        let base = UInt(ai) << UInt(logHeapArenaBytes)
        let arenaEnd = base &+ UInt(heapArenaBytes)
        w.append("arena ")
        w.append(hex: base)
        w.field(pagesPerArena)
        w.appendByte(0x0A)
        // The pending run of free, released or uncommitted pages (a span is never merged).
        var runKind = PageKind.uncommitted
        var runPages = 0
        var pg = 0
        while pg < pagesPerArena {
            let addr = base &+ UInt(pg &* pageSize)
            if let s = table[pg], s != h.pointee.tombstone, addr >= s.pointee.startAddr, addr < s.limit,
               s.pointee.state.load(ordering: .relaxed) != SpanState.free.rawValue {
                writeRun(&w, &t, runKind, runPages)
                runPages = 0
                let end = s.limit < arenaEnd ? s.limit : arenaEnd
                let n = Int((end &- addr) >> UInt(pageShift))
                t.spans &+= 1
                if s.isStack {
                    writeRun(&w, &t, .stack, n)
                } else if s.spanClass.sizeClass == 0 {
                    writeRun(&w, &t, .large, n)
                } else {
                    let c = Int(s.spanClass.sizeClass)
                    w.append("small")
                    w.field(c)
                    w.field(Int(h.pointee.sizeClasses.classToSize[c]))
                    w.field(n)
                    w.appendByte(0x0A)
                    t.pages[PageKind.small.rawValue] &+= n
                }
                pg &+= n > 0 ? n : 1
                continue
            }
            let kind: PageKind
            if h.pageCachesHold(addr) {
                kind = .free
            } else if h.locked.pointee.pages.isAllocated(addr) {
                kind = .large  // the inner page of a large span (only its ends are mapped)
            } else if h.locked.pointee.pages.isScavenged(addr) {
                kind = .released
            } else if h.locked.pointee.pages.contains(addr) {
                kind = .free
            } else {
                kind = .uncommitted
            }
            if kind == runKind {
                runPages &+= 1
            } else {
                writeRun(&w, &t, runKind, runPages)
                runKind = kind
                runPages = 1
            }
            pg &+= 1
        }
        writeRun(&w, &t, runKind, runPages)
    }
}
