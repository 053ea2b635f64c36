// Retired spans (MCache.swift, maxRetired): a P keeps the last spans it ran out of, so the
// frees its thread makes soon after allocating stay local (plain stores, mcentral not
// involved); past the limit the oldest goes back to mcentral, where frees are remote; and a
// refill takes a retired span that got objects back before asking mcentral — once the P's
// recent-free stack (reused first, newest first) is empty.
// Observed through the public heap snapshot, one thread (hence one P) doing everything.
import CGoMallocSys
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted  // MCache.maxRetired

final class RetiredSpanTests: XCTestCase {
    /// One P throughout: with Ps bound to CPUs, the thread stays on one CPU.
    private var pin: CPUPin?
    override func setUpWithError() throws { pin = try CPUPin() }
    override func tearDown() { pin?.restore() }

    /// The snapshot row of `size`-byte objects (span class without noscan, as allocate uses).
    private func row(_ size: Int) -> HeapSnapshot.SpanClassRow {
        GoAllocator.heapSnapshot(pageMapLength: 0).spanClasses.first { $0.objectSize == size && $0.spanClass & 1 == 0 }
            ?? HeapSnapshot.SpanClassRow(spanClass: 0, objectSize: size, spans: 0, allocating: 0, retired: 0, partial: 0,
                                         full: 0, liveObjects: 0, totalObjects: 0, pages: 0)
    }

    func testExhaustedSpansStayWithTheirPUpToTheLimitThenGoToMCentral() throws {
        let size = 3072
        let perSpan = try XCTUnwrap(GoAllocator.sizeClasses.first { $0.bytesPerObject == size }).objects
        let keep = MCache.maxRetired
        let h = try XCTUnwrap(heap())
        // Flush every mcache: no cache holds a span of the class any more.
        GoAllocator.trim()
        let base = row(size)
        XCTAssertEqual(base.allocating + base.retired, 0, "trim leaves spans in a cache")
        XCTAssertEqual(base.partial, 0, "set-up: a partial span of \(size) bytes would be handed out first")

        // keep + 2 spans' worth of objects, each span fresh from the heap and handed out in
        // address order.
        let spans = keep + 2
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<(spans * perSpan) { blocks.append(try XCTUnwrap(GoAllocator.allocate(byteCount: size, alignment: 8))) }
        func span(_ k: Int) -> ArraySlice<UnsafeMutableRawPointer> { blocks[k * perSpan ..< (k + 1) * perSpan] }
        func mspan(_ k: Int) -> UnsafeMutablePointer<MSpan>? { h.spanOf(UInt(bitPattern: span(k).first!)) }
        for k in 0..<spans {
            let s = span(k)
            XCTAssertTrue(zip(s, s.dropFirst()).allSatisfy { $1 - $0 == size }, "set-up: span \(k)'s objects are not consecutive")
        }
        var r = row(size)
        XCTAssertEqual(r.spans - base.spans, spans)
        XCTAssertEqual(r.allocating, 1, "the span the P allocates from")
        XCTAssertEqual(r.retired, keep, "the last \(keep) exhausted spans stay with the P")
        XCTAssertEqual(r.full - base.full, 1, "one span, pushed past the limit, is on mcentral's full list")
        XCTAssertEqual(r.liveObjects - base.liveObjects, spans * perSpan)
        let central = try XCTUnwrap((0..<spans).first { mspan($0)?.pointee.location.load(ordering: .relaxed) == SpanLocation.full })

        // That span is mcentral's: a free there is remote, and mcentral hears of it (full ->
        // partial); once its last object is freed the span is kept in mcentral's reserve of
        // emptied spans (MCentral I3: listed as partial, location empty) for the next
        // cacheSpan, and trim gives it back to the heap.
        GoAllocator.deallocate(span(central).first!)
        r = row(size)
        XCTAssertEqual(r.full - base.full, 0)
        XCTAssertEqual(r.partial, 1, "a remote free moves a full span to the partial list")
        for p in span(central).dropFirst() { GoAllocator.deallocate(p) }
        r = row(size)
        XCTAssertEqual(r.spans - base.spans, spans, "an emptied span in mcentral stays in its reserve")
        XCTAssertEqual(r.partial, 1)
        XCTAssertEqual(mspan(central)?.pointee.location.load(ordering: .relaxed), SpanLocation.empty)

        // The victim, the second-oldest retired span (the oldest goes to mcentral at the next
        // refill): the allocating thread's frees there are local. Even with all its objects
        // free it stays with the P; mcentral's lists do not change.
        let mine = try XCTUnwrap(myP()?.mcache, "no P")
        let spc = try XCTUnwrap(mspan(spans - 1)).spanClass
        let oldestSpan = try XCTUnwrap(mine.pointee.retired[spc.index].first)
        let victimSpan = try XCTUnwrap(oldestSpan.pointee.next)
        let victim = try XCTUnwrap((0..<spans).first { mspan($0) == victimSpan })
        let oldest = try XCTUnwrap((0..<spans).first { mspan($0) == oldestSpan })
        for p in span(victim) { GoAllocator.deallocate(p) }
        r = row(size)
        XCTAssertEqual(r.spans - base.spans, spans, "a retired span emptied by local frees stays cached")
        XCTAssertEqual(r.retired, keep)
        XCTAssertEqual(r.partial + r.full - base.full, 1, "mcentral's lists hold the reserved span only")
        XCTAssertEqual(r.liveObjects - base.liveObjects, (spans - 2) * perSpan)

        // Those frees sit on the P's recent-free stack too, and the next allocations would
        // take them back first (MCache I3). Push them off it: more frees than it holds, from
        // other retired spans, then allocate those again (newest first). The stack is then empty.
        let current = spans - 1  // the span the P allocates from (exhausted)
        let others = (0..<spans).filter { ![central, victim, oldest, current].contains($0) }
        let pushers: [UnsafeMutableRawPointer] = Array(others.flatMap { span($0) }.prefix(MCache.recentCapacity + 1))
        for p in pushers { GoAllocator.deallocate(p) }
        let onStack = mine.recentCount(spc.index)
        XCTAssertLessThan(onStack, pushers.count, "set-up: the stack did not overflow")
        var again: [UnsafeMutableRawPointer] = []
        while again.count < onStack {
            again.append(try XCTUnwrap(GoAllocator.allocate(byteCount: size, alignment: 8)))
        }
        XCTAssertEqual(again, Array(pushers.reversed().prefix(again.count)), "recent frees come back newest first")
        // The older of the pushers went with the victim's objects when the stack overflowed:
        // they are free in their spans' bitmaps only (and freed no more below).
        let forgotten = pushers.dropLast(again.count)
        r = row(size)
        XCTAssertEqual(r.retired, keep, "recent frees were reused without a refill")
        XCTAssertEqual(r.liveObjects - base.liveObjects, (spans - 2) * perSpan - forgotten.count)

        // The current span is exhausted: the next allocation refills. The current span is
        // retired (pushing the oldest retired span to mcentral), and the retired span with
        // free objects (the victim, now the oldest: the first one refill looks at) is taken
        // back before mcentral is asked.
        let next = try XCTUnwrap(GoAllocator.allocate(byteCount: size, alignment: 8))
        XCTAssertTrue(span(victim).contains(next), "refill took a span other than the emptied retired one: \(next)")
        r = row(size)
        XCTAssertEqual(r.allocating, 1)
        XCTAssertEqual(r.retired, keep - 1)
        XCTAssertEqual(r.full - base.full, 1, "the oldest retired span, pushed past the limit, is on mcentral's full list")
        XCTAssertEqual(mspan(oldest)?.pointee.location.load(ordering: .relaxed), SpanLocation.full)
        XCTAssertEqual(r.spans - base.spans, spans, "no new span was taken")

        GoAllocator.deallocate(next)
        let freedAlready = Set(forgotten)
        for k in 0..<spans where k != victim && k != central {
            for p in span(k) where !freedAlready.contains(p) { GoAllocator.deallocate(p) }
        }
        GoAllocator.trim()
        r = row(size)
        XCTAssertEqual(r.spans, base.spans, "trim gives the emptied spans back to the heap")
        assertHeapInvariants()
    }
}
