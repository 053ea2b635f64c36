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

    /// Noscan objects (every C request) stay on the fast path while sampling, budgeted by
    /// the cached span's allocCache window: at rate 1 the budget is 0, so each allocation
    /// still reaches the countdown and is sampled, interleaved frees included.
    func testNoscanFastPathEverySampleAtRateOne() throws {
        XCTAssertTrue(GoAllocator.setHeapProfileRate(1))
        defer { GoAllocator.setHeapProfileRate(0) }
        let before = totals(GoAllocator.heapProfile())
        var kept: [UnsafeMutableRawPointer] = []
        for i in 0..<3000 {
            let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 200, alignment: 8, containsPointers: false))
            if i % 3 == 0 { GoAllocator.deallocate(p) } else { kept.append(p) }
        }
        let size = GoAllocator.usableSize(of: kept[0])
        let after = totals(GoAllocator.heapProfile())
        let a = after[size] ?? (0, 0), b = before[size] ?? (0, 0)
        XCTAssertEqual(a.0 - b.0, 3000, "every allocation sampled")
        XCTAssertEqual(a.1 - b.1, 1000, "every free of a sampled object counted")
        XCTAssertNil(GoAllocator.checkInvariants())
        for p in kept { GoAllocator.deallocate(p) }
        XCTAssertNil(GoAllocator.checkInvariants())
    }

    /// At a rate well below the bytes allocated, the per-class countdowns sample about
    /// bytes / rate objects (the budgeted fast path neither skips nor doubles samples),
    /// with two threads allocating and freeing each other's objects, the heap's invariants
    /// holding throughout; sampling switched off and on again in the middle.
    func testBudgetedSamplingCountsAndInvariants() throws {
        let rate = 16384
        XCTAssertTrue(GoAllocator.setHeapProfileRate(rate))
        defer { GoAllocator.setHeapProfileRate(0) }
        let sizes = [16, 48, 256, 1000, 4000]
        func sampled() -> [Int: Int] {
            var d: [Int: Int] = [:]
            for s in GoAllocator.heapProfile() { d[s.objectSize, default: 0] += s.allocatedObjects }
            return d
        }
        let before = sampled()
        let perSize = 40_000
        let queues = [AddressQueue(), AddressQueue()]
        runThreads(2) { me in
            var rng = SplitMix64(seed: UInt64(me) &+ 11)
            var live: [UnsafeMutableRawPointer] = []
            for i in 0..<(perSize * sizes.count / 2) {
                let p = GoAllocator.allocate(byteCount: sizes[i % sizes.count], alignment: 8, containsPointers: false)!
                p.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
                live.append(p)
                if live.count > 300 {
                    live.swapAt(Int(rng.next() % UInt64(live.count)), live.count - 1)
                    let q = live.removeLast()
                    // Half freed here, half by the other thread (remote frees).
                    if rng.next() & 1 == 0 { GoAllocator.deallocate(q) } else { queues[1 - me].push(UInt(bitPattern: q)) }
                }
                if let a = queues[me].pop() { GoAllocator.deallocate(UnsafeMutableRawPointer(bitPattern: a)!) }
            }
            for p in live { GoAllocator.deallocate(p) }
        }
        for q in queues { for a in q.drain() { GoAllocator.deallocate(UnsafeMutableRawPointer(bitPattern: a)!) } }
        XCTAssertNil(GoAllocator.checkInvariants())
        GoAllocator.setHeapProfileRate(0)
        XCTAssertNil(GoAllocator.checkInvariants())
        XCTAssertTrue(GoAllocator.setHeapProfileRate(rate))
        XCTAssertNil(GoAllocator.checkInvariants())
        let after = sampled()
        // Two threads of perSize / 2 objects of each size: expected samples per size about
        // perSize * (1 - e^(-size/rate)); Poisson, so within 5 standard deviations.
        for n in sizes {
            let probe = try XCTUnwrap(GoAllocator.allocate(byteCount: n, alignment: 8, containsPointers: false))
            let size = GoAllocator.usableSize(of: probe)
            GoAllocator.deallocate(probe)
            let got = Double((after[size] ?? 0) - (before[size] ?? 0))
            let want = Double(perSize) * (1 - exp(-Double(size) / Double(rate)))
            XCTAssertLessThan(abs(got - want), 5 * want.squareRoot() + 3, "size \(size): \(got) samples, about \(want) expected")
        }
        XCTAssertNil(GoAllocator.checkInvariants())
    }

    func testEstimateScalesAsPprof() {
        let s = HeapProfileSample(allocatedObjects: 1, allocatedBytes: 16, freedObjects: 0, freedBytes: 0, objectSize: 16, stack: [])
        XCTAssertEqual(s.estimated(16, rate: 524_288), 16 / (1 - exp(-16.0 / 524_288)), accuracy: 1e-6)
        XCTAssertEqual(s.estimated(16, rate: 1), 16)
    }
}
