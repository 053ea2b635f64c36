// Fault injection: the system-call layer (Sys.swift) fails on demand — every Nth call of any
// kind (reserve, commit, metadata maps, madvise, guards, mremap), or every call past a byte
// budget — while a random mix of allocations, reallocations, stacks, frees and trims runs.
// Every operation either succeeds with correct contents or returns nil (ENOMEM); nothing
// leaks or corrupts (checkInvariants, every live block verified); and once memory comes back
// the heap works again and gives everything back.
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class FaultInjectionTests: XCTestCase {
    private struct Block { var p: UnsafeMutableRawPointer; var n: Int; var tag: UInt8 }

    private func fill(_ b: Block) { memset(b.p, Int32(b.tag), min(b.n, 4096)); if b.n > 0 { b.p.storeBytes(of: b.tag, toByteOffset: b.n - 1, as: UInt8.self) } }
    private func verify(_ b: Block, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = b.p.assumingMemoryBound(to: UInt8.self)
        for i in 0..<min(b.n, 4096) where bytes[i] != b.tag {
            return XCTFail("block \(b.p) byte \(i): \(bytes[i]) != \(b.tag)", file: file, line: line)
        }
        XCTAssertEqual(bytes[b.n - 1], b.tag, file: file, line: line)
    }

    override func tearDown() {
        sysFaultEvery.store(0, ordering: .relaxed)
        sysFaultByteBudget.store(-1, ordering: .relaxed)
        sysFaultsPending.store(0, ordering: .relaxed)
    }

    /// A random mix of operations under whatever faults are set; returns (successes, nils).
    private func churn(steps: Int, seed: UInt64, blocks: inout [Block], stacks: inout [GoStack]) -> (Int, Int) {
        var rng = seed
        func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 17 }
        var ok = 0, failed = 0
        for step in 0..<steps {
            let r = next()
            switch r % 10 {
            case 0...4:
                let sizes = [24, 200, 3000, 40_000, 700_000, 5 << 20]
                let n = sizes[Int(r >> 8) % sizes.count] + Int(r >> 20) % 64
                if let p = GoAllocator.allocate(byteCount: n, alignment: 16) {
                    let b = Block(p: p, n: n, tag: UInt8(truncatingIfNeeded: step))
                    fill(b)
                    blocks.append(b)
                    ok += 1
                } else {
                    failed += 1
                }
            case 5, 6:
                if blocks.isEmpty { continue }
                let i = Int(r >> 8) % blocks.count
                verify(blocks[i])
                GoAllocator.deallocate(blocks[i].p)
                blocks.swapAt(i, blocks.count - 1)
                blocks.removeLast()
            case 7:
                if blocks.isEmpty { continue }
                let i = Int(r >> 8) % blocks.count
                let n = max(1, blocks[i].n * (r & 1 == 0 ? 3 : 1) / 2)
                verify(blocks[i])
                if let q = GoAllocator.reallocate(blocks[i].p, byteCount: n, alignment: 16) {
                    let keep = Block(p: q, n: min(n, blocks[i].n), tag: blocks[i].tag)
                    let bytes = q.assumingMemoryBound(to: UInt8.self)
                    for k in 0..<min(keep.n, 4096) where bytes[k] != keep.tag { XCTFail("realloc lost byte \(k)"); break }
                    blocks[i] = Block(p: q, n: n, tag: blocks[i].tag &+ 1)
                    fill(blocks[i])
                    ok += 1
                } else {
                    failed += 1  // the old block stays valid
                    verify(blocks[i])
                }
            case 8:
                if r & 2 == 0, let s = GoAllocator.allocateStack(byteCount: [8192, 65536, 1 << 20][Int(r >> 8) % 3]) {
                    memset(s.low, 0x5A, s.usableByteCount)
                    stacks.append(s)
                    ok += 1
                } else if let s = stacks.popLast() {
                    GoAllocator.deallocateStack(s)
                } else {
                    failed += 1
                }
            default:
                if r % 50 == 9 { _ = GoAllocator.trim() }
            }
        }
        return (ok, failed)
    }

    private func finish(_ blocks: inout [Block], _ stacks: inout [GoStack]) throws {
        for b in blocks { verify(b); GoAllocator.deallocate(b.p) }
        for s in stacks { GoAllocator.deallocateStack(s) }
        blocks = []
        stacks = []
        assertHeapInvariants()
        // Memory is back: everything works, and the heap gives it all back.
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 3 << 20, alignment: 16))
        let q = try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: 16))
        GoAllocator.deallocate(p)
        GoAllocator.deallocate(q)
        _ = GoAllocator.trim()
        let s = GoAllocator.statistics()
        XCTAssertEqual(s.heapIdle, s.heapReleased, "every free page released after the faults stopped")
        assertHeapInvariants()
    }

    /// Every 3rd, 7th and 29th system call fails, madvise and guards included.
    func testEveryNthSystemCallFails() throws {
        for every in [3, 7, 29] {
            var blocks: [Block] = [], stacks: [GoStack] = []
            let injected = sysFaultsInjected.load(ordering: .relaxed)
            sysFaultEvery.store(every, ordering: .relaxed)
            let (ok, _) = churn(steps: 3000, seed: UInt64(every), blocks: &blocks, stacks: &stacks)
            sysFaultEvery.store(0, ordering: .relaxed)
            XCTAssertGreaterThan(ok, 1000, "every \(every): most operations still succeed")
            let faults = sysFaultsInjected.load(ordering: .relaxed) - injected
            XCTAssertGreaterThan(faults, 0, "every \(every): faults were injected")
            print("fault injection, every \(every)th call: \(faults) faults, \(ok) operations succeeded")
            assertHeapInvariants()
            try finish(&blocks, &stacks)
        }
    }

    /// The OS gives 64 MiB more and then nothing: allocation past it returns nil, the rest
    /// keeps working from what the heap holds.
    func testByteBudgetRunsOut() throws {
        var blocks: [Block] = [], stacks: [GoStack] = []
        GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 64, alignment: 8)))  // the heap exists
        sysFaultByteBudget.store(64 << 20, ordering: .relaxed)
        let (ok, failed) = churn(steps: 4000, seed: 99, blocks: &blocks, stacks: &stacks)
        sysFaultByteBudget.store(-1, ordering: .relaxed)
        XCTAssertGreaterThan(ok, 0)
        XCTAssertGreaterThan(failed, 0, "the budget ran out")
        print("fault injection, 64 MiB budget: \(ok) operations succeeded, \(failed) returned nil")
        assertHeapInvariants()
        try finish(&blocks, &stacks)
    }
}
