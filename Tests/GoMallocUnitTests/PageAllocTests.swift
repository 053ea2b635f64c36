// PageAllocTests.swift — the page allocator (PageAlloc.swift, PallocBits.swift, PallocSum.swift)
// against slow reference versions and a plain-bitmap model.
import XCTest
@testable import GoMallocCoreHosted

private typealias TestRNG = SplitMix64

private let pageBytes = UInt(pageSize)
private let chunkBytes = UInt(pallocChunkBytes)
/// Fake heap addresses: nothing is ever mapped there (releasesMemory: false).
private let fakeBase: UInt = 0x0000_1000_0000_0000

// MARK: - Reference implementations (one page at a time, obviously right)

private func bitsToBools(_ b: PallocBits) -> [Bool] {
    (0..<pallocChunkPages).map { b.get($0) }
}

private func refSummarize(_ allocated: [Bool]) -> (start: Int, max: Int, end: Int) {
    var start = 0
    while start < allocated.count && !allocated[start] { start += 1 }
    var end = 0
    while end < allocated.count && !allocated[allocated.count - 1 - end] { end += 1 }
    var best = 0, cur = 0
    for a in allocated {
        if a { cur = 0 } else { cur += 1; best = max(best, cur) }
    }
    return (start, best, end)
}

private func refFind(_ allocated: [Bool], npages: Int, searchIndex: Int) -> (index: Int, searchIndex: Int) {
    var firstFree = allocated.count
    if searchIndex < allocated.count {
        for i in searchIndex..<allocated.count where !allocated[i] { firstFree = i; break }
    }
    var run = 0
    var i = searchIndex
    while i < allocated.count {
        if allocated[i] { run = 0 } else {
            run += 1
            if run == npages { return (i + 1 - npages, firstFree) }
        }
        i += 1
    }
    return (-1, firstFree)
}

private func randomWord(_ rng: inout TestRNG) -> UInt64 {
    switch rng.below(6) {
    case 0: return 0
    case 1: return ~0
    case 2: return rng.next()
    case 3: return rng.next() & rng.next() & rng.next()   // sparse ones: long free runs
    case 4: return rng.next() | rng.next() | rng.next()   // sparse zeros: short free runs
    default:
        // One run of ones somewhere.
        let lo = rng.below(64), len = rng.inRange(1...64)
        let mask: UInt64 = len >= 64 ? ~0 : (1 << UInt64(len)) - 1
        return mask << UInt64(lo)
    }
}

/// Bitmaps with a mix of shapes: random words, long alternating runs, all free, all allocated.
private func randomBits(_ rng: inout TestRNG) -> PallocBits {
    var b = PallocBits()
    switch rng.below(5) {
    case 0:
        for w in 0..<pallocChunkWords { b.words[w] = randomWord(&rng) }
    case 1, 2:
        var i = 0
        var allocated = rng.below(2) == 0
        let maxRun = [4, 40, 130, 300][rng.below(4)]
        while i < pallocChunkPages {
            let n = min(rng.inRange(1...maxRun), pallocChunkPages - i)
            if allocated { b.setRange(i, n) }
            i += n
            allocated.toggle()
        }
    case 3:
        if rng.below(2) == 0 { b.setAll() }
    default:
        b.set(rng.below(pallocChunkPages))
    }
    return b
}

final class PageAllocTests: XCTestCase {

    // MARK: - PallocBits primitives

    func testPallocLayout() {
        XCTAssertEqual(MemoryLayout<PallocBits>.size, pallocChunkPages / 8)
        XCTAssertEqual(MemoryLayout<PallocData>.size, pallocChunkPages / 4)
        XCTAssertEqual(MemoryLayout<PallocSum>.size, 8)
        XCTAssertEqual(pallocChunkWords, 8)
        // Root slot layout: each table starts where the previous one ends.
        var base = 0
        for table in 0...summaryLevels {
            XCTAssertEqual(PageAlloc.rootBase(table), base, "table \(table)")
            base += PageAlloc.rootSlots(table)
        }
        XCTAssertEqual(base, 277)
        XCTAssertEqual((0..<summaryLevels).map { PageAlloc.levelLogPages($0) }, [21, 18, 15, 12, 9])
    }

    func testRangeOperations() {
        var rng = TestRNG(seed: 1)
        for _ in 0..<3000 {
            var b = randomBits(&rng)
            var model = bitsToBools(b)
            let i = rng.below(pallocChunkPages)
            let n = rng.inRange(1...(pallocChunkPages - i))
            XCTAssertEqual(b.countRange(i, n), model[i..<i + n].filter { $0 }.count)
            XCTAssertEqual(b.isRangeSet(i, n), model[i..<i + n].allSatisfy { $0 })
            XCTAssertEqual(b.isRangeClear(i, n), model[i..<i + n].allSatisfy { !$0 })
            if rng.below(2) == 0 {
                b.setRange(i, n)
                for k in i..<i + n { model[k] = true }
            } else {
                b.clearRange(i, n)
                for k in i..<i + n { model[k] = false }
            }
            XCTAssertEqual(bitsToBools(b), model)
            XCTAssertEqual(b.count, model.filter { $0 }.count)
        }
    }

    func testWordTricksMatchReference() {
        var rng = TestRNG(seed: 2)
        for _ in 0..<20000 {
            let c = randomWord(&rng)
            let bits = (0..<64).map { (c >> UInt64($0)) & 1 == 1 }
            // Reference longest run of ones.
            var best = 0, cur = 0
            for bit in bits { cur = bit ? cur + 1 : 0; best = max(best, cur) }
            XCTAssertEqual(PallocBits.longestRun64(c), best, "word \(c)")
            let n = rng.inRange(1...64)
            var expected = 64
            if n <= 64 {
                for start in 0...(64 - n) where bits[start..<start + n].allSatisfy({ $0 }) {
                    expected = start
                    break
                }
            }
            XCTAssertEqual(PallocBits.findBitRange64(c, n), expected, "word \(c) n \(n)")
        }
    }

    func testSummarizeMatchesReference() {
        var rng = TestRNG(seed: 3)
        for _ in 0..<10000 {
            let b = randomBits(&rng)
            let ref = refSummarize(bitsToBools(b))
            let sum = b.summarize()
            XCTAssertEqual(sum.start, ref.start)
            XCTAssertEqual(sum.max, ref.max)
            XCTAssertEqual(sum.end, ref.end)
            if sum.start != ref.start || sum.max != ref.max || sum.end != ref.end { return }
        }
    }

    func testFindMatchesReference() {
        var rng = TestRNG(seed: 4)
        for _ in 0..<5000 {
            let b = randomBits(&rng)
            let bools = bitsToBools(b)
            for _ in 0..<8 {
                let n: Int
                switch rng.below(4) {
                case 0: n = 1
                case 1: n = rng.inRange(2...64)
                case 2: n = rng.inRange(65...512)
                default: n = [63, 64, 65, 128, 511, 512][rng.below(6)]
                }
                let s = rng.below(4) == 0 ? 0 : rng.below(pallocChunkPages + 1)
                let got = b.find(npages: n, searchIndex: s)
                let ref = refFind(bools, npages: n, searchIndex: s)
                XCTAssertEqual(got.index, ref.index, "npages \(n) search \(s)")
                XCTAssertEqual(got.searchIndex, ref.searchIndex, "npages \(n) search \(s)")
                if got.index != ref.index || got.searchIndex != ref.searchIndex { return }
            }
        }
    }

    func testScavengeHighestRunMatchesReference() {
        var rng = TestRNG(seed: 5)
        for _ in 0..<3000 {
            var d = PallocData()
            d.pallocBits = randomBits(&rng)
            let scavRandom = randomBits(&rng)
            for w in 0..<pallocChunkWords { d.scavenged.words[w] = scavRandom.words[w] & ~d.pallocBits.words[w] }
            let alloc = bitsToBools(d.pallocBits)
            var scav = bitsToBools(d.scavenged)
            let limit = rng.inRange(0...pallocChunkPages)
            let maxPages = rng.inRange(1...600)
            // Reference: the highest candidate page below limit, then downwards while candidate.
            var top = limit - 1
            while top >= 0 && (alloc[top] || scav[top]) { top -= 1 }
            var expected = (index: 0, count: 0)
            if top >= 0 {
                var low = top
                while low > 0 && !alloc[low - 1] && !scav[low - 1] && top + 1 - (low - 1) <= maxPages { low -= 1 }
                expected = (low, top + 1 - low)
                for k in low...top { scav[k] = true }
            }
            let got = d.scavengeHighestRun(below: limit, maxPages: maxPages)
            XCTAssertEqual(got.index, expected.index)
            XCTAssertEqual(got.count, expected.count)
            XCTAssertEqual(bitsToBools(d.scavenged), scav)
        }
    }

    // MARK: - PallocSum

    func testPallocSumPacking() {
        var rng = TestRNG(seed: 6)
        for _ in 0..<10000 {
            let m = rng.below(maxPackedValue)
            let s = rng.inRange(0...m), e = rng.inRange(0...m)
            let sum = PallocSum(start: s, max: m, end: e)
            XCTAssertEqual(sum.start, s)
            XCTAssertEqual(sum.max, m)
            XCTAssertEqual(sum.end, e)
        }
        let full = PallocSum(start: maxPackedValue, max: maxPackedValue, end: maxPackedValue)
        XCTAssertEqual(full.raw, 1 << 63)
        XCTAssertEqual(full.start, 1 << 21)
        XCTAssertEqual(full.max, 1 << 21)
        XCTAssertEqual(full.end, 1 << 21)
        XCTAssertTrue(PallocSum(start: 0, max: 0, end: 0).isNone)
    }

    func testMergeMatchesDirectSummary() {
        var rng = TestRNG(seed: 7)
        for _ in 0..<2000 {
            var children = [PallocSum]()
            var all = [Bool]()
            let shape = rng.below(3)
            for _ in 0..<8 {
                var b = randomBits(&rng)
                if shape == 1 && rng.below(2) == 0 { b.clearAll() }
                if shape == 2 && rng.below(3) == 0 { b.setAll() }
                children.append(b.summarize())
                all += bitsToBools(b)
            }
            let merged = children.withUnsafeBufferPointer {
                PallocSum.merge($0.baseAddress!, logChildPages: logPallocChunkPages)
            }
            let ref = refSummarize(all)
            XCTAssertEqual(merged.start, ref.start)
            XCTAssertEqual(merged.max, ref.max)
            XCTAssertEqual(merged.end, ref.end)
        }
        // Eight completely free level-1 entries make a completely free level-0 entry (bit 63).
        let free1 = PallocSum(start: 1 << 18, max: 1 << 18, end: 1 << 18)
        let eight = [PallocSum](repeating: free1, count: 8)
        let top = eight.withUnsafeBufferPointer { PallocSum.merge($0.baseAddress!, logChildPages: 18) }
        XCTAssertEqual(top.raw, 1 << 63)
    }

    // MARK: - PageAlloc: model-based

    func testRandomizedAgainstModel() {
        for seed: UInt64 in [11, 12, 13] {
            runModel(seed: seed, operations: 3000)
        }
    }

    private func runModel(seed: UInt64, operations: Int) {
        var rng = TestRNG(seed: seed)
        var pa = PageAlloc(releasesMemory: false)
        var model = PageModel()
        // Grown in this order, interleaved with the random operations. Gaps between them must
        // never be handed out; the 4th fills the gap between the 1st and 2nd (a double merge).
        let plan: [(UInt, UInt)] = [
            (fakeBase, 4 * chunkBytes),
            (fakeBase + 6 * chunkBytes, 3 * chunkBytes),
            (fakeBase + (64 << 30), 2 * chunkBytes),            // another level-0 entry and leaf block
            (fakeBase + 4 * chunkBytes, 2 * chunkBytes),
            (fakeBase + 20 * chunkBytes, 1 * chunkBytes),
            (fakeBase - 2 * chunkBytes, 2 * chunkBytes),        // below everything: lowers searchAddr
        ]
        var nextGrow = 0
        func grow() {
            let (base, size) = plan[nextGrow]
            nextGrow += 1
            XCTAssertTrue(pa.grow(base: base, size: size))
            model.grow(base: base, size: size)
        }
        grow(); grow(); grow()
        var live: [(base: UInt, npages: Int)] = []
        for op in 1...operations {
            let dice = rng.below(100)
            if dice < 52 {
                let n: Int
                switch rng.below(20) {
                case 0..<11: n = rng.inRange(1...8)
                case 11..<16: n = rng.inRange(9...64)
                case 16..<19: n = rng.inRange(65...600)
                default: n = rng.inRange(601...1300)
                }
                let got = pa.alloc(npages: n)
                let want = model.alloc(npages: n)
                XCTAssertEqual(got.base, want.base, "seed \(seed) op \(op): alloc(\(n))")
                XCTAssertEqual(got.scavenged, want.scavenged, "seed \(seed) op \(op): scavenged of alloc(\(n))")
                if got.base != want.base { return }
                if got.base != 0 { live.append((got.base, n)) }
            } else if dice < 92 {
                guard !live.isEmpty else { continue }
                let k = rng.below(live.count)
                var (base, n) = live[k]
                if n > 1 && rng.below(4) == 0 {
                    // Free only a piece: the head or the tail of the allocation.
                    let piece = rng.inRange(1...(n - 1))
                    if rng.below(2) == 0 {
                        live[k] = (base + UInt(piece) * pageBytes, n - piece)
                        n = piece
                    } else {
                        live[k] = (base, n - piece)
                        base += UInt(n - piece) * pageBytes
                        n = piece
                    }
                } else {
                    live.swapAt(k, live.count - 1)
                    live.removeLast()
                }
                pa.free(base: base, npages: n)
                model.free(base: base, npages: n)
            } else if dice < 98 {
                let n = rng.inRange(0...700)
                XCTAssertEqual(pa.scavenge(maxPages: n), model.scavenge(maxPages: n), "seed \(seed) op \(op): scavenge(\(n))")
            } else if nextGrow < plan.count {
                grow()
            }
            if op % 300 == 0 || op == operations {
                pa.checkInvariants()
                compare(&pa, model, "seed \(seed) op \(op)")
            }
        }
        // Free everything: every grown range becomes one maximal run again.
        for (base, n) in live {
            pa.free(base: base, npages: n)
            model.free(base: base, npages: n)
        }
        pa.checkInvariants()
        compare(&pa, model, "seed \(seed) after free-all")
        XCTAssertEqual(pa.inUsePages, 0)
        for segment in model.segments {
            XCTAssertEqual(pa.alloc(npages: segment.alloc.count).base, UInt(segment.firstPage) * pageBytes)
        }
        XCTAssertEqual(pa.alloc(npages: 1).base, 0)
        pa.checkInvariants()
    }

    private func compare(_ pa: inout PageAlloc, _ model: PageModel, _ context: String) {
        XCTAssertEqual(pa.inUsePages, model.inUse, context)
        XCTAssertEqual(pa.scavengedPages, model.scavenged, context)
        XCTAssertEqual(pa.totalPages, model.total, context)
        for segment in model.segments {
            for k in 0..<segment.alloc.count {
                let addr = UInt(segment.firstPage + k) * pageBytes
                if pa.isAllocated(addr) != segment.alloc[k] || pa.isScavenged(addr) != segment.scav[k] {
                    XCTFail("\(context): page \(String(addr, radix: 16)) differs from the model")
                    return
                }
            }
            // The pages just outside every grown range are not part of the heap.
            for addr in [UInt(segment.firstPage - 1) * pageBytes, UInt(segment.firstPage + segment.alloc.count) * pageBytes] {
                XCTAssertFalse(pa.isAllocated(addr), context)
                XCTAssertFalse(pa.isScavenged(addr), context)
            }
        }
    }

    // MARK: - PageAlloc: directed tests

    func testExhaustionAndGrowthAfterExhaustion() {
        let p = PageAlloc.makeForTesting(releasesMemory: false)
        defer { PageAlloc.destroyForTesting(p) }
        XCTAssertEqual(p.pointee.alloc(npages: 1).base, 0, "nothing grown yet")
        XCTAssertTrue(p.pointee.grow(base: fakeBase, size: chunkBytes))
        XCTAssertEqual(p.pointee.alloc(npages: 513).base, 0, "larger than the heap")
        XCTAssertEqual(p.pointee.alloc(npages: 500).base, fakeBase)
        XCTAssertEqual(p.pointee.alloc(npages: 13).base, 0, "12 pages left")
        XCTAssertEqual(p.pointee.alloc(npages: 12).base, fakeBase + 500 * pageBytes)
        XCTAssertEqual(p.pointee.alloc(npages: 1).base, 0, "exhausted")
        XCTAssertEqual(p.pointee.freePages, 0)
        p.pointee.checkInvariants()

        // Growth after exhaustion, with a gap: the gap is never handed out.
        XCTAssertTrue(p.pointee.grow(base: fakeBase + 2 * chunkBytes, size: chunkBytes))
        XCTAssertEqual(p.pointee.alloc(npages: 600).base, 0, "one free chunk cannot hold 600 pages")
        XCTAssertEqual(p.pointee.alloc(npages: 1).base, fakeBase + 2 * chunkBytes)
        // Fill the gap: now a run may cross from the gap chunk into the third chunk.
        XCTAssertTrue(p.pointee.grow(base: fakeBase + chunkBytes, size: chunkBytes))
        XCTAssertEqual(p.pointee.alloc(npages: 513).base, 0, "the third chunk's first page is taken")
        XCTAssertEqual(p.pointee.alloc(npages: 512).base, fakeBase + chunkBytes)
        XCTAssertEqual(p.pointee.alloc(npages: 511).base, fakeBase + 2 * chunkBytes + pageBytes)
        XCTAssertEqual(p.pointee.alloc(npages: 1).base, 0)
        p.pointee.checkInvariants()

        // Free a run straddling two chunks and take it back in one piece.
        p.pointee.free(base: fakeBase + 400 * pageBytes, npages: 112 + 200)
        XCTAssertEqual(p.pointee.alloc(npages: 312).base, fakeBase + 400 * pageBytes)
        XCTAssertEqual(p.pointee.inUsePages, 3 * pallocChunkPages)
        p.pointee.checkInvariants()
    }

    func testRunsLongerThanAChunkAndFirstFit() {
        var pa = PageAlloc(releasesMemory: false)
        XCTAssertTrue(pa.grow(base: fakeBase, size: 16 * chunkBytes))
        // 8 chunks = 4096 pages exactly, at the start; then 2.5 chunks.
        XCTAssertEqual(pa.alloc(npages: 4096).base, fakeBase)
        XCTAssertEqual(pa.alloc(npages: 1280).base, fakeBase + 4096 * pageBytes)
        // Punch holes of 3, 700 and 2000 pages and check each request takes the lowest fit.
        let a = fakeBase + 100 * pageBytes, b = fakeBase + 1000 * pageBytes, c = fakeBase + 2000 * pageBytes
        pa.free(base: a, npages: 3)
        pa.free(base: b, npages: 700)
        pa.free(base: c, npages: 2000)
        XCTAssertEqual(pa.alloc(npages: 2).base, a)
        XCTAssertEqual(pa.alloc(npages: 701).base, c)
        XCTAssertEqual(pa.alloc(npages: 700).base, b)
        XCTAssertEqual(pa.alloc(npages: 1).base, a + 2 * pageBytes)
        XCTAssertEqual(pa.alloc(npages: 1299).base, c + 701 * pageBytes)
        XCTAssertEqual(pa.alloc(npages: 1).base, fakeBase + 5376 * pageBytes, "holes are full")
        // The whole tail after page 5377: 16*512 - 5377 pages.
        XCTAssertEqual(pa.alloc(npages: 8192 - 5377).base, fakeBase + 5377 * pageBytes)
        XCTAssertEqual(pa.freePages, 0)
        pa.checkInvariants()
    }

    func testScavengeCountsAndAllocReportsScavenged() {
        var pa = PageAlloc(releasesMemory: false)
        XCTAssertTrue(pa.grow(base: fakeBase, size: 2 * chunkBytes))
        XCTAssertEqual(pa.scavengedPages, 1024, "fresh memory is scavenged")
        XCTAssertEqual(pa.scavenge(maxPages: 100), 0, "nothing to scavenge")

        let first = pa.alloc(npages: 10)
        XCTAssertEqual(first.base, fakeBase)
        XCTAssertEqual(first.scavenged, 10, "fresh pages come back scavenged")
        XCTAssertEqual(pa.scavengedPages, 1014)
        pa.free(base: first.base, npages: 10)
        XCTAssertEqual(pa.scavengedPages, 1014, "freed pages are resident, not scavenged")
        XCTAssertFalse(pa.isScavenged(fakeBase))

        let again = pa.alloc(npages: 20)
        XCTAssertEqual(again.base, fakeBase)
        XCTAssertEqual(again.scavenged, 10, "10 resident pages + 10 scavenged ones")
        pa.free(base: fakeBase, npages: 20)

        // 20 free resident pages at the bottom; scavenge the top 5 of them first.
        XCTAssertEqual(pa.scavenge(maxPages: 5), 5)
        for k in 0..<20 { XCTAssertEqual(pa.isScavenged(fakeBase + UInt(k) * pageBytes), k >= 15, "page \(k)") }
        XCTAssertEqual(pa.scavenge(maxPages: 1000), 15)
        XCTAssertEqual(pa.scavenge(maxPages: 1000), 0)
        XCTAssertEqual(pa.scavengedPages, 1024)
        pa.checkInvariants()

        // Holes: scavenging skips allocated pages and goes highest first across chunks.
        let big = pa.alloc(npages: 1024)
        XCTAssertEqual(big.scavenged, 1024)
        pa.free(base: fakeBase + 100 * pageBytes, npages: 10)    // chunk 0
        pa.free(base: fakeBase + 510 * pageBytes, npages: 4)     // crosses into chunk 1
        pa.free(base: fakeBase + 900 * pageBytes, npages: 3)     // chunk 1
        XCTAssertEqual(pa.scavenge(maxPages: 5), 5)
        XCTAssertTrue(pa.isScavenged(fakeBase + 900 * pageBytes))
        XCTAssertTrue(pa.isScavenged(fakeBase + 512 * pageBytes))
        XCTAssertTrue(pa.isScavenged(fakeBase + 513 * pageBytes))
        XCTAssertFalse(pa.isScavenged(fakeBase + 511 * pageBytes))
        pa.checkInvariants()
        XCTAssertEqual(pa.scavenge(maxPages: 100), 12)
        XCTAssertEqual(pa.scavengedPages, 17)
        let hole = pa.alloc(npages: 10)
        XCTAssertEqual(hole.base, fakeBase + 100 * pageBytes)
        XCTAssertEqual(hole.scavenged, 10)
        pa.checkInvariants()
    }

    func testFreeAllReturnsToOneMaximalRun() {
        var rng = TestRNG(seed: 21)
        var pa = PageAlloc(releasesMemory: false)
        let chunks = 24
        XCTAssertTrue(pa.grow(base: fakeBase, size: UInt(chunks) * chunkBytes))
        var live: [(UInt, Int)] = []
        while true {
            let n = rng.inRange(1...300)
            let r = pa.alloc(npages: n)
            if r.base == 0 {
                if n == 1 { break }
                continue
            }
            live.append((r.base, n))
        }
        XCTAssertEqual(pa.freePages, 0)
        pa.checkInvariants()
        while !live.isEmpty {
            let k = rng.below(live.count)
            let (base, n) = live.remove(at: k)
            pa.free(base: base, npages: n)
        }
        pa.checkInvariants()
        // The level-2 entry over these 24 chunks (64 chunks per entry) sees one 12288-page run.
        let level2 = PageAlloc.chunkIndex(fakeBase) >> PageAlloc.levelShift(2)
        let sum = pa.summaryOrNone(level: 2, index: level2)
        XCTAssertEqual(sum.start, chunks * pallocChunkPages)
        XCTAssertEqual(sum.max, chunks * pallocChunkPages)
        XCTAssertEqual(sum.end, 0, "the rest of the entry was never grown")
        XCTAssertEqual(pa.alloc(npages: chunks * pallocChunkPages + 1).base, 0)
        XCTAssertEqual(pa.alloc(npages: chunks * pallocChunkPages).base, fakeBase)
    }

    func testGrowFailureChangesNothing() {
        var pa = PageAlloc(releasesMemory: false)
        XCTAssertTrue(pa.grow(base: fakeBase, size: chunkBytes))
        _ = pa.alloc(npages: 7)
        // Each range below needs fresh metadata at a different table (a level-3 block, a
        // level-4 directory, the chunk table...). Fail its first mapping: grow must report
        // failure and change nothing; then let it succeed.
        let far: [UInt] = [fakeBase + (1 << 40), fakeBase + (3 << 42), 0x0000_7000_0000_0000, fakeBase + (64 << 30)]
        for base in far {
            let before = (pa.inUsePages, pa.freePages, pa.scavengedPages, pa.totalPages, pa.metadataBytes)
            sysFaultsPending.store(1, ordering: .relaxed)
            XCTAssertFalse(pa.grow(base: base, size: chunkBytes), "grow at \(String(base, radix: 16))")
            sysFaultsPending.store(0, ordering: .relaxed)
            XCTAssertTrue(before == (pa.inUsePages, pa.freePages, pa.scavengedPages, pa.totalPages, pa.metadataBytes))
            XCTAssertFalse(pa.isScavenged(base))
            pa.checkInvariants()
            XCTAssertTrue(pa.grow(base: base, size: chunkBytes))
            XCTAssertTrue(pa.isScavenged(base))
            pa.checkInvariants()
        }
        XCTAssertEqual(pa.totalPages, 5 * pallocChunkPages)
        // The new ranges are usable; the first range still comes first.
        XCTAssertEqual(pa.alloc(npages: 505).base, fakeBase + 7 * pageBytes)
        XCTAssertEqual(pa.alloc(npages: 2).base, fakeBase + (64 << 30))
        XCTAssertEqual(pa.alloc(npages: 512).base, fakeBase + (1 << 40))
    }

    func testLazyMetadata() {
        var pa = PageAlloc(releasesMemory: false)
        XCTAssertEqual(pa.metadataBytes, 0, "nothing mapped before grow")
        XCTAssertTrue(pa.grow(base: fakeBase, size: 256 * chunkBytes))   // 1 GiB
        let first = pa.metadataBytes
        // Root + 6 directories + 6 blocks + the range list.
        XCTAssertLessThanOrEqual(first, 4096 + 6 * 4096 + 6 * 65536 + 4096)
        XCTAssertTrue(pa.grow(base: fakeBase + 256 * chunkBytes, size: 256 * chunkBytes))
        XCTAssertEqual(pa.metadataBytes, first, "the next GiB fits in the same blocks")
        XCTAssertTrue(pa.grow(base: 0x0000_7f00_0000_0000, size: chunkBytes))
        XCTAssertLessThanOrEqual(pa.metadataBytes, first + 6 * 4096 + 6 * 65536)
        pa.checkInvariants()
    }

    func testReleasesMemoryToTheOS() throws {
        // Real memory: reserve, align to a chunk, map, hand it to a releasing PageAlloc.
        let span = 3 * pallocChunkBytes
        let reservation = try XCTUnwrap(sysReserve(hint: 0, size: span), "the OS refused to reserve \(span) bytes")
        defer { sysFree(reservation, size: span) }
        let base = (UInt(bitPattern: reservation) + chunkBytes - 1) & ~(chunkBytes - 1)
        XCTAssertTrue(sysMap(UnsafeMutableRawPointer(bitPattern: base)!, size: 2 * pallocChunkBytes))
        var pa = PageAlloc(releasesMemory: true)
        XCTAssertTrue(pa.grow(base: base, size: 2 * chunkBytes))
        let r = pa.alloc(npages: 600)
        XCTAssertEqual(r.base, base)
        XCTAssertEqual(r.scavenged, 600)
        let bytes = UnsafeMutableRawPointer(bitPattern: r.base)!.assumingMemoryBound(to: UInt8.self)
        for k in stride(from: 0, to: 600 * pageSize, by: 512) { bytes[k] = 0xAB }
        pa.free(base: r.base + 50 * pageBytes, npages: 550)   // crosses the chunk boundary
        XCTAssertEqual(pa.scavenge(maxPages: 10_000), 550)
        for k in stride(from: 0, to: 600 * pageSize, by: 512) {
            XCTAssertEqual(bytes[k], k < 50 * pageSize ? 0xAB : 0, "offset \(k)")
            if bytes[k] != (k < 50 * pageSize ? 0xAB : 0) { break }
        }
        let again = pa.alloc(npages: 550)
        XCTAssertEqual(again.base, base + 50 * pageBytes)
        XCTAssertEqual(again.scavenged, 550, "released pages are known zero")
        pa.checkInvariants()
    }
}

// MARK: - The model: a plain bitmap per grown segment and a page-by-page first-fit scan

private struct PageModel {
    struct Segment {
        var firstPage: Int
        var alloc: [Bool]
        var scav: [Bool]
    }
    var segments: [Segment] = []   // sorted, adjacent ones merged
    var inUse = 0
    var scavenged = 0
    var total = 0

    mutating func grow(base: UInt, size: UInt) {
        let first = Int(base / pageBytes), n = Int(size / pageBytes)
        segments.append(Segment(firstPage: first, alloc: Array(repeating: false, count: n),
                                scav: Array(repeating: true, count: n)))
        segments.sort { $0.firstPage < $1.firstPage }
        var merged: [Segment] = []
        for s in segments {
            if let last = merged.last, last.firstPage + last.alloc.count == s.firstPage {
                merged[merged.count - 1].alloc += s.alloc
                merged[merged.count - 1].scav += s.scav
            } else {
                merged.append(s)
            }
        }
        segments = merged
        total += n
        scavenged += n
    }

    mutating func alloc(npages: Int) -> (base: UInt, scavenged: Int) {
        for si in segments.indices {
            var run = 0
            for k in segments[si].alloc.indices {
                if segments[si].alloc[k] { run = 0; continue }
                run += 1
                if run == npages {
                    let start = k + 1 - npages
                    var scav = 0
                    for p in start...k {
                        segments[si].alloc[p] = true
                        if segments[si].scav[p] { scav += 1; segments[si].scav[p] = false }
                    }
                    inUse += npages
                    scavenged -= scav
                    return (UInt(segments[si].firstPage + start) * pageBytes, scav)
                }
            }
        }
        return (0, 0)
    }

    mutating func free(base: UInt, npages: Int) {
        let page = Int(base / pageBytes)
        for si in segments.indices where segments[si].firstPage <= page && page < segments[si].firstPage + segments[si].alloc.count {
            for p in (page - segments[si].firstPage)..<(page - segments[si].firstPage + npages) {
                precondition(segments[si].alloc[p])
                segments[si].alloc[p] = false
            }
        }
        inUse -= npages
    }

    mutating func scavenge(maxPages: Int) -> Int {
        var done = 0
        for si in segments.indices.reversed() {
            for k in segments[si].alloc.indices.reversed() where done < maxPages {
                if !segments[si].alloc[k] && !segments[si].scav[k] {
                    segments[si].scav[k] = true
                    done += 1
                }
            }
        }
        scavenged += done
        return done
    }
}
