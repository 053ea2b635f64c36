// Threads: cross-thread frees, and the bound on mcaches whatever the thread count.
import Foundation
import XCTest
@testable import GoMalloc

final class ConcurrencyTests: XCTestCase {
    func testEightThreadsFreeEachOthersObjects() {
        let start = GoAllocator.statistics().heapAlloc
        let threads = 8
        let queues = (0..<threads).map { _ in AddressQueue() }
        runThreads(threads) { me in
            var rng = SplitMix64(seed: UInt64(me) &* 7919)
            for round in 0..<40_000 {
                let size = rng.next() % 20 == 0 ? Int(rng.next() % 100_000) + 1 : Int(rng.next() % 600) + 1
                let p = GoAllocator.allocate(byteCount: size, alignment: 8)!
                let tag = UInt8(truncatingIfNeeded: me &+ 1)
                p.storeBytes(of: tag, as: UInt8.self)
                (p + size - 1).storeBytes(of: tag, as: UInt8.self)
                // Tag the size into the queue entry: address | we know sizes by usable size.
                queues[(me + 1 + round % (threads - 1)) % threads].push(UInt(bitPattern: p))
                if let a = queues[me].pop() {
                    let q = UnsafeMutableRawPointer(bitPattern: a)!
                    let owner = q.load(as: UInt8.self)
                    precondition(owner >= 1 && Int(owner) <= threads && Int(owner) != me + 1,
                                 "object corrupted or freed by its allocating thread")
                    GoAllocator.deallocate(q)
                }
            }
        }
        for q in queues { for a in q.drain() { GoAllocator.deallocate(UnsafeMutableRawPointer(bitPattern: a)!) } }
        assertHeapInvariants()
        XCTAssertEqual(GoAllocator.statistics().heapAlloc, start)
    }

    func testSixtyFourThreadsNeverCreateMoreMcachesThanPs() {
        runThreads(64) { me in
            var keep: [UnsafeMutableRawPointer] = []
            for i in 0..<2000 {
                keep.append(GoAllocator.allocate(byteCount: 16 + (i % 512), alignment: 8)!)
                if keep.count > 50 { GoAllocator.deallocate(keep.removeFirst()) }
            }
            for p in keep { GoAllocator.deallocate(p) }
        }
        let s = GoAllocator.statistics()
        XCTAssertLessThanOrEqual(s.mcaches, s.processors)
        assertHeapInvariants()
    }

    func testEmptySpansFreedByOtherThreadsGoBackToTheHeap() {
        // One thread allocates many objects of one class; another frees them all. The spans
        // become empty while sitting in mcentral and must return their pages to the heap.
        let q = AddressQueue()
        runThreads(1) { _ in
            for _ in 0..<100_000 { q.push(UInt(bitPattern: GoAllocator.allocate(byteCount: 64, alignment: 8)!)) }
        }
        let inuseBefore = GoAllocator.statistics().heapInuse
        runThreads(1) { _ in
            while let a = q.pop() { GoAllocator.deallocate(UnsafeMutableRawPointer(bitPattern: a)!) }
        }
        let inuseAfter = GoAllocator.statistics().heapInuse
        XCTAssertLessThan(inuseAfter, inuseBefore - 4 << 20, "pages of emptied spans were not returned")
        assertHeapInvariants()
    }
}
