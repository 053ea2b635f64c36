// ProfileParserTests: the CLI's heap-profile pieces on handwritten input: the GOMALLOC_PROFILE
// dump parser (format in Sources/GoMallocCore/Profile.swift) and its refusals, pprof's
// scaling, the allocator's frames trimmed, folded stacks and top sites, this binary's own ELF
// symbols and DWARF lines reached through its memory map, the pprof message (decoded back
// with swift-protobuf) and its gzip stream (inflated back with zlib), and the flame graph (well-formed XML,
// widths proportional to bytes). Real programs: ProfileTests in GoMallocIntegrationTests.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import CZlib
import SwiftProtobuf
import XCTest
@testable import gomalloc
/// A C-callable function of this file, for the symbol and line lookups.
private let probe: @convention(c) () -> Int32 = { 42 }

final class ProfileParserTests: XCTestCase {
    // Two buckets whose first frame is in the allocator's mapping; the rest are outside any
    // file mapping, so they are named by address.
    static let dump = """
        gomalloc-profile 1 rate 1 pid 42
        sample 3 3072 1 1024 1024 0x7f0000001010 0x5000 0x6000
        sample 2 8192 2 8192 4096 0x7f0000001020 0x5100 0x6000
        dropped 0 1
        maps
        7f0000000000-7f0000010000 r-xp 00000000 fe:00 123      /opt/lib/libgomalloc-preload.so
        7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0        [stack]
        end

        """

    func testParsesAHandwrittenDump() throws {
        let d = try ProfileDump(parsing: Self.dump)
        XCTAssertEqual(d.rate, 1)
        XCTAssertEqual(d.pid, 42)
        XCTAssertEqual(d.samples.count, 2)
        XCTAssertEqual(d.samples[0], .init(allocs: 3, allocBytes: 3072, frees: 1, freeBytes: 1024, size: 1024,
                                          pcs: [0x7f00_0000_1010, 0x5000, 0x6000]))
        XCTAssertEqual(d.droppedObjects, 1)
        XCTAssertEqual(d.mappings.count, 2)
        XCTAssertEqual(d.mappings[0].path, "/opt/lib/libgomalloc-preload.so")
        XCTAssertEqual(d.mappings[1].path, "[stack]")
        XCTAssertEqual(d.mapping(of: 0x7f00_0000_1010)?.perms, "r-xp")
    }

    func testRefusesBrokenDumps() {
        XCTAssertThrowsError(try ProfileDump(parsing: ""))
        XCTAssertThrowsError(try ProfileDump(parsing: "gomalloc-profile 2 rate 1 pid 1\nend\n"))
        XCTAssertThrowsError(try ProfileDump(parsing: "gomalloc-profile 1 rate 1 pid 1\nsample 1 2 3\nend\n"))
        XCTAssertThrowsError(try ProfileDump(parsing: "gomalloc-profile 1 rate 1 pid 1\nsample 1 1 0 0 1 zz\nend\n"))
        XCTAssertThrowsError(try ProfileDump(parsing: "gomalloc-profile 1 rate 1 pid 1\nsample 1 1 0 0 1 0x10\n"), "cut short")
    }

    func testScaling() {
        XCTAssertEqual(heapSampleScale(size: 100, rate: 1), 1)
        // A 512 KiB object at the default rate: 1 / (1 - 1/e).
        XCTAssertEqual(heapSampleScale(size: 524_288, rate: 524_288), 1 / (1 - exp(-1)), accuracy: 1e-12)
        // Small objects: about rate / size samples per sampled one.
        XCTAssertEqual(heapSampleScale(size: 16, rate: 524_288), 32768.5, accuracy: 0.1)
    }

    func testTrimsTheAllocatorFoldsAndRanksSites() throws {
        let p = SymbolizedProfile(try ProfileDump(parsing: Self.dump))
        XCTAssertEqual(p.entries.count, 2)
        XCTAssertEqual(p.entries[0].frames.map(\.function), ["0x5000", "0x6000"], "the allocator's frame is dropped")
        XCTAssertEqual(p.entries[0].inuseBytes, 2048)
        XCTAssertEqual(p.entries[1].inuseBytes, 0)
        XCTAssertEqual(p.folded(inuse: true), "0x6000;0x5000 2048\n")
        XCTAssertEqual(p.folded(inuse: false), "0x6000;0x5000 3072\n0x6000;0x5100 8192\n")
        let top = p.topSites(inuse: false)
        XCTAssertEqual(top.map(\.site), ["0x5100", "0x5000"])
        XCTAssertEqual(p.topSites(inuse: true).map(\.site), ["0x5000"], "sites with nothing in use are left out")
    }

    /// The Profile message decodes back (swift-protobuf) with Go's four sample types, the
    /// period, every sample's values and locations; the gzip stream inflates back (zlib).
    func testPprofMessageAndGzipStream() throws {
        let p = SymbolizedProfile(try ProfileDump(parsing: Self.dump))
        let bytes = Pprof.encode(p, timeNanos: 42)
        let decoded = try Perftools_Profiles_Profile(serializedBytes: bytes)
        let names = decoded.sampleType.map { "\(decoded.stringTable[Int($0.type)])/\(decoded.stringTable[Int($0.unit)])" }
        XCTAssertEqual(names, ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"])
        XCTAssertEqual(decoded.stringTable.first, "", "string 0 is empty, as pprof requires")
        XCTAssertEqual(decoded.stringTable[Int(decoded.defaultSampleType)], "inuse_space")
        XCTAssertEqual(decoded.period, Int64(p.rate))
        XCTAssertEqual(decoded.timeNanos, 42)
        XCTAssertEqual(decoded.sample.count, p.entries.count)
        for (s, e) in zip(decoded.sample, p.entries) {
            XCTAssertEqual(s.value, [e.allocObjects, e.allocBytes, e.inuseObjects, e.inuseBytes].map { Int64(max(0, $0.rounded())) })
            XCTAssertEqual(s.locationID.count, e.frames.count)
            for id in s.locationID { XCTAssertTrue(decoded.location.contains { $0.id == id }, "location \(id)") }
        }
        // gzip: the magic, and zlib inflates it back to the message.
        let gz = Gzip.compress(bytes)
        XCTAssertEqual(Array(gz.prefix(3)), [0x1F, 0x8B, 8])
        var stream = z_stream()
        XCTAssertEqual(inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)), Z_OK)
        var input = gz
        var out = [UInt8](repeating: 0, count: bytes.count + 64)
        let n: Int = input.withUnsafeMutableBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = i.baseAddress; stream.avail_in = uInt(i.count)
                stream.next_out = o.baseAddress; stream.avail_out = uInt(o.count)
                let r = inflate(&stream, Z_FINISH)
                return r == Z_STREAM_END ? o.count - Int(stream.avail_out) : -Int(r)
            }
        }
        inflateEnd(&stream)
        XCTAssertEqual(Array(out.prefix(max(n, 0))), bytes)
    }

    /// This test binary's own symbol table and line table, reached as the CLI reaches a
    /// profile's binaries (through the memory map), name a function of this file and its line
    /// (debug builds carry DWARF).
    func testSymbolsAndLinesOfThisBinary() throws {
        let address = unsafeBitCast(probe, to: UInt.self)
        let maps = try String(contentsOfFile: "/proc/self/maps", encoding: .utf8)
        let dump = try ProfileDump(parsing: "gomalloc-profile 1 rate 1 pid 1\nmaps\n" + maps + "end\n")
        let mapping = try XCTUnwrap(dump.mapping(of: address))
        // As a return address just past the function's first byte (lookups use pc - 1).
        let frame = SymbolCache().frame(pc: address + 1, mapping: mapping)
        XCTAssertTrue(frame.function.contains("ProfileParserTests") || frame.function.contains("probe"), frame.function)
        // The line table: an address inside this test function maps into this file, between
        // the function's first line and the next test's. (Not the probe: a @convention(c)
        // thunk's rows carry line 0, "no source".)
        let elf = try XCTUnwrap(SymbolCache().symbols(mapping.path))
        let me = try XCTUnwrap(elf.functions.first { $0.name.hasSuffix("testSymbolsAndLinesOfThisBinaryyyKF") })
        let lines = try XCTUnwrap(elf.lines, "no .debug_line in \(mapping.path)")
        let l = try XCTUnwrap(lines.lookup(me.start + 16), "no line at \(me.name)")
        XCTAssertTrue(l.file.hasSuffix("ProfileParserTests.swift"), l.file)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let first = try XCTUnwrap(source.firstIndex { $0.contains("func testSymbolsAndLinesOfThisBinary") }) + 1
        let next = try XCTUnwrap(source.firstIndex { $0.contains("func testFlameGraphIsWellFormedAndProportional") }) + 1
        XCTAssertTrue((first..<next).contains(l.line), "line \(l.line) outside \(first)..<\(next)")
    }

    func testFlameGraphIsWellFormedAndProportional() throws {
        let folded = "main;a 300\nmain;b<&> 100\n"
        let svg = FlameGraph.render(folded: folded, title: "t <&>", width: 420)
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
        XCTAssertTrue(svg.contains("b&lt;&amp;&gt;"))
        // Width 420 - 2 * 10 = 400 px for 400 bytes: a gets 300, b 100.
        XCTAssertTrue(svg.contains("width=\"300.00\""), svg)
        XCTAssertTrue(svg.contains("width=\"100.00\""), svg)
        let root = FlameGraph.tree(folded: folded)
        XCTAssertEqual(root.value, 400)
        XCTAssertEqual(root.children["main"]?.children["a"]?.value, 300)
    }
}
