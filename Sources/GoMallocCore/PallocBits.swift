// PallocBits.swift — one chunk's page bitmaps: which of its 512 pages are allocated, and which
// free pages have had their memory returned to the OS.
//
// Role: the leaf data of the page allocator. `PallocBits` is 512 bits, one per 8 KiB page of a
//   4 MiB chunk, with the word-at-a-time primitives the allocator needs: summarize (start, max,
//   end free runs), find (first fit of n free pages at or after an index), and set / clear /
//   count over a range. `PallocData` pairs the allocation bitmap with the scavenged bitmap and
//   keeps the two consistent when pages are allocated, freed or scavenged.
// Go counterpart: mpallocbits.go (pageBits, pallocBits, pallocData, findBitRange64),
//   mgcscavenge.go (the scavenged bitmap and the search for scavenge candidates).
// Invariants:
//   I1. Page i of the chunk is bit (i & 63) of word (i >> 6). In `pallocBits` 1 = allocated,
//       0 = free. In `scavenged` 1 = free and its memory was returned to the OS.
//   I2. summarize() returns the lengths of the free run at the low end (start), the longest free
//       run (max) and the free run at the high end (end); all three are 512 iff no bit is set.
//   I3. find(npages:searchIndex:) returns the lowest i >= searchIndex such that pages
//       i..<i+npages are all free (-1 if there is none), and the lowest free page >= searchIndex
//       (512 if there is none).
//   I4. In a PallocData, pallocBits & scavenged == 0 word by word: a scavenged page is free.
//   I5. Nothing here loops over single pages: every operation works on whole 64-bit words with
//       masks, popcount, and leading/trailing-zero counts.
// Concurrency: plain values inside PageAlloc's metadata; the heap lock (held by PageAlloc's
//   caller) serialises every access.
// Failure: PallocData.free of a page that is not allocated calls throwFatal; index ranges
//   outside 0..<512 are caught by internalCheck in debug builds.

/// Go's `pallocBits` (and `pageBits`): one bit per page of a chunk.
struct PallocBits {
    /// Word w holds pages w*64 ..< w*64+64, lowest page in the lowest bit (I1).
    var words: InlineArray<8, UInt64>  // pallocChunkWords

    @inline(__always)
    init() { words = InlineArray(repeating: 0) }

    // MARK: - Masks

    /// The bits of word `w` that fall inside pages [first, limit).
    @inline(__always)
    static func mask(word w: Int, first: Int, limit: Int) -> UInt64 {
        let base = w &<< 6
        let lo = first > base ? first &- base : 0
        let hi = limit < base &+ 64 ? limit &- base : 64
        let upper: UInt64 = hi == 64 ? ~0 : (1 &<< UInt64(truncatingIfNeeded: hi)) &- 1
        let lower: UInt64 = (1 &<< UInt64(truncatingIfNeeded: lo)) &- 1
        return upper & ~lower
    }

    @inline(__always)
    private static func checkRange(_ i: Int, _ n: Int) {
        internalCheck(i >= 0 && n > 0 && i &+ n <= pallocChunkPages, "pallocBits: page range out of bounds")
    }

    // MARK: - Single pages

    @inline(__always)
    func get(_ i: Int) -> Bool {
        (words[i &>> 6] >> UInt64(truncatingIfNeeded: i & 63)) & 1 != 0
    }

    @inline(__always)
    mutating func set(_ i: Int) {
        words[i &>> 6] |= 1 &<< UInt64(truncatingIfNeeded: i & 63)
    }

    @inline(__always)
    mutating func clear(_ i: Int) {
        words[i &>> 6] &= ~(1 &<< UInt64(truncatingIfNeeded: i & 63))
    }

    // MARK: - Ranges (pages [i, i+n))

    /// Go's `setRange`.
    @inline(__always)
    mutating func setRange(_ i: Int, _ n: Int) {
        Self.checkRange(i, n)
        let limit = i &+ n
        var w = i &>> 6
        let last = (limit &- 1) &>> 6
        while w <= last {
            words[w] |= Self.mask(word: w, first: i, limit: limit)
            w &+= 1
        }
    }

    /// Go's `clearRange`.
    @inline(__always)
    mutating func clearRange(_ i: Int, _ n: Int) {
        Self.checkRange(i, n)
        let limit = i &+ n
        var w = i &>> 6
        let last = (limit &- 1) &>> 6
        while w <= last {
            words[w] &= ~Self.mask(word: w, first: i, limit: limit)
            w &+= 1
        }
    }

    /// Go's `popcntRange`: how many bits of [i, i+n) are set.
    @inline(__always)
    func countRange(_ i: Int, _ n: Int) -> Int {
        Self.checkRange(i, n)
        let limit = i &+ n
        var w = i &>> 6
        let last = (limit &- 1) &>> 6
        var total = 0
        while w <= last {
            total &+= (words[w] & Self.mask(word: w, first: i, limit: limit)).nonzeroBitCount
            w &+= 1
        }
        return total
    }

    /// Whether every bit of [i, i+n) is set.
    @inline(__always)
    func isRangeSet(_ i: Int, _ n: Int) -> Bool {
        Self.checkRange(i, n)
        let limit = i &+ n
        var w = i &>> 6
        let last = (limit &- 1) &>> 6
        while w <= last {
            let m = Self.mask(word: w, first: i, limit: limit)
            if words[w] & m != m { return false }
            w &+= 1
        }
        return true
    }

    /// Whether every bit of [i, i+n) is clear.
    @inline(__always)
    func isRangeClear(_ i: Int, _ n: Int) -> Bool {
        countRange(i, n) == 0
    }

    @inline(__always)
    mutating func setAll() {
        var w = 0
        while w < pallocChunkWords { words[w] = ~0; w &+= 1 }
    }

    @inline(__always)
    mutating func clearAll() {
        var w = 0
        while w < pallocChunkWords { words[w] = 0; w &+= 1 }
    }

    /// Set bits in the whole chunk.
    @inline(__always)
    var count: Int {
        var total = 0
        var w = 0
        while w < pallocChunkWords { total &+= words[w].nonzeroBitCount; w &+= 1 }
        return total
    }

    @inline(__always)
    var isAllClear: Bool {
        var acc: UInt64 = 0
        var w = 0
        while w < pallocChunkWords { acc |= words[w]; w &+= 1 }
        return acc == 0
    }

    // MARK: - Word tricks

    /// Go's `findBitRange64`: the lowest bit position at which `n` consecutive 1 bits of `c`
    /// begin (1 <= n <= 64), or 64 if there is no such run inside the word.
    ///
    /// Erosion: if bit i of r says "bits i..<i+k of c are all 1", then r & (r >> j) for j <= k
    /// says the same for k + j bits. Growing k by doubling reaches n in at most 6 steps.
    @inline(__always)
    static func findBitRange64(_ c: UInt64, _ n: Int) -> Int {
        var r = c
        var have = 1
        while have < n && r != 0 {
            let step = have < n &- have ? have : n &- have
            r &= r >> UInt64(truncatingIfNeeded: step)
            have &+= step
        }
        return r.trailingZeroBitCount  // 64 when r == 0
    }

    /// The length of the longest run of 1 bits in `c`: erode by doubling until the word empties,
    /// then binary-search the remainder (at most 12 steps, never one step per bit).
    @inline(__always)
    static func longestRun64(_ c: UInt64) -> Int {
        if c == 0 { return 0 }
        if c == ~0 { return 64 }
        var r = c
        var have = 1
        while true {
            let next = r & (r >> UInt64(truncatingIfNeeded: have))
            if next == 0 { break }
            r = next
            have &*= 2
        }
        // The longest run is in [have, 2*have); add the remaining powers of two that still fit.
        var step = have &>> 1
        while step > 0 {
            let next = r & (r >> UInt64(truncatingIfNeeded: step))
            if next != 0 { r = next; have &+= step }
            step &>>= 1
        }
        return have
    }

    // MARK: - Summaries and search

    /// Go's `pallocBits.summarize` (I2).
    func summarize() -> PallocSum {
        // Free pages at the low end.
        var start = 0
        var w = 0
        while w < pallocChunkWords && words[w] == 0 { start &+= 64; w &+= 1 }
        if w == pallocChunkWords { return .freeChunk }
        start &+= words[w].trailingZeroBitCount

        // Free pages at the high end (some word is nonzero, so this stops).
        var end = 0
        w = pallocChunkWords &- 1
        while words[w] == 0 { end &+= 64; w &-= 1 }
        end &+= words[w].leadingZeroBitCount

        // Longest run: runs that cross word boundaries are the top zeros of one word, any
        // all-zero words, and the bottom zeros of the next; runs inside a word need a word trick.
        var best = start > end ? start : end
        var cur = 0
        w = 0
        while w < pallocChunkWords {
            let x = words[w]
            if x == 0 {
                cur &+= 64
            } else {
                cur &+= x.trailingZeroBitCount
                if cur > best { best = cur }
                cur = x.leadingZeroBitCount
                // An inner run is at most 62 long; look only if it could beat `best`.
                if best < 62 && Self.findBitRange64(~x, best &+ 1) < 64 {
                    let inner = Self.longestRun64(~x)
                    if inner > best { best = inner }
                }
            }
            w &+= 1
        }
        return PallocSum(start: start, max: best, end: end)
    }

    /// Go's `pallocBits.find` (I3): first fit of `npages` (1...512) free pages at or after
    /// `searchIndex`. Returns the run's first page (-1 if none) and the first free page at or
    /// after `searchIndex` (512 if none), which the caller may use as its next search start.
    @inline(__always)
    func find(npages: Int, searchIndex: Int) -> (index: Int, searchIndex: Int) {
        internalCheck(npages > 0 && npages <= pallocChunkPages, "pallocBits.find: bad npages")
        internalCheck(searchIndex >= 0 && searchIndex <= pallocChunkPages, "pallocBits.find: bad searchIndex")
        if npages == 1 { return find1(searchIndex: searchIndex) }
        return findN(npages: npages, searchIndex: searchIndex)
    }

    /// Go's `find1`: the first free page at or after `searchIndex`.
    @inline(__always)
    func find1(searchIndex: Int) -> (index: Int, searchIndex: Int) {
        var w = searchIndex &>> 6
        // Pages below searchIndex count as allocated.
        var below: UInt64 = (1 &<< UInt64(truncatingIfNeeded: searchIndex & 63)) &- 1
        while w < pallocChunkWords {
            let x = words[w] | below
            if x != ~0 {
                let i = (w &<< 6) &+ (~x).trailingZeroBitCount
                return (i, i)
            }
            below = 0
            w &+= 1
        }
        return (-1, pallocChunkPages)
    }

    /// Go's `findSmallN` and `findLargeN` in one loop. A run either sits inside one word
    /// (only possible when npages <= 64: findBitRange64 finds it) or is the top zeros of one
    /// word, zero or more all-free words, and the bottom zeros of a later word.
    @inline(__always)
    func findN(npages: Int, searchIndex: Int) -> (index: Int, searchIndex: Int) {
        var w = searchIndex &>> 6
        var below: UInt64 = (1 &<< UInt64(truncatingIfNeeded: searchIndex & 63)) &- 1
        var firstFree = -1
        var runStart = 0  // first page of the run that reaches the top of the previous word
        var runSize = 0   // its length (0: the previous word's top page is allocated)
        while w < pallocChunkWords {
            let x = words[w] | below
            below = 0
            if x == ~0 {
                runSize = 0
                w &+= 1
                continue
            }
            if firstFree < 0 { firstFree = (w &<< 6) &+ (~x).trailingZeroBitCount }
            let bottom = x.trailingZeroBitCount  // 64 if the word is all free
            if runSize &+ bottom >= npages {
                return (runSize == 0 ? (w &<< 6) : runStart, firstFree)
            }
            if x == 0 {
                if runSize == 0 { runStart = w &<< 6 }
                runSize &+= 64
            } else {
                if npages < 64 {
                    let j = Self.findBitRange64(~x, npages)
                    if j < 64 { return ((w &<< 6) &+ j, firstFree) }
                }
                runSize = x.leadingZeroBitCount
                runStart = (w &<< 6) &+ 64 &- runSize
            }
            w &+= 1
        }
        return (-1, firstFree < 0 ? pallocChunkPages : firstFree)
    }
}

/// Go's `pallocData`: a chunk's allocation bitmap and scavenged bitmap, 128 bytes.
struct PallocData {
    /// 1 = allocated.
    var pallocBits: PallocBits
    /// 1 = free and returned to the OS (I4: never set where pallocBits is set).
    var scavenged: PallocBits

    @inline(__always)
    init() {
        pallocBits = PallocBits()
        scavenged = PallocBits()
    }

    /// Go's `pallocData.allocRange`: mark pages [i, i+n) allocated and clear their scavenged
    /// bits; returns how many of them were scavenged.
    @inline(__always)
    mutating func allocRange(_ i: Int, _ n: Int) -> Int {
        internalCheck(pallocBits.isRangeClear(i, n), "pallocData.allocRange: page already allocated")
        let scav = scavenged.countRange(i, n)
        if scav != 0 { scavenged.clearRange(i, n) }
        pallocBits.setRange(i, n)
        return scav
    }

    /// Go's `pallocData.allocAll`; returns how many pages were scavenged.
    @inline(__always)
    mutating func allocAll() -> Int {
        internalCheck(pallocBits.isAllClear, "pallocData.allocAll: page already allocated")
        let scav = scavenged.count
        scavenged.clearAll()
        pallocBits.setAll()
        return scav
    }

    /// Go's `pallocBits.free`: pages [i, i+n) must all be allocated.
    @inline(__always)
    mutating func free(_ i: Int, _ n: Int) {
        if !pallocBits.isRangeSet(i, n) { throwFatal("pageAlloc.free: freeing a page that is not allocated") }
        pallocBits.clearRange(i, n)
    }

    /// Go's `findScavengeCandidate` plus `scavengeRangeLocked`'s bit update: find the highest run
    /// of free, unscavenged pages below page `limit`, keep at most its top `maxPages` pages, mark
    /// them scavenged and return them. count == 0 when there is no such page.
    @inline(__always)
    mutating func scavengeHighestRun(below limit: Int, maxPages: Int) -> (index: Int, count: Int) {
        if limit <= 0 || maxPages <= 0 { return (0, 0) }
        var w = (limit &- 1) &>> 6
        var cand = ~(pallocBits.words[w] | scavenged.words[w]) & PallocBits.mask(word: w, first: 0, limit: limit)
        while cand == 0 {
            if w == 0 { return (0, 0) }
            w &-= 1
            cand = ~(pallocBits.words[w] | scavenged.words[w])
        }
        // The run's top page, then count its pages downwards, a word at a time.
        let top = 63 &- cand.leadingZeroBitCount
        let high = (w &<< 6) &+ top &+ 1  // one past the run's top page
        var length = (~(cand &<< UInt64(truncatingIfNeeded: 63 &- top))).leadingZeroBitCount
        if length == top &+ 1 {
            // The run reaches bit 0: it may continue into lower words.
            var v = w
            while v > 0 && length < maxPages {
                v &-= 1
                let lower = ~(pallocBits.words[v] | scavenged.words[v])
                let more = (~lower).leadingZeroBitCount
                length &+= more
                if more < 64 { break }
            }
        }
        if length > maxPages { length = maxPages }
        let low = high &- length
        scavenged.setRange(low, length)
        return (low, length)
    }
}
