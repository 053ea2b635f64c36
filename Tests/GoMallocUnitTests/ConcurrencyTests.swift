// Threads: cross-thread frees, and the bound on mcaches whatever the thread count.
import Foundation
import Synchronization
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class ConcurrencyTests: XCTestCase {
    func testEightThreadsFreeEachOthersObjects() {
        // Trimmed first: the Ps' open tiny blocks (C-ABI tests before this one) are closed by
        // the trims below, which would otherwise change the figure.
        _ = GoAllocator.trim()
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

    /// Threads free blocks that other threads allocated (remote frees, into spans another P
    /// caches or mcentral holds) while one more thread calls malloc_trim in a loop, flushing
    /// every mcache to mcentral under them. No worker passes its halfway point before three
    /// trims have completed (a handshake), so trims overlap the frees. At the end the heap is
    /// back where it started, consistent, and no span without a live object is left on
    /// mcentral's lists (MCentral I3: the last free of a span gives it back to the heap);
    /// after one more trim none of them is left anywhere.
    func testTrimRacingRemoteFreesStrandsNoEmptySpan() throws {
        // Classes this test alone uses: after a trim they hold no span.
        let sizes = [208, 416, 1280, 3072, 5376, 9472]
        func rows() -> [HeapSnapshot.SpanClassRow] {
            GoAllocator.heapSnapshot(pageMapLength: 0).spanClasses.filter { sizes.contains($0.objectSize) }
        }
        GoAllocator.trim()
        XCTAssertEqual(rows().map(\.liveObjects), rows().map { _ in 0 }, "set-up: live blocks of the test's classes")
        // Trimmed first: the Ps' open tiny blocks (C-ABI tests before this one) are closed by
        // the trims below, which would otherwise change the figure.
        _ = GoAllocator.trim()
        let start = GoAllocator.statistics().heapAlloc

        let producers = 2, consumers = 2, perProducer = 30_000
        let queues = (0..<consumers).map { _ in AddressQueue() }
        let produced = TrimRaceFlags()
        let trims = ProgressGate()
        let trimmerDone = DispatchSemaphore(value: 0)
        let trimmer = Thread {
            while produced.stop.load(ordering: .acquiring) == 0 {
                GoAllocator.trim()
                trims.advance()
            }
            trimmerDone.signal()
        }
        trimmer.start()
        runThreads(producers + consumers) { me in
            if me < producers {
                var rng = SplitMix64(seed: UInt64(me) &+ 0x7121)
                for i in 0..<perProducer {
                    if i == perProducer / 2 { trims.wait(atLeast: 3) }
                    let k = rng.below(sizes.count)
                    let p = GoAllocator.allocate(byteCount: sizes[k], alignment: 8)!
                    p.storeBytes(of: UInt8(k), as: UInt8.self)
                    (p + sizes[k] - 1).storeBytes(of: UInt8(k), as: UInt8.self)
                    queues[rng.below(consumers)].push(UInt(bitPattern: p) | UInt(k) << 56)
                }
                produced.producersDone.add(1, ordering: .releasing)
            } else {
                let q = queues[me - producers]
                while true {
                    // Read before the pop: once every producer is done, an empty queue stays empty.
                    let finished = produced.producersDone.load(ordering: .acquiring) == producers
                    guard let e = q.pop() else {
                        if finished { break }
                        sched_yield()
                        continue
                    }
                    let k = Int(e >> 56)
                    let p = UnsafeMutableRawPointer(bitPattern: e & ((1 << 56) - 1))!
                    precondition(p.load(as: UInt8.self) == UInt8(k) && (p + sizes[k] - 1).load(as: UInt8.self) == UInt8(k),
                                 "block corrupted or handed out twice")
                    GoAllocator.deallocate(p)
                }
            }
        }
        produced.stop.store(1, ordering: .releasing)
        trimmerDone.wait()

        XCTAssertEqual(GoAllocator.statistics().heapAlloc, start)
        assertHeapInvariants()
        for r in rows() {
            XCTAssertEqual(r.liveObjects, 0)
            // Only mcentral's reserve of emptied spans may remain (MCentral I3); a stranded
            // empty span (location partial or full) fails the invariants above.
            XCTAssertEqual(r.full, 0, "\(r.objectSize)-byte spans without live objects left on mcentral's full list")
            XCTAssertLessThanOrEqual(r.partial, MCentral.emptyReserve,
                                     "\(r.objectSize)-byte spans without live objects beyond mcentral's reserve")
        }
        GoAllocator.trim()
        XCTAssertEqual(rows().map(\.spans), [], "spans without live objects left after malloc_trim")
    }
}

/// Flags shared by testTrimRacingRemoteFreesStrandsNoEmptySpan's threads.
final class TrimRaceFlags: Sendable {
    let producersDone = Atomic<Int>(0)
    let stop = Atomic<Int>(0)
}
