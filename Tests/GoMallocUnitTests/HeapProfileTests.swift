// The Swift API's heap profile (GoAllocator.heapProfile): with every allocation sampled (rate
// 1) the samples count exactly what the test allocated and freed, small and large, with the
// object sizes the allocator gave; stacks start in the allocator and reach this test's
// frames; the heap's invariants hold with sampled spans; turning sampling off leaves the
// samples and still counts frees of sampled objects.
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class HeapProfileTests: XCTestCase {
    /// Per object size: (allocated objects, freed objects) summed over the samples.
    private func totals(_ samples: [HeapProfileSample]) -> [Int: (Int, Int)] {
        var d: [Int: (Int, Int)] = [:]
        for s in samples {
            let v = d[s.objectSize, default: (0, 0)]
            d[s.objectSize] = (v.0 + s.allocatedObjects, v.1 + s.freedObjects)
        }
        return d
    }

    func testEverySampleCountedAtRateOne() throws {
        XCTAssertTrue(GoAllocator.setHeapProfileRate(1))
        defer { GoAllocator.setHeapProfileRate(0) }
        XCTAssertEqual(GoAllocator.heapProfileRate, 1)
        let before = totals(GoAllocator.heapProfile())
        var small: [UnsafeMutableRawPointer] = []
        for _ in 0..<1000 { small.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 777, alignment: 8))) }
        var large: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 { large.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 100_000, alignment: 8))) }
        let smallSize = GoAllocator.usableSize(of: small[0])
        let largeSize = GoAllocator.usableSize(of: large[0])
        XCTAssertEqual(largeSize, 13 * 8192)
        for p in small.prefix(500) { GoAllocator.deallocate(p) }
        GoAllocator.deallocate(large[0])
        let mid = totals(GoAllocator.heapProfile())
        func delta(_ a: [Int: (Int, Int)], _ b: [Int: (Int, Int)], _ size: Int) -> (Int, Int) {
            let x = a[size] ?? (0, 0), y = b[size] ?? (0, 0)
            return (x.0 - y.0, x.1 - y.1)
        }
        XCTAssertEqual(delta(mid, before, smallSize).0, 1000)
        XCTAssertEqual(delta(mid, before, smallSize).1, 500)
        XCTAssertEqual(delta(mid, before, largeSize).0, 3)
        XCTAssertEqual(delta(mid, before, largeSize).1, 1)
        XCTAssertNil(GoAllocator.checkInvariants())
        // Off: no new samples, but the frees of sampled objects still count.
        GoAllocator.setHeapProfileRate(0)
        for p in small.dropFirst(500) { GoAllocator.deallocate(p) }
        for p in large.dropFirst() { GoAllocator.deallocate(p) }
        for _ in 0..<10 { GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 777, alignment: 8))) }
        let after = totals(GoAllocator.heapProfile())
        XCTAssertEqual(delta(after, before, smallSize).0, 1000, "nothing sampled while off")
        XCTAssertEqual(delta(after, before, smallSize).1, 1000)
        XCTAssertEqual(delta(after, before, largeSize).1, 3)
        XCTAssertNil(GoAllocator.checkInvariants())
        // Each stack goes from the allocator out through this test.
        let mine = GoAllocator.heapProfile().filter { $0.objectSize == smallSize }
        XCTAssertTrue(mine.allSatisfy { $0.stack.count >= 3 }, "\(mine.map(\.stack.count))")
        XCTAssertTrue(mine.allSatisfy { $0.inUseBytes >= 0 && $0.freedBytes <= $0.allocatedBytes })
    }

    func testEstimateScalesAsPprof() {
        let s = HeapProfileSample(allocatedObjects: 1, allocatedBytes: 16, freedObjects: 0, freedBytes: 0, objectSize: 16, stack: [])
        XCTAssertEqual(s.estimated(16, rate: 524_288), 16 / (1 - exp(-16.0 / 524_288)), accuracy: 1e-6)
        XCTAssertEqual(s.estimated(16, rate: 1), 16)
    }
}
