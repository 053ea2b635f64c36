// The generated size classes against the seed's table (Go 1.16's sizeclasses.go).
import Foundation
import XCTest
@testable import GoMalloc
@testable import GoMallocCoreHosted

final class SizeClassTests: XCTestCase {
    /// The fixture: the seed's table verbatim (header + 67 rows, each starting with "//").
    func fixtureLines() throws -> [String] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "sizeclasses-go1.16", withExtension: "txt",
                                                  subdirectory: "Fixtures"))
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testGeneratedTableEqualsSeedRowByRow() throws {
        let lines = try fixtureLines()
        XCTAssertEqual(lines.count, 68)
        let rows = GoAllocator.sizeClasses
        XCTAssertEqual(rows.count, 67)
        for (i, line) in lines.dropFirst().enumerated() {
            let f = line.dropFirst(2).split(separator: " ").map(String.init)
            XCTAssertEqual(f.count, 7, line)
            let r = rows[i]
            XCTAssertEqual(Int(f[0]), r.sizeClass, line)
            XCTAssertEqual(Int(f[1]), r.bytesPerObject, line)
            XCTAssertEqual(Int(f[2]), r.bytesPerSpan, line)
            XCTAssertEqual(Int(f[3]), r.objects, line)
            XCTAssertEqual(Int(f[4]), r.tailWaste, line)
            XCTAssertEqual(f[5], String(format: "%.2f%%", 100 * r.maxWaste), line)
            XCTAssertEqual(Int(f[6]), r.minAlign, line)
        }
    }

    func testSizeClassesCommandPrintsTheSeedTable() throws {
        let exe = productsDirectory().appendingPathComponent("gomalloc")
        // `swift build` / `swift test` build the CLI next to the tests: missing is a failure.
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: exe.path), "\(exe.path) is not built: run `swift build`")
        guard FileManager.default.isExecutableFile(atPath: exe.path) else { return }
        let p = Process()
        p.executableURL = exe
        p.arguments = ["sizeclasses"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let printed = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        let expected = try fixtureLines().map { String($0.dropFirst(3)) }
        XCTAssertEqual(printed, expected)
    }

    func testEverySizeMapsToTheSmallestFittingClass() throws {
        // Any allocation initialises the heap and its tables.
        GoAllocator.deallocate(try XCTUnwrap(GoAllocator.allocate(byteCount: 1, alignment: 1)))
        let h = try XCTUnwrap(theHeap())
        let sizes = GoAllocator.sizeClasses.map(\.bytesPerObject)
        for n in 1...32768 {
            let c = h.pointee.sizeClass(for: n, cABI: false)
            let want = sizes.firstIndex { $0 >= n }! + 1
            if c != want { XCTFail("size \(n): class \(c), want \(want)"); return }
            // C's table: same, except that blocks over 8 bytes must be 16-byte aligned.
            let cc = h.pointee.sizeClass(for: n, cABI: true)
            let wantC = n <= 8 ? want : sizes.firstIndex { $0 >= n && $0 % 16 == 0 }! + 1
            if cc != wantC { XCTFail("C size \(n): class \(cc), want \(wantC)"); return }
        }
        XCTAssertEqual(h.pointee.sizeClass(for: 0, cABI: true), 1)
    }

    func testDivMulIsExactForEveryOffsetOfEverySpan() {
        for r in GoAllocator.sizeClasses {
            let m = UInt64(divMul(forSize: r.bytesPerObject))
            for off in 0..<r.bytesPerSpan {
                let q = Int((UInt64(off) &* m) >> 32)
                if q != off / r.bytesPerObject {
                    XCTFail("class \(r.sizeClass): offset \(off) gives \(q)")
                    return
                }
            }
        }
    }

    func testSpanClassPacksSizeClassAndNoscan() {
        XCTAssertEqual(numSpanClasses, 136)
        let s = SpanClass(sizeClass: 3, noscan: true)
        XCTAssertEqual(s.raw, 7)
        XCTAssertEqual(s.sizeClass, 3)
        XCTAssertTrue(s.noscan)
        XCTAssertFalse(SpanClass(sizeClass: 67, noscan: false).noscan)
        XCTAssertEqual(SpanClass(sizeClass: 67, noscan: true).index, 135)
    }
}

final class LayoutTests: XCTestCase {
    /// The fast paths index MCache's arrays through raw offsets (MCache.allocSlot & co.).
    func testMCacheLayoutMatchesTheFastPathOffsets() {
        XCTAssertEqual(MemoryLayout<MCache>.offset(of: \MCache.alloc), 0)
        XCTAssertEqual(MemoryLayout<MCache>.offset(of: \MCache.nmalloc), MCache.nmallocOffset)
        XCTAssertEqual(MemoryLayout<MCache>.offset(of: \MCache.nfree), MCache.nfreeOffset)
        XCTAssertLessThanOrEqual(MemoryLayout<MCentral>.size, MHeap.centralStride)
        XCTAssertLessThanOrEqual(MemoryLayout<PSlot>.size, pSlotStride)
    }
}
