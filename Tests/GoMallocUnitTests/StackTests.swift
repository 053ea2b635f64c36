// The stack allocator (Stack.swift): orders and rounding, the per-P stack cache across
// threads, stackLarge reuse, no overlap with each other or with heap objects, pages back to
// the heap, growth, and misuse reports. checkInvariants() recounts every stack (Stack.I1-I5).
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class StackTests: XCTestCase {
    private func hex(_ p: UnsafeMutableRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }

    private func assertInvariants(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(GoAllocator.checkInvariants(), file: file, line: line)
    }

    /// Every test starts with no free stack kept anywhere (caches, pools, stackLarge).
    override func setUp() {
        GoAllocator.trim()
    }

    /// A stack's bytes, filled with a pattern of its own and checked.
    private func fill(_ s: GoStack, seed: UInt8) {
        s.low.initializeMemory(as: UInt8.self, repeating: seed, count: s.usableByteCount)
    }

    private func holds(_ s: GoStack, seed: UInt8) -> Bool {
        let b = UnsafeRawBufferPointer(start: s.low, count: s.usableByteCount)
        return b.allSatisfy { $0 == seed }
    }

    func testSizesRoundUpToPowersOfTwoFrom2KiB() throws {
        let cases: [(Int, Int)] = [(1, 2048), (2048, 2048), (2049, 4096), (4096, 4096), (5000, 8192),
                                   (16384, 16384), (16385, 32768), (100_000, 131072), (1 << 30, 1 << 30),
                                   (0, 0), (-1, 0), ((1 << 30) + 1, 0)]
        for (ask, want) in cases { XCTAssertEqual(stackSize(forRequest: ask), want, "request \(ask)") }
        for ask in [1, 3000, 6000, 9000, 20000, 40000, 70000, 300_000] {
            let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: ask))
            XCTAssertEqual(s.byteCount, stackSize(forRequest: ask))
            XCTAssertEqual(UInt(bitPattern: s.base) % UInt(min(s.byteCount, 8192)), 0, "a stack is aligned to its size, up to 8 KiB")
            XCTAssertEqual(s.guardBytes, 0, "guard pages are off by default")
            XCTAssertEqual(s.high - s.low, s.byteCount)
            fill(s, seed: 0x5A)
            XCTAssertTrue(holds(s, seed: 0x5A))
            GoAllocator.deallocateStack(s)
        }
        assertInvariants()
    }

    func testStacksNeverOverlapEachOtherOrHeapObjects() throws {
        var rng = SplitMix64(seed: 11)
        var stacks: [(GoStack, UInt8)] = []
        var objects: [(UnsafeMutableRawPointer, Int)] = []
        for i in 0..<600 {
            let size = [2048, 4096, 8192, 16384, 32768, 65536][Int(rng.next() % 6)]
            let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: size))
            fill(s, seed: UInt8(truncatingIfNeeded: i | 1))
            stacks.append((s, UInt8(truncatingIfNeeded: i | 1)))
            let n = Int(rng.next() % 40_000) + 1
            let p = try XCTUnwrap(GoAllocator.allocate(byteCount: n, alignment: 16))
            p.initializeMemory(as: UInt8.self, repeating: 0, count: n)
            objects.append((p, n))
            // Free a random third of the stacks as we go, so caches and pools are reused.
            if rng.next() % 3 == 0 {
                let k = Int(rng.next() % UInt64(stacks.count))
                XCTAssertTrue(holds(stacks[k].0, seed: stacks[k].1))
                GoAllocator.deallocateStack(stacks[k].0)
                stacks.remove(at: k)
            }
        }
        var ranges = stacks.map { (UInt(bitPattern: $0.0.base), UInt(bitPattern: $0.0.high)) }
        ranges += objects.map { (UInt(bitPattern: $0.0), UInt(bitPattern: $0.0) + UInt($0.1)) }
        ranges.sort { $0.0 < $1.0 }
        for k in 1..<ranges.count {
            XCTAssertLessThanOrEqual(ranges[k - 1].1, ranges[k].0, "two blocks overlap")
        }
        for (s, seed) in stacks { XCTAssertTrue(holds(s, seed: seed), "a stack was overwritten") }
        let st = GoAllocator.statistics()
        XCTAssertEqual(st.stackAlloc, UInt64(stacks.reduce(0) { $0 + $1.0.byteCount }))
        XCTAssertEqual(st.stackInuse, st.stackAlloc + st.stackCached + st.stackPoolFree + st.stackLargeFree)
        assertInvariants()
        for (s, _) in stacks { GoAllocator.deallocateStack(s) }
        for (p, _) in objects { GoAllocator.deallocate(p) }
        assertInvariants()
    }

    /// Small stacks come from 32 KiB spans; a span goes back to the heap as soon as all its
    /// stacks are back in the pool, and the P's cache keeps at most its 32 KiB budget.
    func testStackSpansGoBackToTheHeapWhenAllTheirStacksAreFree() throws {
        let base = GoAllocator.statistics()
        XCTAssertEqual(base.stackInuse, 0, "trimmed in setUp")
        var stacks: [GoStack] = []
        for _ in 0..<256 { stacks.append(try XCTUnwrap(GoAllocator.allocateStack(byteCount: 2048))) }
        let full = GoAllocator.statistics()
        XCTAssertGreaterThanOrEqual(full.stackInuse, 256 * 2048)
        XCTAssertLessThanOrEqual(full.stackInuse, 256 * 2048 + 32768)  // plus the cache's refill
        XCTAssertEqual(full.heapSys + full.stackInuse, UInt64(GoAllocator.heapSnapshot().committedPages * 8192))
        for s in stacks { GoAllocator.deallocateStack(s) }
        let freed = GoAllocator.statistics()
        XCTAssertEqual(freed.stackAlloc, 0)
        XCTAssertLessThanOrEqual(freed.stackCached, 32768, "a P's cache stays within its budget")
        // What is left: the cached stacks' spans, with the rest of those spans free in the pool.
        XCTAssertEqual(freed.stackInuse, freed.stackCached + freed.stackPoolFree)
        XCTAssertLessThanOrEqual(freed.stackInuse, 16 * 32768, "only spans holding cached stacks remain")
        assertInvariants()
        GoAllocator.trim()
        let trimmed = GoAllocator.statistics()
        XCTAssertEqual(trimmed.stackInuse, 0)
        XCTAssertEqual(trimmed.stackCached, 0)
        XCTAssertEqual(trimmed.stackPoolFree, 0)
        XCTAssertEqual(trimmed.stackAllocs - base.stackAllocs, 256)
        XCTAssertEqual(trimmed.stackFrees - base.stackFrees, 256)
        assertInvariants()
    }

    func testStackLargeReusesAFreedStackOfTheSameSize() throws {
        let a = try XCTUnwrap(GoAllocator.allocateStack(byteCount: 65536))
        GoAllocator.deallocateStack(a)
        XCTAssertEqual(GoAllocator.statistics().stackLargeFree, 65536)
        assertInvariants()
        // Another size does not take it; the same size does.
        let b = try XCTUnwrap(GoAllocator.allocateStack(byteCount: 131072))
        XCTAssertNotEqual(b.base, a.base)
        let c = try XCTUnwrap(GoAllocator.allocateStack(byteCount: 40000))
        XCTAssertEqual(c.base, a.base, "stackLarge hands the freed 64 KiB stack out again")
        XCTAssertEqual(GoAllocator.statistics().stackLargeFree, 0)
        GoAllocator.deallocateStack(b)
        GoAllocator.deallocateStack(c)
        // Within the budget both wait on stackLarge; trim gives them back to the heap.
        XCTAssertEqual(GoAllocator.statistics().stackLargeFree, 65536 + 131072)
        GoAllocator.trim()
        let st = GoAllocator.statistics()
        XCTAssertEqual(st.stackLargeFree, 0)
        XCTAssertEqual(st.stackInuse, 0)
        assertInvariants()
    }

    /// stackLarge keeps at most 16 MiB; past it, freed large stacks go back to the heap.
    func testStackLargeKeepsAtMostItsBudget() throws {
        var stacks: [GoStack] = []
        for _ in 0..<40 { stacks.append(try XCTUnwrap(GoAllocator.allocateStack(byteCount: 1 << 20))) }
        for s in stacks { GoAllocator.deallocateStack(s) }
        let st = GoAllocator.statistics()
        XCTAssertEqual(st.stackLargeFree, 16 << 20)
        XCTAssertEqual(st.stackInuse, 16 << 20)
        assertInvariants()
    }

    /// Threads allocate stacks of every order, hand some to other threads to free, and check
    /// every byte: the per-P caches refill from and drain to the shared pools.
    func testCachesRefillAndDrainAcrossManyThreads() throws {
        let threads = 8
        let rounds = 3000
        let mailbox = Mailbox<GoStackBox>(count: threads)
        let failures = FailureCounter()
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SplitMix64(seed: UInt64(t) &* 7919 &+ 1)
            var mine: [(GoStack, UInt8)] = []
            for r in 0..<rounds {
                let size = 2048 << Int(rng.next() % 5)  // 2 KiB ... 32 KiB
                guard let s = GoAllocator.allocateStack(byteCount: size) else { failures.add(); continue }
                let seed = UInt8(truncatingIfNeeded: (t << 5) ^ r) | 1
                s.low.initializeMemory(as: UInt8.self, repeating: seed, count: min(s.usableByteCount, 512))
                (s.high - 512).initializeMemory(as: UInt8.self, repeating: seed, count: 512)
                mine.append((s, seed))
                if mine.count > 24 || rng.next() % 2 == 0, !mine.isEmpty {
                    let k = Int(rng.next() % UInt64(mine.count))
                    let (victim, vseed) = mine.remove(at: k)
                    if !Self.check(victim, vseed) { failures.add() }
                    if rng.next() % 3 == 0 {
                        mailbox.post(GoStackBox(stack: victim, seed: vseed), to: Int(rng.next() % UInt64(threads)))
                    } else {
                        GoAllocator.deallocateStack(victim)
                    }
                }
                for b in mailbox.take(t) {
                    if !Self.check(b.stack, b.seed) { failures.add() }
                    GoAllocator.deallocateStack(b.stack)
                }
            }
            for (s, seed) in mine {
                if !Self.check(s, seed) { failures.add() }
                GoAllocator.deallocateStack(s)
            }
        }
        for t in 0..<threads {
            for b in mailbox.take(t) {
                if !Self.check(b.stack, b.seed) { failures.add() }
                GoAllocator.deallocateStack(b.stack)
            }
        }
        XCTAssertEqual(failures.value, 0, "allocation failures or overwritten stacks")
        let st = GoAllocator.statistics()
        XCTAssertEqual(st.stackAlloc, 0)
        XCTAssertEqual(st.stackInuse, st.stackCached + st.stackPoolFree + st.stackLargeFree)
        assertInvariants()
        GoAllocator.trim()
        XCTAssertEqual(GoAllocator.statistics().stackInuse, 0)
        assertInvariants()
    }

    private static func check(_ s: GoStack, _ seed: UInt8) -> Bool {
        let lo = UnsafeRawBufferPointer(start: s.low, count: min(s.usableByteCount, 512))
        let hi = UnsafeRawBufferPointer(start: s.high - 512, count: 512)
        return lo.allSatisfy { $0 == seed } && hi.allSatisfy { $0 == seed }
    }

    func testGrowCopiesTheUsedTopAndFreesTheOldStack() throws {
        let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: 4096))
        let used = 1500
        let top = (s.high - used).bindMemory(to: UInt8.self, capacity: used)
        for i in 0..<used { top[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
        let before = GoAllocator.statistics()
        let g = try XCTUnwrap(GoAllocator.growStack(s, usedByteCount: used))
        XCTAssertEqual(g.byteCount, 8192)
        let newTop = (g.high - used).bindMemory(to: UInt8.self, capacity: used)
        for i in 0..<used { XCTAssertEqual(newTop[i], UInt8(truncatingIfNeeded: i &* 7 &+ 3)) }
        let after = GoAllocator.statistics()
        XCTAssertEqual(after.stackAlloc, before.stackAlloc - 4096 + 8192, "the old stack is freed")
        // Growing past 16 KiB crosses into stackLarge; the whole used part comes along.
        var h = g
        for _ in 0..<4 { h = try XCTUnwrap(GoAllocator.growStack(h, usedByteCount: used)) }
        XCTAssertEqual(h.byteCount, 131072)
        let last = (h.high - used).bindMemory(to: UInt8.self, capacity: used)
        for i in 0..<used { XCTAssertEqual(last[i], UInt8(truncatingIfNeeded: i &* 7 &+ 3)) }
        GoAllocator.deallocateStack(h)
        assertInvariants()
    }

    func testCAPIErrorsAsDocumented() {
        errno = 0
        XCTAssertNil(gmStackAlloc(0))
        XCTAssertEqual(errno, Glibc.EINVAL)
        errno = 0
        XCTAssertNil(gmStackAlloc((1 << 30) + 1))
        XCTAssertEqual(errno, Glibc.ENOMEM)
        errno = 0
        XCTAssertNil(gmStackAlloc(-1))  // SIZE_MAX
        XCTAssertEqual(errno, Glibc.ENOMEM)
        gmStackFree(nil, 4096)  // a no-op, like free(NULL)
        let p = gmStackAlloc(3000)
        XCTAssertNotNil(p)
        errno = 0
        XCTAssertNil(gmStackGrow(p, 3000, 4097), "more than the stack holds")
        XCTAssertEqual(errno, Glibc.EINVAL)
        XCTAssertEqual(gmStackGuardSize(65536), 0)
        gmStackFree(p, 4096)  // the same rounded size is the same stack
        assertInvariants()
    }

    // MARK: - Misuse (forked children)

    private func expectAbort(_ message: String, file: StaticString = #filePath, line: UInt = #line, _ body: () -> Void) {
        let r = runInChild(body)
        XCTAssertEqual(r.signal, SIGABRT, "child was not aborted; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr, message + "\n", file: file, line: line)
    }

    func testDoubleFreeOfAStackIsReported() throws {
        for size in [2048, 65536] {
            let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: size))
            expectAbort("gomalloc: stack_free(): invalid stack \(hex(s.base))") {
                GoAllocator.deallocateStack(s)
                GoAllocator.deallocateStack(s)
            }
            GoAllocator.deallocateStack(s)
        }
    }

    func testStackFreeOfTheWrongSizeInteriorOrHeapPointerIsReported() throws {
        let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: 8192))
        expectAbort("gomalloc: stack_free(): invalid stack \(hex(s.base))") { gmStackFree(s.base, 4096) }
        expectAbort("gomalloc: stack_free(): invalid stack \(hex(s.base))") { gmStackFree(s.base, 0) }
        expectAbort("gomalloc: stack_free(): invalid stack \(hex(s.base + 2048))") { gmStackFree(s.base + 2048, 2048) }
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 4096, alignment: 4096))
        expectAbort("gomalloc: stack_free(): invalid stack \(hex(p))") { gmStackFree(p, 4096) }
        GoAllocator.deallocate(p)
        GoAllocator.deallocateStack(s)
    }

    /// The page map knows stacks: free(), realloc() and malloc_usable_size() of any address
    /// in one are invalid pointers.
    func testFreeOfAStackAddressIsAnInvalidPointer() throws {
        for size in [2048, 16384, 65536] {
            let s = try XCTUnwrap(GoAllocator.allocateStack(byteCount: size))
            expectAbort("gomalloc: free(): invalid pointer \(hex(s.base))") { gmFree(s.base) }
            expectAbort("gomalloc: free(): invalid pointer \(hex(s.base + 1024))") { gmFree(s.base + 1024) }
            expectAbort("gomalloc: realloc(): invalid pointer \(hex(s.base))") { _ = gmRealloc(s.base, 100) }
            expectAbort("gomalloc: malloc_usable_size(): invalid pointer \(hex(s.base))") { _ = gmMallocUsableSize(s.base) }
            GoAllocator.deallocateStack(s)
        }
        assertInvariants()
    }
}

/// A stack and its fill pattern, handed between threads.
private struct GoStackBox: Sendable {
    let stack: GoStack
    let seed: UInt8
}

/// Per-thread inboxes of values posted by other threads.
private final class Mailbox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var boxes: [[T]]
    init(count: Int) { boxes = Array(repeating: [], count: count) }
    func post(_ v: T, to i: Int) { lock.lock(); boxes[i].append(v); lock.unlock() }
    func take(_ i: Int) -> [T] { lock.lock(); defer { lock.unlock() }; let b = boxes[i]; boxes[i] = []; return b }
}

private final class FailureCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
