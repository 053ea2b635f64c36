// Misuse is reported in one line naming the pointer, then the process aborts.
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted  // firstUnmappedInnerPage

final class BadPointerTests: XCTestCase {
    func expectAbort(_ message: String, file: StaticString = #filePath, line: UInt = #line,
                     _ body: () -> Void) {
        let r = runInChild(body)
        XCTAssertEqual(r.signal, SIGABRT, "child was not aborted; stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr, message + "\n", file: file, line: line)
    }

    func hex(_ p: UnsafeMutableRawPointer) -> String { "0x" + String(UInt(bitPattern: p), radix: 16) }

    func testDoubleFreeOfASmallObject() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 48, alignment: 8))
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        GoAllocator.deallocate(p)
    }

    /// Freed objects sit on the P's recent-free stack until reused: a second free of one
    /// still there, with others freed after it, is caught (its freeBits bit is set).
    func testDoubleFreeOfAnObjectOnTheRecentFreeStack() throws {
        // The stack is the P's, and under rseq that is the CPU's: stay on one CPU from the
        // first malloc (q's span must be this P's) to the last.
        let pin = try CPUPin()
        defer { pin.restore() }
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 48, alignment: 8))
        let q = try XCTUnwrap(GoAllocator.allocate(byteCount: 48, alignment: 8))
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(q)
            GoAllocator.deallocate(p)
        }
        // And reused from the stack, then freed once more: a normal free.
        GoAllocator.deallocate(q)
        let r = try XCTUnwrap(GoAllocator.allocate(byteCount: 48, alignment: 8))
        XCTAssertEqual(r, q)
        GoAllocator.deallocate(r)
        GoAllocator.deallocate(p)
    }

    func testDoubleFreeOfAnObjectInAnUncachedSpan() throws {
        // Fill more spans than a P retires so the first object's span is no longer cached.
        var ps: [UnsafeMutableRawPointer] = []
        for _ in 0..<((MCache.maxRetired + 8) * 73) { ps.append(try XCTUnwrap(GoAllocator.allocate(byteCount: 100, alignment: 8))) }
        let p = try XCTUnwrap(ps.first { theHeap()?.spanOf(UInt(bitPattern: $0))?.pointee.location.load(ordering: .relaxed) == SpanLocation.full },
                              "set-up: no span of the class went back to mcentral")
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        for q in ps { GoAllocator.deallocate(q) }
    }

    func testDoubleFreeOfALargeObject() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 100_000, alignment: 8))
        let q = try XCTUnwrap(GoAllocator.allocate(byteCount: 100_000, alignment: 8))
        expectAbort("gomalloc: free(): double free \(hex(p))") {
            GoAllocator.deallocate(p)
            GoAllocator.deallocate(p)
        }
        GoAllocator.deallocate(p)
        GoAllocator.deallocate(q)
    }

    func testInteriorPointer() throws {
        let p = try XCTUnwrap(GoAllocator.allocate(byteCount: 64, alignment: 8))
        expectAbort("gomalloc: free(): invalid pointer \(hex(p + 8))") { GoAllocator.deallocate(p + 8) }
        let big = try XCTUnwrap(GoAllocator.allocate(byteCount: 1 << 20, alignment: 8))
        expectAbort("gomalloc: free(): invalid pointer \(hex(big + 8))") { GoAllocator.deallocate(big + 8) }
        // An inner page of a large block (whatever its page-map entry holds: nothing, or the
        // tombstone of a large block that started there before).
        expectAbort("gomalloc: free(): invalid pointer \(hex(big + 8192))") { GoAllocator.deallocate(big + 8192) }
        GoAllocator.deallocate(p)
        GoAllocator.deallocate(big)
    }

    func testForeignPointers() throws {
        let foreign = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)  // glibc's
        defer { foreign.deallocate() }
        expectAbort("gomalloc: free(): invalid pointer \(hex(foreign))") { GoAllocator.deallocate(foreign) }
        var local = 0
        withUnsafeMutablePointer(to: &local) { lp in
            let raw = UnsafeMutableRawPointer(lp)
            expectAbort("gomalloc: free(): invalid pointer \(hex(raw))") { GoAllocator.deallocate(raw) }
        }
    }
}
