// HeapMapCommand.swift — `gomalloc heapmap`: a picture of any program's heap.
//
// Role: run a command under the drop-in library with GOMALLOC_HEAPMAP pointing into a
//   temporary directory (the library writes its heap dump at exit, HeapMap.swift in the
//   core), parse the dump of the command's own process (HeapDump) and draw every arena page
//   by page as SVG (HeapMapSVG), and/or print a terminal summary (HeapDump.textSummary).
//   `gomalloc heap --svg` draws the same picture of the Swift library's heap.
// Exit: the command's exit status when it exited (its dump is drawn either way, if written);
//   125 when gomalloc itself fails or no dump came back.
// Go counterpart: none.
import ArgumentParser
import Foundation
import GoMallocCoreHosted
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A parsed GOMALLOC_HEAPMAP dump (the format is in Sources/GoMallocCore/HeapMap.swift).
struct HeapDump: Equatable {
    enum Kind: String, CaseIterable {
        case small, large, stack, free, released, uncommitted
    }

    struct Run: Equatable {
        var kind: Kind
        /// Size class and object size, for small spans; 0 otherwise.
        var sizeClass = 0
        var objectSize = 0
        var pages: Int
    }

    struct Arena: Equatable {
        var base: UInt
        var pages: Int
        var runs: [Run] = []
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var text: String
        var description: String { "heap dump line \(line): \(text)" }
    }

    var pageSize = 0
    var arenaPages = 0
    /// The heap's own counters (the `heap` line).
    var heap: [String: Int] = [:]
    var arenas: [Arena] = []
    /// The `totals` line as written (pages per kind, and "spans").
    var totals: [String: Int] = [:]

    /// Pages of each kind, summed over the runs.
    var pagesByKind: [Kind: Int] {
        var d: [Kind: Int] = [:]
        for a in arenas { for r in a.runs { d[r.kind, default: 0] += r.pages } }
        return d
    }

    /// Pages of small spans per object size.
    var pagesBySize: [Int: Int] {
        var d: [Int: Int] = [:]
        for a in arenas { for r in a.runs where r.kind == .small { d[r.objectSize, default: 0] += r.pages } }
        return d
    }

    var spanCount: Int {
        arenas.reduce(0) { $0 + $1.runs.filter { $0.kind == .small || $0.kind == .stack || $0.kind == .large }.count }
    }

    /// Parse a dump; throws on any line that does not fit the format, or one that is missing.
    init(parsing text: String) throws {
        var sawEnd = false
        var sawHeader = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let f = raw.split(separator: " ").map(String.init)
            func fail(_ why: String) -> ParseError { ParseError(line: i + 1, text: "\(why): \(raw)") }
            func int(_ k: Int) throws -> Int {
                guard k < f.count, let v = Int(f[k]), v >= 0 else { throw fail("expected a number in field \(k + 1)") }
                return v
            }
            /// Fields as `name value` pairs from field 1 on.
            func pairs() throws -> [String: Int] {
                guard f.count % 2 == 1 else { throw fail("expected name value pairs") }
                var d: [String: Int] = [:]
                for k in stride(from: 1, to: f.count, by: 2) { d[f[k]] = try int(k + 1) }
                return d
            }
            if f.isEmpty { continue }
            if sawEnd { throw fail("text after end") }
            if !sawHeader {
                guard f.count == 6, f[0] == "gomalloc-heapmap", f[1] == "1", f[2] == "pagesize", f[4] == "arenapages" else {
                    throw fail("not a version 1 heap dump")
                }
                pageSize = try int(3)
                arenaPages = try int(5)
                sawHeader = true
                continue
            }
            switch f[0] {
            case "heap": heap = try pairs()
            case "arena":
                guard f.count == 3, f[1].hasPrefix("0x"), let base = UInt(f[1].dropFirst(2), radix: 16) else { throw fail("bad arena") }
                arenas.append(Arena(base: base, pages: try int(2)))
            case "small":
                guard f.count == 4, !arenas.isEmpty else { throw fail("bad small run") }
                arenas[arenas.count - 1].runs.append(Run(kind: .small, sizeClass: try int(1), objectSize: try int(2), pages: try int(3)))
            case "totals": totals = try pairs()
            case "end": sawEnd = true
            default:
                guard let kind = Kind(rawValue: f[0]), f.count == 2, !arenas.isEmpty else { throw fail("unknown record") }
                arenas[arenas.count - 1].runs.append(Run(kind: kind, pages: try int(1)))
            }
        }
        if !sawHeader { throw ParseError(line: 1, text: "empty dump") }
        if !sawEnd { throw ParseError(line: 0, text: "no end line (the dump was cut short)") }
        for a in arenas where a.runs.reduce(0, { $0 + $1.pages }) != a.pages {
            throw ParseError(line: 0, text: "arena 0x\(String(a.base, radix: 16)): runs cover \(a.runs.reduce(0) { $0 + $1.pages }) of \(a.pages) pages")
        }
    }

    /// The terminal summary (`--text`): totals by kind, the size classes holding most pages,
    /// and per arena a one-line density bar (64 cells; each the most common kind of its pages).
    func textSummary(title: String) -> String {
        let mib = Double(pageSize) / 1_048_576
        var out = "\(title)\n"
        out += "\(arenas.count) arena(s) of \(arenaPages) pages (\(pageSize / 1024) KiB each)\n"
        let byKind = pagesByKind
        for k in Kind.allCases {
            let p = byKind[k] ?? 0
            out += "  " + k.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                + String(format: " %8d pages %10.1f MiB\n", p, Double(p) * mib)
        }
        out += "  spans        \(spanCount)\n"
        let top = pagesBySize.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(8)
        if !top.isEmpty {
            out += "size classes with most pages:\n"
            for (size, p) in top { out += String(format: "  %6d B %8d pages\n", size, p) }
        }
        out += "arenas (\(HeapMapSVG.legendText)):\n"
        for a in arenas {
            out += "  0x\(String(a.base, radix: 16)) [\(densityBar(a, cells: 64))]\n"
        }
        return out
    }

    private func densityBar(_ a: Arena, cells: Int) -> String {
        let kinds = a.pageKinds
        let per = max(1, (kinds.count + cells - 1) / cells)
        var bar = ""
        for start in stride(from: 0, to: kinds.count, by: per) {
            var counts: [Kind: Int] = [:]
            for k in kinds[start..<min(start + per, kinds.count)] { counts[k, default: 0] += 1 }
            let most = counts.max { $0.value != $1.value ? $0.value < $1.value : $0.key.rawValue > $1.key.rawValue }!.key
            bar.append(HeapMapSVG.letter(most))
        }
        return bar
    }
}

extension HeapDump.Arena {
    /// One kind per page.
    var pageKinds: [HeapDump.Kind] { runs.flatMap { Array(repeating: $0.kind, count: $0.pages) } }
}

/// The SVG picture of a dump: each arena a grid of page cells, 256 to a row, colored by kind
/// (small spans along a gradient by size class), with a legend and the totals.
enum HeapMapSVG {
    static let columns = 256
    static let cell = 3
    static let legendText = "s small, L large, M stack, . free, r released, space uncommitted"

    static func letter(_ k: HeapDump.Kind) -> Character {
        switch k {
        case .small: "s"
        case .large: "L"
        case .stack: "M"
        case .free: "."
        case .released: "r"
        case .uncommitted: " "
        }
    }

    static func color(_ k: HeapDump.Kind) -> String {
        switch k {
        case .small: "#2ca02c"
        case .large: "#1f77b4"
        case .stack: "#9467bd"
        case .free: "#ffd27f"
        case .released: "#d9d9d9"
        case .uncommitted: "#ffffff"
        }
    }

    /// Small spans: class 1 (8 B) blue-green through class 67 (32 KiB) red, by class index.
    static func smallColor(sizeClass: Int) -> String {
        let t = Double(min(max(sizeClass, 1), 67) - 1) / 66
        let hue = 160 - 160 * t  // 160° (teal) to 0° (red)
        return "hsl(\(Int(hue)),70%,45%)"
    }

    private static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func render(_ d: HeapDump, title: String) -> String {
        let left = 20, top = 120, arenaLabel = 18, arenaGap = 14
        let width = left * 2 + columns * cell
        var y = top
        var body = ""
        for a in d.arenas {
            let rows = (a.pages + columns - 1) / columns
            body += "<text x=\"\(left)\" y=\"\(y + 12)\" font-weight=\"bold\">arena 0x\(String(a.base, radix: 16)) (\(a.pages) pages)</text>\n"
            y += arenaLabel
            body += "<rect x=\"\(left - 1)\" y=\"\(y - 1)\" width=\"\(columns * cell + 2)\" height=\"\(rows * cell + 2)\" fill=\"none\" stroke=\"#888\"/>\n"
            // Each run is drawn as horizontal strips, one per grid row it touches.
            var page = 0
            for r in a.runs {
                if r.kind != .uncommitted {
                    let fill = r.kind == .small ? smallColor(sizeClass: r.sizeClass) : color(r.kind)
                    let tip = r.kind == .small ? "small span, \(r.objectSize) B objects (class \(r.sizeClass)), \(r.pages) pages"
                                               : "\(r.kind.rawValue), \(r.pages) pages"
                    var p = page
                    let end = page + r.pages
                    body += "<g fill=\"\(fill)\"><title>\(esc(tip))</title>"
                    while p < end {
                        let row = p / columns, col = p % columns
                        let n = min(end - p, columns - col)
                        body += "<rect x=\"\(left + col * cell)\" y=\"\(y + row * cell)\" width=\"\(n * cell)\" height=\"\(cell)\"/>"
                        p += n
                    }
                    body += "</g>\n"
                }
                page += r.pages
            }
            y += rows * cell + arenaGap
        }
        let height = max(y + 10, top + 40)
        var svg = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)" font-family="sans-serif" font-size="11">
            <rect x="0" y="0" width="\(width)" height="\(height)" fill="white"/>
            <text x="\(left)" y="22" font-size="15" font-weight="bold">\(esc(title))</text>

            """
        // Totals.
        let byKind = d.pagesByKind
        let mib = Double(d.pageSize) / 1_048_576
        let totals = HeapDump.Kind.allCases.filter { $0 != .uncommitted }.map {
            "\($0.rawValue) \(String(format: "%.1f", Double(byKind[$0] ?? 0) * mib)) MiB"
        }.joined(separator: ", ")
        svg += "<text x=\"\(left)\" y=\"40\">\(esc("\(d.arenas.count) arena(s), pages of \(d.pageSize / 1024) KiB, \(columns) per row; \(d.spanCount) spans: \(totals)"))</text>\n"
        // Legend.
        svg += "<g id=\"legend\">\n"
        var lx = left
        for k in HeapDump.Kind.allCases {
            let label = k == .small ? "small (by size class)" : k.rawValue
            let fill = k == .small ? smallColor(sizeClass: 30) : color(k)
            svg += "<rect x=\"\(lx)\" y=\"52\" width=\"12\" height=\"12\" fill=\"\(fill)\" stroke=\"#888\"/><text x=\"\(lx + 16)\" y=\"62\">\(esc(label))</text>\n"
            lx += 22 + label.count * 6
        }
        // The size-class gradient.
        svg += "<text x=\"\(left)\" y=\"88\">small spans: 8 B</text>\n"
        for c in 1...67 {
            svg += "<rect x=\"\(left + 100 + (c - 1) * 5)\" y=\"78\" width=\"5\" height=\"12\" fill=\"\(smallColor(sizeClass: c))\"/>"
        }
        svg += "\n<text x=\"\(left + 100 + 67 * 5 + 6)\" y=\"88\">32 KiB</text>\n"
        let top3 = d.pagesBySize.sorted { $0.value > $1.value }.prefix(3).map { "\($0.key) B: \($0.value) pages" }.joined(separator: ", ")
        if !top3.isEmpty { svg += "<text x=\"\(left)\" y=\"106\">\(esc("most pages: \(top3)"))</text>\n" }
        svg += "</g>\n"
        svg += body
        svg += "</svg>\n"
        return svg
    }
}

extension HeapDump {
    /// The dump of this process's Swift-library heap (`gomalloc heap --svg`), taken through
    /// the core's own writer into a temporary file.
    static func ofThisProcess() throws -> HeapDump {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("gomalloc-heap-\(getpid()).dump").path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("cannot create \(path)") }
        writeHeapMap(fd: fd)
        close(fd)
        defer { unlink(path) }
        return try HeapDump(parsing: String(contentsOfFile: path, encoding: .utf8))
    }
}

struct HeapMapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heapmap",
        abstract: "Run a program under GoMalloc and draw its heap at exit, page by page.",
        usage: "gomalloc heapmap [--out <file.svg>] [--text] [--library <path>] -- <command> [<argument> ...]",
        discussion: """
            The command runs with the drop-in library in LD_PRELOAD (found as `gomalloc run` \
            finds it) and GOMALLOC_HEAPMAP set, so the library writes a heap dump when the \
            command's process exits; its children (each process writes its own) are ignored. \
            The picture shows every arena as rows of 256 pages: small-object spans colored by \
            size class, large spans, stacks, free, released (returned to the OS) and \
            uncommitted pages, with a legend and totals. Without --out or --text, --text is \
            implied. Exit status: the command's; 125 if no dump came back.

            Example: gomalloc heapmap --out heap.svg -- python3 -c 'x = [str(i) for i in range(10**6)]'
            """)

    @ArgumentParser.Option(help: ArgumentHelp("Write the SVG picture here.", valueName: "file.svg")) var out: String?
    @Flag(help: "Print a terminal summary.") var text = false
    @ArgumentParser.Option(help: ArgumentHelp("Also keep the raw dump here.", valueName: "file")) var dump: String?
    @ArgumentParser.Option(help: ArgumentHelp("The library to preload, instead of searching for it.", valueName: "path"))
    var library: String?
    @Argument(parsing: .remaining, help: ArgumentHelp("The program to run and its arguments, after `--`.", valueName: "command"))
    var commandLine: [String] = []

    func validate() throws {
        if commandLine.isEmpty { throw ValidationError("Missing the command to run (gomalloc heapmap [options] -- COMMAND ARGS...).") }
    }

    private func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("gomalloc heapmap: \(message)\n".utf8))
        return ExitCode(125)
    }

    func run() throws {
        let lib: String
        do {
            lib = try DropInLibrary.locate(explicit: library, for: .run)
        } catch {
            throw fail("\(error)")
        }
        let r: DropInLibrary.DumpRun
        do {
            r = try DropInLibrary.runWritingDump(commandLine, library: lib, dumpName: "heap") { ["GOMALLOC_HEAPMAP": $0] }
        } catch {
            throw fail("cannot run \(commandLine[0]): \(error)")
        }
        guard let data = r.dump else {
            throw fail("\(commandLine[0]) left no heap dump (did it run under the library, and exit rather than die?)")
        }
        if let dump { try data.write(to: URL(fileURLWithPath: dump)) }
        let parsed: HeapDump
        do { parsed = try HeapDump(parsing: String(decoding: data, as: UTF8.self)) } catch { throw fail("\(error)") }
        let title = "gomalloc heapmap: " + commandLine.joined(separator: " ")
        if let out {
            try HeapMapSVG.render(parsed, title: title).write(toFile: out, atomically: true, encoding: .utf8)
        }
        if text || out == nil { print(parsed.textSummary(title: title), terminator: "") }
        if let status = r.exitStatus, status != 0 { throw ExitCode(status) }
    }
}
