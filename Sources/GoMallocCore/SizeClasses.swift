// SizeClasses.swift — the size-class table, computed the way Go's mksizeclasses.go does.
//
// Role: turn a request size into one of 67 size classes (class 0 means "large"), and give
//   each class its object size, span size in pages, object count and division multiplier.
//   The table is generated at start-up (a few microseconds), not pasted: the generator is
//   the specification, and a test compares its output with the table in the seed notes.
// Go counterpart: mksizeclasses.go (generator), sizeclasses.go (its output), msize.go.
// Invariants:
//   I1. classToSize is strictly increasing; class 67 is maxSmallSize (32768).
//   I2. Each class wastes at most 1/8 of its span at the tail (allocsize % size <= allocsize / 8).
//   I3. sizeToClass(n) is the smallest class whose size is >= n, for every n in 1...32768.
//   I4. For every offset o in a span of class c: (o * divMul[c]) >> 32 == o / size[c].
// Concurrency: built once before the heap is published; immutable afterwards.
// Failure: none (pure computation into caller-provided memory).

/// One row of the generated table, with the columns of Go's sizeclasses.go comment.
package struct SizeClassRow {
    package var size: Int        // bytes/obj
    package var npages: Int      // span size in pages
    package init(size: Int, npages: Int) { self.size = size; self.npages = npages }
    package var objects: Int { npages * pageSize / size }
    package var spanBytes: Int { npages * pageSize }
    package var tailWaste: Int { spanBytes - objects * size }
    /// Largest power of two dividing `size`, capped at the page size (spans are page-aligned).
    package var minAlign: Int { Swift.min(size & -size, pageSize) }
}

/// Go's mksizeclasses algorithm. Writes class 1...67 rows into `rows` (row 0 is class 0, size 0)
/// and returns how many rows were produced (68 with Go's parameters).
package func generateSizeClasses(into rows: UnsafeMutablePointer<SizeClassRow>, capacity: Int) -> Int {
    var count = 1
    rows[0] = SizeClassRow(size: 0, npages: 0)
    var align = 8
    var size = align
    while size <= maxSmallSize {
        if size & (size - 1) == 0 {
            // Bump the alignment at powers of two: 16 from 32 bytes (since Go 1.16, which is
            // what makes room for the 24-byte class), size/8 from 128, 256 from 2048.
            if size >= 2048 {
                align = 256
            } else if size >= 128 {
                align = size / 8
            } else if size >= 32 {
                align = 16
            }
        }
        // Grow the span until the tail left over is at most 1/8 of it.
        var allocSize = pageSize
        while allocSize % size > allocSize / 8 { allocSize += pageSize }
        let npages = allocSize / pageSize
        // Same span size and same object count as the previous class: merge into this size.
        if count > 1 && npages == rows[count - 1].npages
            && allocSize / size == allocSize / rows[count - 1].size {
            rows[count - 1].size = size
        } else {
            if count == capacity { return count }
            rows[count] = SizeClassRow(size: size, npages: npages)
            count += 1
        }
        size += align
    }
    // Make objects as large as the span allows with the same object count, keeping the
    // 128-byte granularity the size-to-class lookup depends on.
    for i in 1..<count {
        let spanBytes = rows[i].npages * pageSize
        let newSize = (spanBytes / (spanBytes / rows[i].size)) & ~(largeSizeDiv - 1)
        if newSize > rows[i].size { rows[i].size = newSize }
    }
    return count
}

/// Go 1.17's division by multiplication: index = (offset * divMul) >> 32.
@inline(__always)
package func divMul(forSize size: Int) -> UInt32 {
    UInt32(truncatingIfNeeded: (UInt64(UInt32.max) / UInt64(size)) &+ 1)
}

/// The per-class tables. Lives in heap metadata; built by `build`. (The size-to-class lookup
/// is the flat table writeFastTable fills from classToSize.)
struct SizeClassTable {
    var classToSize: InlineArray<68, UInt32>
    var classToNPages: InlineArray<68, UInt8>
    var classToNElems: InlineArray<68, UInt16>
    var classToDivMul: InlineArray<68, UInt32>

    init() {
        classToSize = InlineArray(repeating: 0)
        classToNPages = InlineArray(repeating: 0)
        classToNElems = InlineArray(repeating: 0)
        classToDivMul = InlineArray(repeating: 0)
    }

    /// Generate the classes and fill every table.
    mutating func build() {
        var rows = InlineArray<72, SizeClassRow>(repeating: SizeClassRow(size: 0, npages: 0))
        let n = withUnsafeMutableBytes(of: &rows) { raw in
            generateSizeClasses(into: raw.baseAddress!.assumingMemoryBound(to: SizeClassRow.self), capacity: 72)
        }
        if n != numSizeClasses { throwFatal("size class generator did not produce 68 classes") }
        for c in 0..<numSizeClasses {
            let row = rows[c]
            classToSize[c] = UInt32(row.size)
            classToNPages[c] = UInt8(row.npages)
            classToNElems[c] = c == 0 ? 0 : UInt16(row.objects)
            classToDivMul[c] = c == 0 ? 0 : divMul(forSize: row.size)
        }
    }
}

// MARK: - Size to class (the one lookup every allocation uses)

/// Entries of one flat size-to-class table: one per 8-byte step up to maxSmallSize.
let fastClassTableEntries = maxSmallSize / smallSizeDiv + 1    // 4097
/// Bytes of the flat lookup tables in heap metadata (MHeap.fastClassTable), each indexed by
/// (size + 7) / 8 over every small size and holding span classes: Go's rule scan, Go's rule
/// noscan, the C rule scan, the C rule noscan. A lookup is one load with no bounds check and
/// no branch, the C and Swift rules share one code path, and the C ABI (always noscan) gets
/// its span class without computing it. (Go splits its table at 1 KiB into 8- and 128-byte
/// steps to save 3.5 KiB; here the split cost five instructions on every malloc.)
let fastClassTableBytes = 4 * fastClassTableEntries

extension SizeClassTable {
    /// Fill the flat tables `t` (fastClassTableBytes bytes): for Go's rule, entry i is the
    /// smallest class of at least 8i bytes; the C rule then skips classes not a multiple of
    /// 16 for requests over 8 bytes (9...24 bytes get 32, not the 8-aligned 24), glibc's
    /// alignment promise. Each is stored as its scan and its noscan span class.
    func writeFastTable(_ t: UnsafeMutablePointer<UInt8>) {
        var c = 1
        for i in 0..<fastClassTableEntries {
            let size = i * smallSizeDiv
            while Int(classToSize[c]) < size { c += 1 }
            var cc = c
            while size > 8 && classToSize[cc] % 16 != 0 { cc += 1 }
            t[i] = SpanClass(sizeClass: c, noscan: false).raw
            t[fastClassTableEntries + i] = SpanClass(sizeClass: c, noscan: true).raw
            t[2 * fastClassTableEntries + i] = SpanClass(sizeClass: cc, noscan: false).raw
            t[3 * fastClassTableEntries + i] = SpanClass(sizeClass: cc, noscan: true).raw
        }
    }
}

extension UnsafeMutablePointer where Pointee == MHeap {
    /// Span class for a small request (1...maxSmallSize; 0 is served as 1 by the tables);
    /// `cABI` keeps blocks > 8 bytes 16-byte aligned.
    @inline(__always)
    func spanClass(for size: Int, cABI: Bool, noscan: Bool) -> SpanClass {
        let table = (cABI ? 2 : 0) &+ (noscan ? 1 : 0)
        return SpanClass(raw: pointee.classTable[table &* fastClassTableEntries &+ ((size &+ 7) &>> 3)])
    }

    /// The same lookup in the table the malloc fast path reads (MHeap.fastClassTable): the
    /// real one, or while heap profiling is on one whose scan classes are 0 (Profile.swift).
    @inline(__always)
    func fastSpanClass(for size: Int, cABI: Bool, noscan: Bool) -> SpanClass {
        let table = (cABI ? 2 : 0) &+ (noscan ? 1 : 0)
        return SpanClass(raw: pointee.fastClassTable[table &* fastClassTableEntries &+ ((size &+ 7) &>> 3)])
    }

    /// Size class for a small request (as spanClass(for:cABI:noscan:)).
    @inline(__always)
    func sizeClass(for size: Int, cABI: Bool) -> Int {
        spanClass(for: size, cABI: cABI, noscan: false).sizeClass
    }

    /// Smallest class >= the class of `size` whose objects are all `align`-aligned
    /// (align <= pageSize), or 0 if none.
    func alignedSizeClass(for size: Int, align: Int) -> Int {
        var c = sizeClass(for: Swift.max(size, 1), cABI: false)
        while c < numSizeClasses {
            if Int(pointee.sizeClasses.classToSize[c]) % align == 0 { return c }
            c &+= 1
        }
        return 0
    }
}

/// `spanClass = sizeclass << 1 | noscan`: 136 span classes.
struct SpanClass: Equatable {
    var raw: UInt8

    @inline(__always) init(raw: UInt8) { self.raw = raw }
    @inline(__always) init(sizeClass: Int, noscan: Bool) {
        raw = UInt8(truncatingIfNeeded: sizeClass << 1) | (noscan ? 1 : 0)
    }
    @inline(__always) var sizeClass: Int { Int(raw >> 1) }
    @inline(__always) var noscan: Bool { raw & 1 != 0 }
    @inline(__always) var index: Int { Int(raw) }

    // Large objects: size class 0, scan (raw 0) or noscan (raw 1), as in Go.
}
