// PageAlloc.swift — Go's page allocator: which 8 KiB pages of the heap are in use, found by
// address-ordered first fit over a radix tree of free-run summaries.
//
// Role: hand out and take back runs of pages for the heap (spans, large objects), remember
//   which free pages have been returned to the OS (scavenged), and find the lowest-addressed
//   run of n free pages quickly however large and fragmented the heap is.
// Go counterpart: mpagealloc.go, mpagealloc_64bit.go (pageAlloc, find, alloc, free, grow,
//   update), mgcscavenge.go (the scavenged bitmap, scavenging highest addresses first).
// Invariants (checkInvariants() verifies every one):
//   I1. A chunk that was never grown has all-zero bitmaps and a zero leaf summary; grown
//       chunks are never removed.
//   I2. No page is both allocated and scavenged (pallocBits & scavenged == 0, word by word).
//   I3. The leaf summary of every grown chunk equals summarize() of its allocation bitmap.
//   I4. Every summary at levels 0...3 equals the merge of its 8 children one level down
//       (children in blocks that were never mapped count as zero).
//   I5. No free page lies below searchAddr (searchAddr is at or below the first free page).
//   I6. No free, unscavenged page lies at or above scavHint.
//   I7. inUsePages, scavengedPages and totalPages equal the number of set allocation bits,
//       the number of set scavenged bits and the number of grown pages;
//       freePages == totalPages - inUsePages.
//   I8. Grown ranges are chunk-aligned, sorted, disjoint and never adjacent (adjacent ones are
//       merged); [startChunk, endChunk) is the chunk span from the first to the last.
//   I9. Every metadata block that a grown chunk needs (its summary at each level, its bitmaps)
//       is mapped.
// Concurrency: guarded by the heap lock, which the caller holds for every call; PageAlloc
//   itself never locks (tests own private instances and need no lock).
// Failure: grow returns false, with nothing changed, when metadata memory cannot be mapped;
//   alloc returns base 0 when no run fits. Freeing pages that are not allocated, or finding
//   summaries that disagree with the bitmaps, is a broken invariant: throwFatal.
//
// MARK: - The design
//
// Bits. The heap is cut into chunks of 512 pages (4 MiB, aligned to 4 MiB). Each chunk that
// belongs to the heap has two 512-bit bitmaps (PallocBits.swift): in the allocation bitmap a 1
// means the page is in use and a 0 that it is free; in the scavenged bitmap a 1 means the page
// is free and its memory has been handed back to the OS (MADV_DONTNEED), so it is not resident
// and reads as zero. A page never has both bits set. Memory fresh from the OS starts free and
// scavenged: it is zero and costs no RSS until it is touched.
//
// Summaries. Searching bitmaps page by page would be linear in the heap, so a radix tree sits
// above them. Every node summarises an aligned region of pages with three counts (PallocSum):
// `start`, the free pages at the region's low end; `end`, the free pages at its high end; and
// `max`, the longest free run anywhere inside. Start and end are what let free runs join across
// region boundaries: eight children merge into their parent by adding up starts while children
// are completely free, carrying the end run into the next child's start, and keeping the best
// of every max and every such crossing run. A zero summary means "no free page here", which is
// also what memory outside the heap looks like.
//
// Levels. Addresses are 48 bits; a chunk is 2^22 bytes, so there are 2^26 possible chunks.
// Level 4 (the leaf) has one summary per chunk; each level above has 8x fewer entries, each
// covering 8x more pages, down to 2^14 at level 0:
//
//   level   entries   pages per entry   bytes per entry   summary array if fully built
//     0      2^14         2^21              16 GiB              128 KiB
//     1      2^17         2^18               2 GiB                1 MiB
//     2      2^20         2^15             256 MiB                8 MiB
//     3      2^23         2^12              32 MiB               64 MiB
//     4      2^26         2^9                4 MiB              512 MiB
//   chunk bitmaps: 2^26 x 128 bytes                                8 GiB
//
// Fields of 21 bits hold counts up to 2^21 - 1; a level-0 entry can be completely free with
// 2^21 pages, the one value that does not fit, so it gets bit 63 of its own.
//
// Worked example: a 1 GiB heap at Go's first arena hint, 0x00c0_0000_0000. Its first chunk
// index is 0xc0_0000_0000 >> 22 = 196608 and it spans 256 chunks, 196608...196863. An entry's
// index at level l is the chunk index >> 3*(4-l): level 4 uses entries 196608...196863, level 3
// 24576...24607, level 2 3072...3075, level 1 entry 384 and level 0 entry 48. So 256 + 32 + 4 +
// 1 + 1 summaries describe the heap; below level 0 a search reads at most 8 of them per level.
//
// Lazy metadata. Go reserves the full arrays above as address space up front; we map memory
// only for what the heap covers. Metadata lives in 64 KiB blocks (8192 summaries, or the
// bitmaps of 512 chunks) from sysAlloc. A block is found through a one-page root of pointers
// to one-page directories of 512 block pointers: level l's block b is
// root[rootBase(l) + b >> 9][b & 511], and the chunk table is table 5. grow maps the root, the
// directories and the blocks that the new range needs, before it changes anything. The 1 GiB
// example above maps the root, 6 directories and 6 blocks (5 levels + the bitmaps), plus a page
// for the list of grown ranges: 416 KiB of address space, of which 21 pages (84 KiB) are ever
// touched (the bitmaps take 8 of them). Memory is never unmapped while the allocator lives,
// as in Go.
//
// Find. searchAddr is a lower bound for the first free page, so alloc first looks only in the
// chunk holding searchAddr, if that chunk's leaf summary says a long enough run is there. If
// not, find descends the tree: at level 0 it scans the entries from searchAddr's entry to the
// last grown chunk's; at every lower level it scans the 8 children of the entry chosen above.
// In each scan it carries the length of the free run that ends at the current entry's low
// boundary; at each entry it asks, in address order: (a) do that run plus this entry's start
// reach npages? then the run is the answer, found without going lower; (b) does this entry's
// max reach npages? then the first fit is inside it: descend; (c) otherwise the carried run
// becomes this entry's end (or grows by the whole entry when it is completely free). At the leaf
// the chunk's bitmap is searched a word at a time (PallocBits.find). A run longer than a chunk
// is always found by (a) at some level, as the end of one entry, whole free entries and the
// start of the next. While the descent keeps choosing the first non-empty entry it saw, the
// first free page of the heap is inside that entry, which gives the new searchAddr.
//
// Scavenging walks grown chunks from the highest address down, from scavHint (nothing free
// and unscavenged lies at or above it), marks the highest free unscavenged runs as scavenged
// and releases each contiguous run with one sysUnused. High addresses go first so that the low
// end, where first fit allocates, stays resident.
//
// Where it stops scaling.
//   * One heap lock serialises every call. As Go does, per-P page caches (PageCache.swift)
//     take 64-page windows at once (allocToCache) and serve small spans without it.
//   * Level 0 is scanned linearly over the span of grown chunks: a heap scattered over the
//     whole 48-bit space makes a slow-path find read up to 2^14 entries.
//   * Each metadata access costs three dependent loads (root, directory, block) where Go's
//     reserved arrays cost one; that buys not reserving ~8.6 GiB of address space per process.
//   * 48-bit addresses only. 57-bit addresses (5-level paging) would need a level 0 of 2^23
//     entries (64 MiB if fully built, and a long linear scan); adding a sixth level instead
//     would need 24-bit fields, and three of them no longer fit in one word.
//   * First fit on one searchAddr: a free at a low address rewinds searchAddr, and a heap of
//     many small holes makes large allocations walk past all of them (through summaries, so
//     the cost is per level, not per page).
//   * Scavenging is a linear walk from scavHint down. Freeing high memory between scavenges
//     raises scavHint again, so a heap that churns at its top rescans clean chunks.

/// One past the highest address we manage; also "nothing is free" for searchAddr.
private let maxSearchAddr: UInt = 1 << UInt(heapAddrBits)
/// Bytes of one metadata block: 8192 summaries, or the two bitmaps of 512 chunks.
private let pageAllocBlockBytes = 64 << 10
private let logSummariesPerBlock = 13
private let logChunksPerBlock = 9
/// A directory is one page of 512 block pointers; the root is one page of directory pointers.
private let logDirectoryEntries = 9
private let directoryBytes = 8 << logDirectoryEntries  // 4096
/// Bits of a chunk index (2^26 chunks in 48 bits).
private let chunkIndexBits = heapAddrBits - logPallocChunkBytes  // 26
/// Table number of the chunk bitmaps; tables 0..<summaryLevels are the summary levels.
private let chunkTable = summaryLevels
/// Root slots in use: 1, 1, 1, 2, 16 for the summary levels, 256 for the chunk table.
private let rootSlotCount = 277

/// Go's `pageAlloc`: see the essay above.
package struct PageAlloc: ~Copyable {
    /// Go's `addrRange`: [base, limit), chunk-aligned.
    struct AddrRange {
        var base: UInt
        var limit: UInt
    }

    // MARK: - Hot fields (alloc's fast path reads these first)

    /// Lowest address that may be free (I5); maxSearchAddr when nothing is free.
    /// Guarded by: heap lock.
    private var searchAddr: UInt
    /// One past the last grown chunk (0 before the first grow). Guarded by: heap lock.
    private var endChunk: Int
    /// First grown chunk. Guarded by: heap lock.
    private var startChunk: Int
    /// Root page: directory pointers per table (entries only go nil -> non-nil).
    /// Guarded by: heap lock.
    private var root: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutableRawPointer?>?>?

    // MARK: - Counters and bookkeeping

    /// Allocated pages. Guarded by: heap lock.
    private var inUse: Int
    /// Free pages whose memory was returned to the OS. Guarded by: heap lock.
    var scav: Int
    /// Pages the scavenger has released so far (cumulative: scavenge's successful releases,
    /// not the pages that arrive scavenged from grow or a released free). Guarded by: heap lock.
    var scavengedTotal: Int
    /// Pages grown so far. Guarded by: heap lock.
    private var total: Int
    /// No free, unscavenged page lies at or above this address (I6). Guarded by: heap lock.
    var scavHint: UInt
    /// Grown ranges, sorted and merged (I8), in sysAlloc'd memory. Guarded by: heap lock.
    var ranges: UnsafeMutablePointer<AddrRange>?
    /// Guarded by: heap lock.
    var rangeCount: Int
    /// Capacity of `ranges` in entries. Guarded by: heap lock.
    private var rangeCapacity: Int
    /// Bytes of metadata mapped so far (root, directories, blocks, range list).
    /// Guarded by: heap lock.
    package private(set) var metadataBytes: Int
    /// Whether scavenge calls sysUnused (false for tests over fake addresses). Immutable.
    let releasesMemory: Bool

    package init(releasesMemory: Bool) {
        searchAddr = maxSearchAddr
        endChunk = 0
        startChunk = 0
        root = nil
        inUse = 0
        scav = 0
        scavengedTotal = 0
        total = 0
        scavHint = 0
        ranges = nil
        rangeCount = 0
        rangeCapacity = 0
        metadataBytes = 0
        self.releasesMemory = releasesMemory
    }

    deinit {
        if let root {
            var slot = 0
            while slot < rootSlotCount {
                if let directory = root[slot] {
                    var k = 0
                    while k < 1 << logDirectoryEntries {
                        if let block = directory[k] { sysFree(block, size: pageAllocBlockBytes) }
                        k &+= 1
                    }
                    sysFree(UnsafeMutableRawPointer(directory), size: directoryBytes)
                }
                slot &+= 1
            }
            sysFree(UnsafeMutableRawPointer(root), size: directoryBytes)
        }
        if let ranges {
            sysFree(UnsafeMutableRawPointer(ranges), size: rangeCapacity &* MemoryLayout<AddrRange>.stride)
        }
    }

    // MARK: - Statistics

    /// Allocated pages.
    package var inUsePages: Int { inUse }
    /// Free pages, scavenged or not.
    package var freePages: Int { total &- inUse }
    /// Free pages whose memory was returned to the OS.
    package var scavengedPages: Int { scav }
    /// Every page grown so far.
    package var totalPages: Int { total }

    // MARK: - Address arithmetic (Go's chunkIndex, chunkBase, chunkPageIndex)

    @inline(__always)
    static func chunkIndex(_ addr: UInt) -> Int { Int(truncatingIfNeeded: addr &>> UInt(logPallocChunkBytes)) }

    @inline(__always)
    static func chunkBase(_ ci: Int) -> UInt { UInt(truncatingIfNeeded: ci) &<< UInt(logPallocChunkBytes) }

    @inline(__always)
    static func chunkPageIndex(_ addr: UInt) -> Int {
        Int(truncatingIfNeeded: (addr &>> UInt(pageShift)) & UInt(pallocChunkPages &- 1))
    }

    /// How far a chunk index shifts right to become an entry index at `level`.
    @inline(__always)
    static func levelShift(_ level: Int) -> Int { summaryLevelBits &* (summaryLevels &- 1 &- level) }

    /// log2 of the pages one entry at `level` covers (21, 18, 15, 12, 9).
    @inline(__always)
    static func levelLogPages(_ level: Int) -> Int { logPallocChunkPages &+ levelShift(level) }

    /// First address covered by entry `index` of `level`.
    @inline(__always)
    static func entryBase(level: Int, index: Int) -> UInt {
        UInt(truncatingIfNeeded: index) &<< UInt(levelShift(level) &+ logPallocChunkBytes)
    }

    // MARK: - Metadata blocks

    /// First root slot of a table (summary levels 0...4, then the chunk table).
    @inline(__always)
    static func rootBase(_ table: Int) -> Int {
        switch table {
        case 0: return 0
        case 1: return 1
        case 2: return 2
        case 3: return 3
        case 4: return 5
        default: return 21
        }
    }

    /// Root slots a table uses: its block count / 512, at least 1.
    @inline(__always)
    static func rootSlots(_ table: Int) -> Int {
        let entryBits = table == chunkTable ? chunkIndexBits : summaryL0Bits &+ summaryLevelBits &* table
        let perBlock = table == chunkTable ? logChunksPerBlock : logSummariesPerBlock
        let blockBits = entryBits &- perBlock
        return blockBits > logDirectoryEntries ? 1 &<< (blockBits &- logDirectoryEntries) : 1
    }

    /// Block `b` of `table`, or nil if it was never mapped.
    @inline(__always)
    private func block(_ table: Int, _ b: Int) -> UnsafeMutableRawPointer? {
        guard let root, let directory = root[Self.rootBase(table) &+ (b &>> logDirectoryEntries)] else { return nil }
        return directory[b & ((1 &<< logDirectoryEntries) &- 1)]
    }

    /// Map block `b` of `table` (and the root and its directory) if needed; false on failure.
    private mutating func ensureBlock(_ table: Int, _ b: Int) -> Bool {
        if root == nil {
            guard let page = sysAlloc(size: directoryBytes) else { return false }
            metadataBytes &+= directoryBytes
            root = page.bindMemory(to: UnsafeMutablePointer<UnsafeMutableRawPointer?>?.self,
                                   capacity: 1 << logDirectoryEntries)
        }
        let slot = Self.rootBase(table) &+ (b &>> logDirectoryEntries)
        if root![slot] == nil {
            guard let page = sysAlloc(size: directoryBytes) else { return false }
            metadataBytes &+= directoryBytes
            root![slot] = page.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: 1 << logDirectoryEntries)
        }
        let directory = root![slot]!
        let k = b & ((1 &<< logDirectoryEntries) &- 1)
        if directory[k] == nil {
            guard let blockMemory = sysAlloc(size: pageAllocBlockBytes) else { return false }
            metadataBytes &+= pageAllocBlockBytes
            if table == chunkTable {
                blockMemory.bindMemory(to: PallocData.self, capacity: 1 << logChunksPerBlock)
            } else {
                blockMemory.bindMemory(to: PallocSum.self, capacity: 1 << logSummariesPerBlock)
            }
            directory[k] = blockMemory
        }
        return true
    }

    /// The summary slot of entry `index` at `level`; its block must be mapped.
    @inline(__always)
    private func summaryPointer(_ level: Int, _ index: Int) -> UnsafeMutablePointer<PallocSum> {
        guard let b = block(level, index &>> logSummariesPerBlock) else {
            throwFatal("pageAlloc: summary block not mapped")
        }
        return b.assumingMemoryBound(to: PallocSum.self) + (index & ((1 &<< logSummariesPerBlock) &- 1))
    }

    @inline(__always)
    func summary(_ level: Int, _ index: Int) -> PallocSum { summaryPointer(level, index).pointee }

    /// The summary of entry `index` at `level`, or none if its block was never mapped.
    @inline(__always)
    func summaryOrNone(level: Int, index: Int) -> PallocSum {
        guard let b = block(level, index &>> logSummariesPerBlock) else { return .none }
        return b.assumingMemoryBound(to: PallocSum.self)[index & ((1 &<< logSummariesPerBlock) &- 1)]
    }

    /// Go's `chunkOf`: the bitmaps of chunk `ci`; its block must be mapped.
    @inline(__always)
    func chunk(_ ci: Int) -> UnsafeMutablePointer<PallocData> {
        guard let b = block(chunkTable, ci &>> logChunksPerBlock) else {
            throwFatal("pageAlloc: chunk bitmaps not mapped")
        }
        return b.assumingMemoryBound(to: PallocData.self) + (ci & ((1 &<< logChunksPerBlock) &- 1))
    }

    @inline(__always)
    private func chunkIfMapped(_ ci: Int) -> UnsafeMutablePointer<PallocData>? {
        guard ci >= 0 && ci < 1 &<< chunkIndexBits,
              let b = block(chunkTable, ci &>> logChunksPerBlock) else { return nil }
        return b.assumingMemoryBound(to: PallocData.self) + (ci & ((1 &<< logChunksPerBlock) &- 1))
    }

    // MARK: - Queries

    /// Whether the page holding `addr` is allocated (false outside the heap).
    package func isAllocated(_ addr: UInt) -> Bool {
        guard addr < maxSearchAddr, let d = chunkIfMapped(Self.chunkIndex(addr)) else { return false }
        return d.pointee.pallocBits.get(Self.chunkPageIndex(addr))
    }

    /// Whether the page holding `addr` belongs to memory grown into the allocator.
    package func contains(_ addr: UInt) -> Bool {
        addr < maxSearchAddr && isGrown(Self.chunkIndex(addr))
    }

    /// Whether the page holding `addr` is free and scavenged (false outside the heap).
    package func isScavenged(_ addr: UInt) -> Bool {
        guard addr < maxSearchAddr, let d = chunkIfMapped(Self.chunkIndex(addr)) else { return false }
        return d.pointee.scavenged.get(Self.chunkPageIndex(addr))
    }

    // MARK: - Grow

    /// Go's `pageAlloc.grow`: add [base, base+size) to the heap, all pages free and scavenged.
    /// Returns false, with nothing changed, if metadata memory could not be mapped.
    package mutating func grow(base: UInt, size: UInt) -> Bool {
        let chunkMask = UInt(pallocChunkBytes &- 1)
        if base == 0 || base & chunkMask != 0 || size == 0 || size & chunkMask != 0
            || base >= maxSearchAddr || size > maxSearchAddr &- base {
            throwFatal("pageAlloc.grow: range not chunk-aligned or outside the address space")
        }
        let limit = base &+ size
        if overlapsGrown(base: base, limit: limit) { throwFatal("pageAlloc.grow: range already grown") }

        // 1. Map everything first, so that a failure changes nothing visible.
        if !ensureRangeCapacity() { return false }
        let sc = Self.chunkIndex(base)
        let ec = Self.chunkIndex(limit &- 1)
        var l = 0
        while l < summaryLevels {
            let shift = Self.levelShift(l)
            var b = (sc &>> shift) &>> logSummariesPerBlock
            let lastBlock = (ec &>> shift) &>> logSummariesPerBlock
            while b <= lastBlock {
                if !ensureBlock(l, b) { return false }
                b &+= 1
            }
            l &+= 1
        }
        var b = sc &>> logChunksPerBlock
        while b <= ec &>> logChunksPerBlock {
            if !ensureBlock(chunkTable, b) { return false }
            b &+= 1
        }

        // 2. Record the range; the new chunks' allocation bits are already zero (I1).
        insertRange(base: base, limit: limit)
        if startChunk == endChunk || sc < startChunk { startChunk = sc }
        if ec &+ 1 > endChunk { endChunk = ec &+ 1 }
        var c = sc
        while c <= ec {
            chunk(c).pointee.scavenged.setAll()
            c &+= 1
        }
        let npages = Int(truncatingIfNeeded: size &>> UInt(pageShift))
        total &+= npages
        scav &+= npages
        update(base: base, npages: npages, contig: true, alloc: false)
        if base < searchAddr { searchAddr = base }
        checkInvariantsIfExpensive()
        return true
    }

    /// Make room for one more grown range; false if memory could not be mapped.
    private mutating func ensureRangeCapacity() -> Bool {
        if rangeCount < rangeCapacity { return true }
        let newCapacity = rangeCapacity == 0 ? 256 : rangeCapacity &* 2
        let stride = MemoryLayout<AddrRange>.stride
        guard let memory = sysAlloc(size: newCapacity &* stride) else { return false }
        let newRanges = memory.bindMemory(to: AddrRange.self, capacity: newCapacity)
        if let old = ranges {
            newRanges.update(from: old, count: rangeCount)
            sysFree(UnsafeMutableRawPointer(old), size: rangeCapacity &* stride)
            metadataBytes &-= rangeCapacity &* stride
        }
        ranges = newRanges
        rangeCapacity = newCapacity
        metadataBytes &+= newCapacity &* stride
        return true
    }

    private func overlapsGrown(base: UInt, limit: UInt) -> Bool {
        var k = 0
        while k < rangeCount {
            let r = ranges![k]
            if r.base < limit && base < r.limit { return true }
            k &+= 1
        }
        return false
    }

    /// Insert a new disjoint range, merging with neighbours it touches (I8). Capacity is ensured.
    private mutating func insertRange(base: UInt, limit: UInt) {
        let rs = ranges!
        var k = 0
        while k < rangeCount && rs[k].base < base { k &+= 1 }
        let joinsPrevious = k > 0 && rs[k &- 1].limit == base
        let joinsNext = k < rangeCount && rs[k].base == limit
        if joinsPrevious && joinsNext {
            rs[k &- 1].limit = rs[k].limit
            var m = k
            while m &+ 1 < rangeCount { rs[m] = rs[m &+ 1]; m &+= 1 }
            rangeCount &-= 1
        } else if joinsPrevious {
            rs[k &- 1].limit = limit
        } else if joinsNext {
            rs[k].base = base
        } else {
            var m = rangeCount
            while m > k { rs[m] = rs[m &- 1]; m &-= 1 }
            rs[k] = AddrRange(base: base, limit: limit)
            rangeCount &+= 1
        }
    }

    /// Whether chunk `ci` was grown (binary search of the ranges).
    private func isGrown(_ ci: Int) -> Bool {
        let addr = Self.chunkBase(ci)
        var lo = 0
        var hi = rangeCount
        while lo < hi {
            let mid = (lo &+ hi) &>> 1
            let r = ranges![mid]
            if addr < r.base { hi = mid } else if addr >= r.limit { lo = mid &+ 1 } else { return true }
        }
        return false
    }

    // MARK: - Alloc

    /// Go's `pageAlloc.alloc`: the lowest-addressed run of `npages` free pages, marked allocated.
    /// Returns base 0 if no run fits. `scavenged` is how many pages of the run had been scavenged
    /// (== npages means the whole run is known to be zero).
    package mutating func alloc(npages: Int) -> (base: UInt, scavenged: Int) {
        if npages <= 0 { throwFatal("pageAlloc.alloc: npages must be positive") }
        let searchChunk = Self.chunkIndex(searchAddr)
        if searchChunk >= endChunk { return (0, 0) }

        var addr: UInt
        var newSearchAddr: UInt
        let searchPage = Self.chunkPageIndex(searchAddr)
        if pallocChunkPages &- searchPage >= npages
            && summaryOrNone(level: summaryLevels &- 1, index: searchChunk).max >= npages {
            // Fast path: the run fits in searchAddr's chunk, at or after searchAddr (I5).
            let (j, first) = chunk(searchChunk).pointee.pallocBits.find(npages: npages, searchIndex: searchPage)
            if j < 0 { throwFatal("pageAlloc.alloc: bad summary data") }
            let chunkBase = Self.chunkBase(searchChunk)
            addr = chunkBase &+ UInt(truncatingIfNeeded: j) &<< UInt(pageShift)
            newSearchAddr = chunkBase &+ UInt(truncatingIfNeeded: first) &<< UInt(pageShift)
        } else {
            (addr, newSearchAddr) = find(npages: npages)
        }
        // Everything below newSearchAddr was seen to be allocated (I5 still holds).
        if newSearchAddr > searchAddr { searchAddr = newSearchAddr }
        if addr == 0 { return (0, 0) }
        let scavenged = allocRange(base: addr, npages: npages)
        checkInvariantsIfExpensive()
        return (addr, scavenged)
    }

    // MARK: - Slow path (partner of alloc's searchAddr-chunk fast path)

    /// Go's `pageAlloc.find`: descend the tree for the first fit of `npages` (see the essay).
    /// Returns (0, new searchAddr) if no run fits; the new searchAddr never passes a free page.
    @inline(never)
    private func find(npages: Int) -> (addr: UInt, searchAddr: UInt) {
        let search = searchAddr
        let searchChunk = Self.chunkIndex(search)
        var firstFree = search
        // True while every level chose the first non-empty entry it saw: the heap's first free
        // page is then inside the chosen entry.
        var refining = true
        var parent = 0
        var level = 0
        while level < summaryLevels {
            let shift = Self.levelShift(level)
            let logPages = Self.levelLogPages(level)
            let searchIndex = searchChunk &>> shift
            var lo: Int
            var hi: Int
            if level == 0 {
                lo = startChunk &>> shift
                hi = ((endChunk &- 1) &>> shift) &+ 1
                if searchIndex > lo { lo = searchIndex }
            } else {
                lo = parent &<< summaryLevelBits
                hi = lo &+ (1 &<< summaryLevelBits)
                if searchIndex &>> summaryLevelBits == parent { lo = searchIndex }
            }
            var firstNonEmpty = -1
            var runStart = 0  // first page (address >> pageShift) of the run carried into entry j
            var runSize = 0
            var chosen = -1
            var j = lo
            while j < hi {
                let sum = summaryOrNone(level: level, index: j)
                if sum.isNone {
                    runSize = 0
                    j &+= 1
                    continue
                }
                if firstNonEmpty < 0 {
                    firstNonEmpty = j
                    if refining {
                        let entryBase = Self.entryBase(level: level, index: j)
                        if entryBase > firstFree { firstFree = entryBase }
                    }
                }
                let start = sum.start
                if runSize &+ start >= npages {
                    // (a) The carried run plus this entry's start: the first fit.
                    if runSize == 0 { runStart = j &<< logPages }
                    return (UInt(truncatingIfNeeded: runStart) &<< UInt(pageShift), firstFree)
                }
                if sum.max >= npages {
                    // (b) The first fit is inside this entry.
                    chosen = j
                    break
                }
                // (c) Carry the run at this entry's high end.
                if start == 1 &<< logPages {
                    if runSize == 0 { runStart = j &<< logPages }
                    runSize &+= start
                } else {
                    runSize = sum.end
                    runStart = ((j &+ 1) &<< logPages) &- runSize
                }
                j &+= 1
            }
            if chosen < 0 {
                if level == 0 { return (0, firstNonEmpty < 0 ? maxSearchAddr : firstFree) }
                throwFatal("pageAlloc.find: bad summary data")
            }
            if chosen != firstNonEmpty { refining = false }
            parent = chosen
            level &+= 1
        }
        // The leaf: search the chunk's bitmap.
        let ci = parent
        let startPage = ci == searchChunk ? Self.chunkPageIndex(search) : 0
        let (j, first) = chunk(ci).pointee.pallocBits.find(npages: npages, searchIndex: startPage)
        if j < 0 { throwFatal("pageAlloc.find: bad summary data") }
        let base = Self.chunkBase(ci)
        if refining {
            let f = base &+ UInt(truncatingIfNeeded: first) &<< UInt(pageShift)
            if f > firstFree { firstFree = f }
        }
        return (base &+ UInt(truncatingIfNeeded: j) &<< UInt(pageShift), firstFree)
    }

    /// Allocate exactly [base, base + npages pages) if every page of it is grown and free: a
    /// large span growing in place (realloc). Returns the scavenged count, or nil (state
    /// unchanged). searchAddr stays valid: allocation only removes free pages.
    package mutating func allocAt(base: UInt, npages: Int) -> Int? {
        if npages <= 0 || base & UInt(pageMask) != 0 { return nil }
        let limit = base &+ UInt(truncatingIfNeeded: npages) &<< UInt(pageShift)
        if limit <= base || limit > maxSearchAddr { return nil }
        let sc = Self.chunkIndex(base)
        let ec = Self.chunkIndex(limit &- 1)
        var c = sc
        while c <= ec {
            guard isGrown(c), let d = chunkIfMapped(c) else { return nil }
            let first = c == sc ? Self.chunkPageIndex(base) : 0
            let last = c == ec ? Self.chunkPageIndex(limit &- 1) : pallocChunkPages &- 1
            if !d.pointee.pallocBits.isRangeClear(first, last &+ 1 &- first) { return nil }
            c &+= 1
        }
        let scavenged = allocRange(base: base, npages: npages)
        checkInvariantsIfExpensive()
        return scavenged
    }

    /// Go's `allocRange`: mark [base, base+npages pages) allocated; returns the scavenged count.
    mutating func allocRange(base: UInt, npages: Int) -> Int {
        let limit = base &+ UInt(truncatingIfNeeded: npages) &<< UInt(pageShift) &- 1
        let sc = Self.chunkIndex(base)
        let ec = Self.chunkIndex(limit)
        let si = Self.chunkPageIndex(base)
        let ei = Self.chunkPageIndex(limit)
        var scavenged: Int
        if sc == ec {
            scavenged = chunk(sc).pointee.allocRange(si, ei &+ 1 &- si)
        } else {
            scavenged = chunk(sc).pointee.allocRange(si, pallocChunkPages &- si)
            var c = sc &+ 1
            while c < ec {
                scavenged &+= chunk(c).pointee.allocAll()
                c &+= 1
            }
            scavenged &+= chunk(ec).pointee.allocRange(0, ei &+ 1)
        }
        inUse &+= npages
        scav &-= scavenged
        update(base: base, npages: npages, contig: true, alloc: true)
        return scavenged
    }

    // MARK: - Free

    /// Go's `pageAlloc.free`: return [base, base+npages pages), which must be allocated, to the
    /// heap. Free neighbours coalesce by construction: the summaries see one longer run.
    package mutating func free(base: UInt, npages: Int, released: Bool = false) {
        if npages <= 0 || base & UInt(pageMask) != 0 || base >= maxSearchAddr
            || UInt(truncatingIfNeeded: npages) > (maxSearchAddr &- base) &>> UInt(pageShift) {
            throwFatal("pageAlloc.free: bad page range")
        }
        let limit = base &+ UInt(truncatingIfNeeded: npages) &<< UInt(pageShift) &- 1
        let sc = Self.chunkIndex(base)
        let ec = Self.chunkIndex(limit)
        let si = Self.chunkPageIndex(base)
        let ei = Self.chunkPageIndex(limit)
        // Check every chunk before changing any (a chunk outside the heap is not allocated).
        var c = sc
        while c <= ec {
            guard let d = chunkIfMapped(c) else { throwFatal("pageAlloc.free: freeing a page that is not allocated") }
            let first = c == sc ? si : 0
            let last = c == ec ? ei : pallocChunkPages &- 1
            if !d.pointee.pallocBits.isRangeSet(first, last &+ 1 &- first) {
                throwFatal("pageAlloc.free: freeing a page that is not allocated")
            }
            c &+= 1
        }
        if sc == ec {
            chunk(sc).pointee.free(si, ei &+ 1 &- si)
        } else {
            chunk(sc).pointee.free(si, pallocChunkPages &- si)
            c = sc &+ 1
            while c < ec {
                chunk(c).pointee.pallocBits.clearAll()
                c &+= 1
            }
            chunk(ec).pointee.free(0, ei &+ 1)
        }
        inUse &-= npages
        if released {
            // The caller already gave these pages back to the OS (their contents moved away).
            var a = base
            while a <= limit {
                let ci = Self.chunkIndex(a)
                let chunkLimit = Self.chunkBase(ci &+ 1)
                let end = limit &+ 1 < chunkLimit ? limit &+ 1 : chunkLimit
                let n = Int(truncatingIfNeeded: (end &- a) &>> UInt(pageShift))
                chunk(ci).pointee.scavenged.setRange(Self.chunkPageIndex(a), n)
                a = end
            }
            scav &+= npages
        }
        if base < searchAddr { searchAddr = base }
        if limit &+ 1 > scavHint { scavHint = limit &+ 1 }
        update(base: base, npages: npages, contig: true, alloc: false)
        checkInvariantsIfExpensive()
    }

    // MARK: - Page cache windows (the caches themselves are in PageCache.swift)

    /// Go's `pageAlloc.allocToCache`: the 64-page aligned window (one bitmap word) holding
    /// the first free page — with `npages` > 1, the start of the first free run of that many
    /// pages (Go always takes the first free page's; see PageCache.swift for why) — every free
    /// page of it marked allocated. Returns the window's base, its pages that were free (bit
    /// i = page i; 0 when nothing fits) and which of those had been scavenged (their scavenged
    /// bits are cleared: I2). The pages count as allocated here (inUsePages) until the cache
    /// hands them out or gives them back.
    package mutating func allocToCache(npages: Int = 1) -> (base: UInt, cache: UInt64, scav: UInt64) {
        let (addr, newSearchAddr) = firstFit(npages)
        if newSearchAddr > searchAddr { searchAddr = newSearchAddr }
        if addr == 0 { return (0, 0, 0) }
        let ci = Self.chunkIndex(addr)
        let w = Self.chunkPageIndex(addr) &>> 6
        let data = chunk(ci)
        let free = ~data.pointee.pallocBits.words[w]
        let scav = data.pointee.scavenged.words[w] & free
        data.pointee.pallocBits.words[w] = ~0
        data.pointee.scavenged.words[w] = 0
        let base = Self.chunkBase(ci) &+ UInt(truncatingIfNeeded: w &<< 6) &<< UInt(pageShift)
        inUse &+= free.nonzeroBitCount
        self.scav &-= scav.nonzeroBitCount
        // If the window held the first free page (I5), nothing below its end is free now.
        let end = base &+ UInt(truncatingIfNeeded: 64 &* pageSize)
        if searchAddr >= base && end > searchAddr { searchAddr = end }
        update(base: base, npages: 64, contig: false, alloc: true)
        checkInvariantsIfExpensive()
        return (base, free, scav)
    }

    /// The first run of `npages` free pages at or after searchAddr (0 if none) and the
    /// searchAddr it proves (alloc's search, without allocating).
    private func firstFit(_ npages: Int) -> (addr: UInt, searchAddr: UInt) {
        let searchChunk = Self.chunkIndex(searchAddr)
        if searchChunk >= endChunk { return (0, searchAddr) }
        let searchPage = Self.chunkPageIndex(searchAddr)
        if pallocChunkPages &- searchPage >= npages
            && summaryOrNone(level: summaryLevels &- 1, index: searchChunk).max >= npages {
            let (j, first) = chunk(searchChunk).pointee.pallocBits.find(npages: npages, searchIndex: searchPage)
            if j >= 0 {
                let chunkBase = Self.chunkBase(searchChunk)
                return (chunkBase &+ UInt(truncatingIfNeeded: j) &<< UInt(pageShift),
                        chunkBase &+ UInt(truncatingIfNeeded: first) &<< UInt(pageShift))
            }
        }
        return find(npages: npages)
    }

    /// Go's `pageCache.flush`, the page allocator's half: take back the pages `cache` of the
    /// window at `base` (allocated here since allocToCache), those in `scav` still scavenged
    /// (untouched since: they keep reading as zero and cost no RSS).
    package mutating func freeFromCache(base: UInt, cache: UInt64, scav: UInt64) {
        if cache == 0 { return }
        let ci = Self.chunkIndex(base)
        let w = Self.chunkPageIndex(base) &>> 6
        guard base & UInt(64 &* pageSize &- 1) == 0, scav & ~cache == 0, let data = chunkIfMapped(ci),
              data.pointee.pallocBits.words[w] & cache == cache else {
            throwFatal("pageAlloc.freeFromCache: returning pages that are not allocated")
        }
        data.pointee.pallocBits.words[w] &= ~cache
        data.pointee.scavenged.words[w] |= scav
        inUse &-= cache.nonzeroBitCount
        self.scav &+= scav.nonzeroBitCount
        let first = base &+ UInt(truncatingIfNeeded: cache.trailingZeroBitCount &* pageSize)
        let limit = base &+ UInt(truncatingIfNeeded: (64 &- cache.leadingZeroBitCount) &* pageSize)
        if first < searchAddr { searchAddr = first }
        if cache & ~scav != 0 && limit > scavHint { scavHint = limit }
        update(base: base, npages: 64, contig: false, alloc: false)
        checkInvariantsIfExpensive()
    }

    // MARK: - Summary maintenance

    /// Go's `pageAlloc.update`: recompute the leaf summaries of the chunks under
    /// [base, base+npages pages) and propagate changes up the tree. `contig` says the range was
    /// allocated or freed as a whole, so chunks strictly inside it are all-allocated or all-free.
    private mutating func update(base: UInt, npages: Int, contig: Bool, alloc: Bool) {
        let leaf = summaryLevels &- 1
        let limit = base &+ UInt(truncatingIfNeeded: npages) &<< UInt(pageShift) &- 1
        let sc = Self.chunkIndex(base)
        let ec = Self.chunkIndex(limit)
        if sc == ec {
            let slot = summaryPointer(leaf, sc)
            let new = chunk(sc).pointee.pallocBits.summarize()
            if slot.pointee == new { return }
            slot.pointee = new
        } else if contig {
            summaryPointer(leaf, sc).pointee = chunk(sc).pointee.pallocBits.summarize()
            let whole = alloc ? PallocSum.none : PallocSum.freeChunk
            var c = sc &+ 1
            while c < ec {
                summaryPointer(leaf, c).pointee = whole
                c &+= 1
            }
            summaryPointer(leaf, ec).pointee = chunk(ec).pointee.pallocBits.summarize()
        } else {
            var c = sc
            while c <= ec {
                summaryPointer(leaf, c).pointee = chunk(c).pointee.pallocBits.summarize()
                c &+= 1
            }
        }
        // Walk up; stop at the first level where nothing changed.
        var level = leaf &- 1
        while level >= 0 {
            let shift = Self.levelShift(level)
            let childLogPages = Self.levelLogPages(level &+ 1)
            var changed = false
            var i = sc &>> shift
            let last = ec &>> shift
            while i <= last {
                let merged = PallocSum.merge(summaryPointer(level &+ 1, i &<< summaryLevelBits),
                                             logChildPages: childLogPages)
                let slot = summaryPointer(level, i)
                if slot.pointee != merged {
                    slot.pointee = merged
                    changed = true
                }
                i &+= 1
            }
            if !changed { break }
            level &-= 1
        }
    }

    // MARK: - Scavenge (the mechanism lives with its policy, in Scavenger.swift)

    // MARK: - Invariant checks

    @inline(__always)
    func checkInvariantsIfExpensive() {
        #if GOMALLOC_EXPENSIVE_CHECKS
        checkInvariants()
        #endif
    }

    /// The expensive walk: I1...I9, every summary at every level recomputed from the bitmaps.
    package func checkInvariants() {
        let leaf = summaryLevels &- 1

        // I8: the grown ranges.
        var grownPages = 0
        var k = 0
        while k < rangeCount {
            let r = ranges![k]
            let chunkMask = UInt(pallocChunkBytes &- 1)
            if r.base & chunkMask != 0 || r.limit & chunkMask != 0 || r.base >= r.limit {
                throwFatal("pageAlloc.checkInvariants: grown range not chunk-aligned")
            }
            if k > 0 && ranges![k &- 1].limit >= r.base {
                throwFatal("pageAlloc.checkInvariants: grown ranges unsorted, overlapping or unmerged")
            }
            grownPages &+= Int(truncatingIfNeeded: (r.limit &- r.base) &>> UInt(pageShift))
            k &+= 1
        }
        if rangeCount == 0 {
            if startChunk != 0 || endChunk != 0 { throwFatal("pageAlloc.checkInvariants: chunk span without ranges") }
        } else if startChunk != Self.chunkIndex(ranges![0].base)
                    || endChunk != Self.chunkIndex(ranges![rangeCount &- 1].limit &- 1) &+ 1 {
            throwFatal("pageAlloc.checkInvariants: chunk span does not match the grown ranges")
        }

        // I2, I3, I5, I6, I7, I9: every grown chunk, in address order.
        var allocated = 0
        var scavenged = 0
        var firstFree = maxSearchAddr
        k = 0
        while k < rangeCount {
            let r = ranges![k]
            var c = Self.chunkIndex(r.base)
            let last = Self.chunkIndex(r.limit &- 1)
            while c <= last {
                var l = 0
                while l < summaryLevels {
                    if block(l, (c &>> Self.levelShift(l)) &>> logSummariesPerBlock) == nil {
                        throwFatal("pageAlloc.checkInvariants: summary block of a grown chunk not mapped")
                    }
                    l &+= 1
                }
                guard let d = chunkIfMapped(c) else {
                    throwFatal("pageAlloc.checkInvariants: bitmaps of a grown chunk not mapped")
                }
                let bits = d.pointee.pallocBits
                let scavBits = d.pointee.scavenged
                let chunkBase = Self.chunkBase(c)
                var w = 0
                while w < pallocChunkWords {
                    if bits.words[w] & scavBits.words[w] != 0 {
                        throwFatal("pageAlloc.checkInvariants: page both allocated and scavenged")
                    }
                    let candidates = ~(bits.words[w] | scavBits.words[w])
                    if candidates != 0 {
                        let highest = (w &<< 6) &+ 63 &- candidates.leadingZeroBitCount
                        if chunkBase &+ UInt(truncatingIfNeeded: highest) &<< UInt(pageShift) >= scavHint {
                            throwFatal("pageAlloc.checkInvariants: free unscavenged page above scavHint")
                        }
                    }
                    w &+= 1
                }
                allocated &+= bits.count
                scavenged &+= scavBits.count
                if summary(leaf, c) != bits.summarize() {
                    throwFatal("pageAlloc.checkInvariants: leaf summary does not match bitmap")
                }
                if firstFree == maxSearchAddr {
                    let (i, _) = bits.find1(searchIndex: 0)
                    if i >= 0 { firstFree = chunkBase &+ UInt(truncatingIfNeeded: i) &<< UInt(pageShift) }
                }
                c &+= 1
            }
            k &+= 1
        }
        if allocated != inUse { throwFatal("pageAlloc.checkInvariants: inUsePages != allocated bits") }
        if scavenged != scav { throwFatal("pageAlloc.checkInvariants: scavengedPages != scavenged bits") }
        if grownPages != total { throwFatal("pageAlloc.checkInvariants: totalPages != grown pages") }
        if firstFree != maxSearchAddr && searchAddr > firstFree {
            throwFatal("pageAlloc.checkInvariants: searchAddr above the first free page")
        }

        // I1, I3, I4: every summary in every mapped block, and every never-grown chunk.
        guard let root else { return }
        var table = 0
        while table <= chunkTable {
            var slot = 0
            while slot < Self.rootSlots(table) {
                if let directory = root[Self.rootBase(table) &+ slot] {
                    var m = 0
                    while m < 1 << logDirectoryEntries {
                        if directory[m] != nil {
                            let blockIndex = (slot &<< logDirectoryEntries) | m
                            if table == chunkTable {
                                checkChunkBlock(blockIndex)
                            } else {
                                checkSummaryBlock(level: table, blockIndex: blockIndex)
                            }
                        }
                        m &+= 1
                    }
                }
                slot &+= 1
            }
            table &+= 1
        }
    }

    /// I1, I3, I4 for one mapped block of summaries.
    private func checkSummaryBlock(level: Int, blockIndex: Int) {
        let leaf = summaryLevels &- 1
        var e = 0
        while e < 1 << logSummariesPerBlock {
            let i = (blockIndex &<< logSummariesPerBlock) | e
            var expected = PallocSum.none
            if level == leaf {
                if isGrown(i) { expected = chunk(i).pointee.pallocBits.summarize() }
            } else {
                let firstChild = i &<< summaryLevelBits
                if let childBlock = block(level &+ 1, firstChild &>> logSummariesPerBlock) {
                    let children = childBlock.assumingMemoryBound(to: PallocSum.self)
                        + (firstChild & ((1 &<< logSummariesPerBlock) &- 1))
                    expected = PallocSum.merge(children, logChildPages: Self.levelLogPages(level &+ 1))
                }
            }
            if summary(level, i) != expected {
                throwFatal("pageAlloc.checkInvariants: summary does not match its children or bitmap")
            }
            e &+= 1
        }
    }

    /// I1 for one mapped block of chunk bitmaps: chunks never grown are all zero.
    private func checkChunkBlock(_ blockIndex: Int) {
        var e = 0
        while e < 1 << logChunksPerBlock {
            let ci = (blockIndex &<< logChunksPerBlock) | e
            if !isGrown(ci) {
                let d = chunk(ci).pointee
                if !d.pallocBits.isAllClear || !d.scavenged.isAllClear {
                    throwFatal("pageAlloc.checkInvariants: bits set in a chunk that was never grown")
                }
            }
            e &+= 1
        }
    }
}

// MARK: - Testing

extension PageAlloc {
    /// A private allocator in sysAlloc'd memory (tests over fake addresses use
    /// releasesMemory: false). Pair with destroyForTesting.
    package static func makeForTesting(releasesMemory: Bool) -> UnsafeMutablePointer<PageAlloc> {
        let bytes = (MemoryLayout<PageAlloc>.stride &+ pageMask) & ~pageMask
        guard let memory = sysAlloc(size: bytes) else { throwFatal("pageAlloc.makeForTesting: out of memory") }
        let p = memory.bindMemory(to: PageAlloc.self, capacity: 1)
        p.initialize(to: PageAlloc(releasesMemory: releasesMemory))
        return p
    }

    /// Deinitialise (unmapping all metadata) and unmap an allocator from makeForTesting.
    package static func destroyForTesting(_ p: UnsafeMutablePointer<PageAlloc>) {
        p.deinitialize(count: 1)
        let bytes = (MemoryLayout<PageAlloc>.stride &+ pageMask) & ~pageMask
        sysFree(UnsafeMutableRawPointer(p), size: bytes)
    }
}
