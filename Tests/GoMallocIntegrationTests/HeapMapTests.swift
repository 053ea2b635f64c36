// HeapMapTests: `gomalloc heapmap` on a known program (Tests/CPrograms/heapmap.c: 2000 live
// blocks of 100 bytes, 20 live blocks of 1 MiB): the library's GOMALLOC_HEAPMAP dump, read
// here with a parser of its own (the CLI's HeapDump is tested on a handwritten dump in
// GoMallocCLITests), has the spans it should, its totals are the sums of its runs and agree
// with the heap's counters, and the SVG is well-formed XML with the legend.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

final class HeapMapTests: XCTestCase {
    func testDumpOfAKnownProgram() throws {
        let library = try DropIn.requireLibrary("the heap dump")
        let gomalloc = try DropIn.gomallocExecutable()
        let exe = try DropIn.compile("heapmap.c")
        let dir = DropIn.workDir.appendingPathComponent("heapmap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let svg = dir.appendingPathComponent("heap.svg"), dump = dir.appendingPathComponent("heap.dump")
        let r = try DropIn.run(gomalloc, ["heapmap", "--library", library, "--out", svg.path, "--dump", dump.path, "--text", "--", exe],
                               timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertTrue(r.stdout.contains("OK heapmap"), r.summary)
        XCTAssertTrue(r.stdout.contains("size classes with most pages:"), r.summary)

        // The dump, line by line.
        let lines = try String(contentsOf: dump, encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(lines.first, ["gomalloc-heapmap", "1", "pagesize", "8192", "arenapages", "8192"])
        XCTAssertEqual(lines.last, ["end"])
        var pages: [String: Int] = [:]
        var smallBySize: [Int: Int] = [:]
        var largeSpans = 0, spans = 0, arenaPages = 0, covered = 0
        var heap: [String: Int] = [:], totals: [String: Int] = [:]
        func pairs(_ f: [String]) -> [String: Int] {
            Dictionary(uniqueKeysWithValues: stride(from: 1, to: f.count - 1, by: 2).map { (f[$0], Int(f[$0 + 1]) ?? -1) })
        }
        for f in lines.dropFirst() {
            switch f[0] {
            case "heap": heap = pairs(f)
            case "totals": totals = pairs(f)
            case "end": break
            case "arena":
                XCTAssertEqual(f.count, 3, "\(f)")
                XCTAssertTrue(f[1].hasPrefix("0x"), "\(f)")
                arenaPages += Int(f[2]) ?? 0
            case "small":
                XCTAssertEqual(f.count, 4, "\(f)")
                let n = Int(f[3]) ?? 0
                pages["small", default: 0] += n
                smallBySize[Int(f[2]) ?? 0, default: 0] += n
                covered += n
                spans += 1
            default:
                XCTAssertTrue(["large", "stack", "free", "released", "uncommitted"].contains(f[0]), "\(f)")
                XCTAssertEqual(f.count, 2, "\(f)")
                let n = Int(f[1]) ?? 0
                pages[f[0], default: 0] += n
                covered += n
                if f[0] == "large" { largeSpans += 1; XCTAssertEqual(n, 128, "a 1 MiB block is one span of 128 pages") }
                if f[0] == "stack" { spans += 1 }
            }
        }
        spans += largeSpans
        XCTAssertEqual(covered, arenaPages, "the runs cover every arena page")
        XCTAssertEqual(largeSpans, 20, "the 20 live 1 MiB blocks")
        XCTAssertGreaterThanOrEqual(pages["large"] ?? 0, 20 * 128)
        // 2000 live 100-byte blocks in the 112-byte class (73 per 8 KiB span): at least 28 spans.
        XCTAssertGreaterThanOrEqual(smallBySize[112] ?? 0, 2000 / (8192 / 112), "small spans of the 112-byte class: \(smallBySize)")
        for kind in ["small", "large", "stack", "free", "released", "uncommitted"] {
            XCTAssertEqual(totals[kind], pages[kind] ?? 0, "totals \(kind) is the sum of its runs")
        }
        XCTAssertEqual(totals["spans"], spans)
        // The heap's counters: every committed page is in a span, free or released.
        let inArenas = (pages["small"] ?? 0) + (pages["large"] ?? 0) + (pages["stack"] ?? 0) + (pages["free"] ?? 0) + (pages["released"] ?? 0)
        XCTAssertEqual(heap["committed"], inArenas, "heap \(heap), runs \(pages)")
        XCTAssertEqual(heap["released"], pages["released"] ?? 0)

        // The picture.
        let data = try Data(contentsOf: svg)
        let parser = XMLParser(data: data)
        XCTAssertTrue(parser.parse(), "SVG is not well-formed XML: \(String(describing: parser.parserError))")
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains("<g id=\"legend\">"), "legend")
        for label in ["small (by size class)", "large", "stack", "free", "released", "uncommitted"] {
            XCTAssertTrue(text.contains(">\(label)</text>"), "legend entry \(label)")
        }
        XCTAssertTrue(text.contains("112 B objects"), "a small span of the 112-byte class is drawn")
    }

    /// A forked child inherits the exit handler and the variable but writes no dump (HeapMap.I3);
    /// `%p` is the writer's pid.
    func testOnlyTheRegisteringProcessWrites() throws {
        let allocator = try DropIn.allocator()
        _ = try DropIn.requireLibrary("the heap dump")
        let exe = try DropIn.compile("heapmap.c")
        let dir = DropIn.workDir.appendingPathComponent("heapmap-fork-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try DropIn.run(exe, ["fork"], environment: DropIn.environment(
            for: allocator, ["GOMALLOC_HEAPMAP": dir.appendingPathComponent("heap.%p").path]), timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        let parent = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("parent ") }?.split(separator: " ").last, r.summary)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["heap.\(parent)"])
    }

    /// `gomalloc heap --svg`: the Swift library's heap through the same writer and picture.
    func testHeapCommandDrawsTheSamePicture() throws {
        let gomalloc = try DropIn.gomallocExecutable()
        let svg = DropIn.workDir.appendingPathComponent("heap-\(UUID().uuidString).svg")
        defer { try? FileManager.default.removeItem(at: svg) }
        let r = try DropIn.run(gomalloc, ["heap", "--objects", "5000", "--svg", svg.path], timeout: 120)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertTrue(r.stdout.contains("wrote \(svg.path)"), r.summary)
        let data = try Data(contentsOf: svg)
        let parser = XMLParser(data: data)
        XCTAssertTrue(parser.parse(), "\(String(describing: parser.parserError))")
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains("<g id=\"legend\">") && text.contains("small span, "), "legend and small spans")
    }
}
