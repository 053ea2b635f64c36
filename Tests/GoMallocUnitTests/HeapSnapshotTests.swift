// The heap view agrees with the statistics, with the size-class table and with what the
// test allocated.
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class HeapSnapshotTests: XCTestCase {
    func testSnapshotAccountsForEveryPageAndObject() throws {
        var ps: [UnsafeMutableRawPointer] = []
        for i in 0..<5000 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 1 + i % 3000, alignment: 8))) }
        let smallCount = ps.count
        for _ in 0..<3 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 200_000, alignment: 8))) }
        let arenaPages = (64 << 20) / 8192
        let snap = GoAllocator.heapSnapshot(pageMapLength: arenaPages)
        let stats = GoAllocator.statistics()
        XCTAssertFalse(snap.arenas.isEmpty)
        XCTAssertTrue(snap.arenas.allSatisfy { $0 % (64 << 20) == 0 })
        // Pages counted span by span (the page-map walk) equal the page allocator's count, and
        // that equals mheap's own counter behind the statistics.
        let smallPages = snap.spanClasses.reduce(0) { $0 + $1.pages }
        XCTAssertEqual(smallPages + snap.largePages, snap.inUsePages)
        XCTAssertEqual(UInt64(snap.inUsePages) * 8192, stats.heapInuse + stats.stackInuse)
        XCTAssertEqual(UInt64(snap.committedPages) * 8192, stats.heapSys + stats.stackInuse)
        XCTAssertGreaterThanOrEqual(snap.largeSpans, 3)
        let table = GoAllocator.sizeClasses
        for r in snap.spanClasses {
            let row = table[r.sizeClass - 1]
            XCTAssertEqual(r.objectSize, row.bytesPerObject)
            // Every span of a class has the table's pages and objects.
            XCTAssertEqual(r.pages, r.spans * row.bytesPerSpan / 8192, "class \(r.sizeClass)")
            XCTAssertEqual(r.totalObjects, r.spans * row.objects, "class \(r.sizeClass)")
            XCTAssertLessThanOrEqual(r.liveObjects, r.totalObjects)
            // Each P's mcache allocates from one span per class and keeps a bounded retired list.
            XCTAssertLessThanOrEqual(r.allocating, stats.processors, "class \(r.sizeClass)")
            XCTAssertLessThanOrEqual(r.retired, stats.processors * MCache.maxRetired, "class \(r.sizeClass)")
        }
        // Live small objects counted span by span equal the statistics' small live objects.
        let liveSmall = snap.spanClasses.reduce(0) { $0 + $1.liveObjects }
        let largeLive = Int(stats.bySize[0].mallocs - stats.bySize[0].frees)
        XCTAssertEqual(liveSmall + largeLive, Int(stats.heapObjects))
        // The page map (the lowest arena): this test's blocks that lie there show as small or
        // large pages, and its counts stay within the totals.
        let map = Array(snap.pageMap.utf8)
        let base = try XCTUnwrap(snap.arenas.min())
        for (k, p) in ps.enumerated() {
            let page = Int((UInt(bitPattern: p) &- base) / 8192)
            guard UInt(bitPattern: p) >= base, page < map.count else { continue }
            let want = UInt8(ascii: k < smallCount ? "s" : "L")
            if map[page] != want { XCTFail("block \(p): page map shows \(UnicodeScalar(map[page])), want \(UnicodeScalar(want))"); break }
        }
        let count = { (c: Character) in map.filter { $0 == c.asciiValue! }.count }
        XCTAssertLessThanOrEqual(count("s") + count("L") + count("M"), snap.inUsePages)
        XCTAssertLessThanOrEqual(count(".") + count("r"), snap.freePages)
        XCTAssertLessThanOrEqual(count("r"), snap.releasedPages)
        XCTAssertGreaterThan(count("s"), 0, "the heap starts with small spans")
        for p in ps { GoAllocator.deallocate(p) }
    }
}
