// MemStats.swift — the heap's statistics, with the names of Go's runtime.MemStats.
import GoMallocCoreHosted

/// A snapshot of the allocator's statistics. Byte counts use Go's definitions.
public struct MemStats: Sendable, Equatable {
    /// Bytes of allocated heap objects (small objects at their size-class size, large
    /// objects at their page-rounded size).
    public var heapAlloc: UInt64
    /// Bytes of heap memory obtained from the OS (committed arenas, minus stacks).
    public var heapSys: UInt64
    /// Bytes in idle (unused) spans: `heapSys - heapInuse`.
    public var heapIdle: UInt64
    /// Bytes in in-use spans.
    public var heapInuse: UInt64
    /// Bytes of idle spans returned to the OS (or never touched).
    public var heapReleased: UInt64
    /// Live objects.
    public var heapObjects: UInt64
    /// Bytes in stack spans (Go's StackInuse): the live stacks and the free ones kept in
    /// the stack caches, pool spans and stackLarge. Not part of `heapSys` or `heapInuse`.
    public var stackInuse: UInt64
    /// Bytes of memory obtained for stacks (Go's StackSys); equal to `stackInuse`, since
    /// every stack comes from the heap's arenas.
    public var stackSys: UInt64
    /// The parts of `stackInuse`: bytes of stacks handed out and not freed, of free stacks
    /// in the per-P stack caches, in stackpool spans, and waiting for reuse on stackLarge.
    public var stackAlloc: UInt64
    public var stackCached: UInt64
    public var stackPoolFree: UInt64
    public var stackLargeFree: UInt64
    /// Cumulative count of stacks allocated and freed.
    public var stackAllocs: UInt64
    public var stackFrees: UInt64
    /// Bytes of allocator metadata obtained from the OS.
    public var metadataSys: UInt64
    /// Bytes the scavenger has returned to the OS so far (cumulative: the work it has done;
    /// `heapReleased` is what is released now).
    public var scavengerReleasedBytes: UInt64
    /// The part of `scavengerReleasedBytes` the background scavenger thread released.
    public var scavengerBackgroundReleasedBytes: UInt64
    /// Whether the background scavenger thread runs (the drop-in library starts it once the
    /// heap has mapped 64 MiB; the Swift library's heap does its scavenging inline).
    public var scavengerThreadRunning: Bool
    /// GOMALLOC_MEMORY_LIMIT in bytes (0: none), and the times the resident heap went past it.
    public var memoryLimit: UInt64
    public var memoryLimitHits: UInt64
    /// Cumulative count of objects allocated.
    public var mallocs: UInt64
    /// Cumulative count of objects freed.
    public var frees: UInt64
    /// Bytes of small objects allocated from span classes with pointers (`containsPointers`)
    /// and without (noscan: every C allocation, and the tiny allocator's 16-byte blocks);
    /// `heapAlloc` is their sum plus the large objects.
    public var heapAllocScan: UInt64
    public var heapAllocNoscan: UInt64
    /// Objects of 1-4 bytes packed by the tiny allocator: allocated and freed (included in
    /// `mallocs` and `frees`, not in `bySize`), and its 16-byte blocks in use.
    public var tinyAllocs: UInt64
    public var tinyFrees: UInt64
    public var tinyBlocks: UInt64
    /// Number of Ps: one per CPU id when Ps are bound to CPUs, plus GOMALLOC_MAXPROCS
    /// taken by compare-and-swap.
    public var processors: Int
    /// How many of `processors` are bound to CPUs (rseq); 0 when every P is taken by
    /// compare-and-swap (GOMALLOC_RSEQ=0, valgrind, kernels or glibcs without rseq).
    public var cpuBoundProcessors: Int
    /// mcaches created so far (never more than `processors`).
    public var mcaches: Int
    /// Heap arenas (64 MiB) reserved.
    public var arenas: Int
    /// Per size class (index = class; class 0 counts large objects).
    public var bySize: [SizeClassStats]

    init(_ m: MemStatsSnapshot) {
        heapAlloc = m.heapAlloc
        heapSys = m.heapSys
        heapIdle = m.heapIdle
        heapInuse = m.heapInuse
        heapReleased = m.heapReleased
        heapObjects = m.heapObjects
        stackInuse = m.stackInuse
        stackSys = m.stackSys
        stackAlloc = m.stackAlloc
        stackCached = m.stackCached
        stackPoolFree = m.stackPoolFree
        stackLargeFree = m.stackLargeFree
        stackAllocs = m.stackAllocs
        stackFrees = m.stackFrees
        metadataSys = m.metadataSys
        scavengerReleasedBytes = m.scavengedBytes
        scavengerBackgroundReleasedBytes = m.backgroundScavengedBytes
        scavengerThreadRunning = m.scavengerThread != 0
        memoryLimit = m.memoryLimit
        memoryLimitHits = m.memoryLimitHits
        mallocs = m.mallocs
        frees = m.frees
        heapAllocScan = m.heapAllocScan
        heapAllocNoscan = m.heapAllocNoscan
        tinyAllocs = m.tinyAllocs
        tinyFrees = m.tinyFrees
        tinyBlocks = m.tinyBlocksInUse
        processors = m.nprocs
        cpuBoundProcessors = m.cpuProcs
        mcaches = m.mcaches
        arenas = m.arenas
        var rows: [SizeClassStats] = []
        for c in 0..<68 {
            rows.append(SizeClassStats(sizeClass: c, size: Int(m.classSize[c]),
                                       mallocs: m.classMallocs[c], frees: m.classFrees[c],
                                       noscanMallocs: m.classNoscanMallocs[c], noscanFrees: m.classNoscanFrees[c]))
        }
        bySize = rows
    }
}

/// Allocation counts of one size class (Go's MemStats.BySize).
public struct SizeClassStats: Sendable, Equatable {
    public var sizeClass: Int
    /// Object size (0 for class 0, large objects).
    public var size: Int
    public var mallocs: UInt64
    public var frees: UInt64
    /// The part of `mallocs` and `frees` from the noscan span class (the rest is scan).
    public var noscanMallocs: UInt64
    public var noscanFrees: UInt64
}

/// One row of the generated size-class table (the columns of Go's sizeclasses.go).
public struct SizeClass: Sendable, Equatable {
    public var sizeClass: Int
    public var bytesPerObject: Int
    public var bytesPerSpan: Int
    public var objects: Int
    public var tailWaste: Int
    /// Worst-case fraction of a span wasted (rounding up + tail), as in Go's table.
    public var maxWaste: Double
    public var minAlign: Int

    static let table: [SizeClass] = {
        var rows = [SizeClassRow](repeating: SizeClassRow(size: 0, npages: 0), count: 72)
        let n = rows.withUnsafeMutableBufferPointer { generateSizeClasses(into: $0.baseAddress!, capacity: 72) }
        var out: [SizeClass] = []
        var prev = 0
        for c in 1..<n {
            let r = rows[c]
            let waste = Double((r.size - prev - 1) * r.objects + r.tailWaste) / Double(r.spanBytes)
            out.append(SizeClass(sizeClass: c, bytesPerObject: r.size, bytesPerSpan: r.spanBytes,
                                 objects: r.objects, tailWaste: r.tailWaste, maxWaste: waste,
                                 minAlign: r.minAlign))
            prev = r.size
        }
        return out
    }()
}
