// PallocSum.swift — the free-page summary of one radix-tree entry, packed into a word.
//
// Role: describe the free pages of an aligned region (a 4 MiB chunk at the leaf, up to
//   16 GiB at level 0) by three numbers: `start` (free pages at the region's low end),
//   `max` (the longest free run anywhere inside it) and `end` (free pages at its high end).
//   Eight neighbouring summaries merge into the summary of their parent region.
//   PageAlloc.swift explains how the tree of summaries is used.
// Go counterpart: mpagealloc.go (pallocSum, packPallocSum, unpack, mergeSummaries).
// Invariants:
//   I1. start, max and end are each in 0...maxPackedValue (2^21, the pages of a level-0 entry),
//       with start <= max and end <= max.
//   I2. Packing: start in bits 0..<21, max in 21..<42, end in 42..<63. The one value that does
//       not fit 21 bits, 2^21 (a completely free level-0 entry), is stored as bit 63 alone and
//       unpacks as start == max == end == 2^21.
//   I3. raw == 0 exactly when the region has no free page (or is not part of the heap).
//   I4. For a region of 2^k pages, start == 2^k implies max == end == 2^k (it is all free).
//   I5. merge(children) equals the summary computed directly from the children's pages.
// Concurrency: a plain value; the PageAlloc that stores it is guarded by the heap lock.
// Failure: none; out-of-range fields are caught by internalCheck in debug builds.

/// Go's `logMaxPackedValue`: a level-0 entry covers 2^21 pages, so fields need 21 bits.
let logMaxPackedValue = logPallocChunkPages + (summaryLevels - 1) * summaryLevelBits  // 21
/// Go's `maxPackedValue`: the largest value a field can hold, 2^21.
let maxPackedValue = 1 << logMaxPackedValue

/// Go's `pallocSum`: (start, max, end) of one region, packed as described in the header.
struct PallocSum: Equatable {
    /// The packed word (I2).
    var raw: UInt64

    @inline(__always)
    init(raw: UInt64) { self.raw = raw }

    /// Go's `packPallocSum`.
    @inline(__always)
    init(start: Int, max: Int, end: Int) {
        internalCheck(start >= 0 && max >= 0 && end >= 0, "pallocSum: negative field")
        internalCheck(start <= max && end <= max && max <= maxPackedValue, "pallocSum: field out of range")
        if max == maxPackedValue {
            // Only a completely free level-0 entry reaches 2^21; then start == end == max too.
            raw = 1 << 63
            return
        }
        let fieldMask = UInt64(maxPackedValue - 1)
        raw = (UInt64(truncatingIfNeeded: start) & fieldMask)
            | ((UInt64(truncatingIfNeeded: max) & fieldMask) << UInt64(logMaxPackedValue))
            | ((UInt64(truncatingIfNeeded: end) & fieldMask) << UInt64(2 * logMaxPackedValue))
    }

    /// No free page at all (also the summary of memory that was never grown).
    @inline(__always)
    static var none: PallocSum { PallocSum(raw: 0) }

    /// The summary of a completely free chunk: 512 free pages at both ends and in the middle.
    @inline(__always)
    static var freeChunk: PallocSum {
        PallocSum(start: pallocChunkPages, max: pallocChunkPages, end: pallocChunkPages)
    }

    @inline(__always)
    var isNone: Bool { raw == 0 }

    @inline(__always)
    private var allFreeTop: Bool { raw & (1 << 63) != 0 }

    /// Free pages at the low end of the region.
    @inline(__always)
    var start: Int {
        if allFreeTop { return maxPackedValue }
        return Int(truncatingIfNeeded: raw & UInt64(maxPackedValue - 1))
    }

    /// The longest run of free pages in the region.
    @inline(__always)
    var max: Int {
        if allFreeTop { return maxPackedValue }
        return Int(truncatingIfNeeded: (raw >> UInt64(logMaxPackedValue)) & UInt64(maxPackedValue - 1))
    }

    /// Free pages at the high end of the region.
    @inline(__always)
    var end: Int {
        if allFreeTop { return maxPackedValue }
        return Int(truncatingIfNeeded: (raw >> UInt64(2 * logMaxPackedValue)) & UInt64(maxPackedValue - 1))
    }

    /// Go's `mergeSummaries`: the summary of a parent region from its 8 children, in address
    /// order; each child covers `1 << logChildPages` pages.
    ///
    /// The parent's start grows while children are completely free; its end restarts at every
    /// child that is not completely free; its max is the best of every child's max and of every
    /// run that crosses a boundary (the run ending the previous children + this child's start).
    @inline(__always)
    static func merge(_ children: UnsafePointer<PallocSum>, logChildPages: Int) -> PallocSum {
        let childPages = 1 << logChildPages
        var start = 0
        var best = 0
        var end = 0
        var allFreeSoFar = true
        var k = 0
        while k < (1 << summaryLevelBits) {
            let child = children[k]
            let s = child.start
            let m = child.max
            let e = child.end
            if allFreeSoFar {
                start &+= s
                allFreeSoFar = s == childPages
            }
            // The run that ended the previous children continues into this child's start.
            let crossing = end &+ s
            if crossing > best { best = crossing }
            if m > best { best = m }
            end = e == childPages ? end &+ childPages : e
            k &+= 1
        }
        if end > best { best = end }
        return PallocSum(start: start, max: best, end: end)
    }
}
