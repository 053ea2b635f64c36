// The heap view agrees with the statistics and with what the test allocated.
import XCTest
@testable import GoMalloc

final class HeapSnapshotTests: XCTestCase {
    func testSnapshotAccountsForEveryPageAndObject() throws {
        var ps: [UnsafeMutableRawPointer] = []
        for i in 0..<5000 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 1 + i % 3000, alignment: 8))) }
        for _ in 0..<3 { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 200_000, alignment: 8))) }
        let snap = GoAllocator.heapSnapshot(pageMapLength: 256)
        let stats = GoAllocator.statistics()
        XCTAssertFalse(snap.arenas.isEmpty)
        XCTAssertTrue(snap.arenas.allSatisfy { $0 % (64 << 20) == 0 })
        let smallPages = snap.spanClasses.reduce(0) { $0 + $1.pages }
        XCTAssertEqual(smallPages + snap.largePages, snap.inUsePages)
        XCTAssertEqual(snap.inUsePages + snap.freePages, snap.committedPages)
        XCTAssertGreaterThanOrEqual(snap.largeSpans, 3)
        for r in snap.spanClasses {
            XCTAssertEqual(r.spans, r.allocating + r.retired + r.partial + r.full)
            XCTAssertLessThanOrEqual(r.liveObjects, r.totalObjects)
        }
        // Live small objects counted span by span equal the statistics' small live objects.
        let liveSmall = snap.spanClasses.reduce(0) { $0 + $1.liveObjects }
        let largeLive = Int(stats.bySize[0].mallocs - stats.bySize[0].frees)
        XCTAssertEqual(liveSmall + largeLive, Int(stats.heapObjects))
        XCTAssertEqual(snap.pageMap.count, 256)
        XCTAssertTrue(snap.pageMap.contains("s"))
        for p in ps { GoAllocator.deallocate(p) }
    }
}
