// ProfileDump.swift — the parsed GOMALLOC_PROFILE dump (format: Sources/GoMallocCore/Profile.swift),
// its samples scaled back to estimates as pprof does, and symbolized stacks.
import Foundation

struct ProfileDump: Equatable {
    /// One bucket: raw sample counts for one call stack and object size.
    struct Sample: Equatable {
        var allocs: Int
        var allocBytes: Int
        var frees: Int
        var freeBytes: Int
        var size: Int
        /// Return addresses, innermost first (the allocator's own frames included).
        var pcs: [UInt]
    }

    /// One line of /proc/self/maps.
    struct Mapping: Equatable {
        var start: UInt
        var end: UInt
        var perms: String
        var offset: UInt
        var path: String
    }

    struct ParseError: Error, CustomStringConvertible {
        var line: Int
        var text: String
        var description: String { "profile dump line \(line): \(text)" }
    }

    var rate = 0
    var pid = 0
    var samples: [Sample] = []
    var droppedSamples = 0
    var droppedObjects = 0
    var mappings: [Mapping] = []

    init(parsing text: String) throws {
        var inMaps = false, sawHeader = false, sawEnd = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            func fail(_ why: String) -> ParseError { ParseError(line: i + 1, text: "\(why): \(raw)") }
            if raw.isEmpty { continue }
            if sawEnd { throw fail("text after end") }
            if raw == "end" { sawEnd = true; continue }
            if inMaps {
                // start-end perms offset dev inode [path]
                let f = raw.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
                guard f.count >= 5 else { throw fail("bad maps line") }
                let range = f[0].split(separator: "-")
                guard range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16),
                      let off = UInt(f[2], radix: 16) else { throw fail("bad maps line") }
                let path = f.count == 6 ? f[5].trimmingCharacters(in: .whitespaces) : ""
                mappings.append(Mapping(start: lo, end: hi, perms: String(f[1]), offset: off, path: path))
                continue
            }
            let f = raw.split(separator: " ").map(String.init)
            if !sawHeader {
                guard f.count == 6, f[0] == "gomalloc-profile", f[1] == "1", f[2] == "rate", f[4] == "pid",
                      let r = Int(f[3]), let p = Int(f[5]) else { throw fail("not a version 1 profile dump") }
                rate = r; pid = p; sawHeader = true
                continue
            }
            switch f[0] {
            case "sample":
                guard f.count >= 6 else { throw fail("bad sample") }
                let n = f[1...5].compactMap { Int($0) }
                guard n.count == 5, n.allSatisfy({ $0 >= 0 }) else { throw fail("bad sample counts") }
                var pcs: [UInt] = []
                for s in f.dropFirst(6) {
                    guard s.hasPrefix("0x"), let pc = UInt(s.dropFirst(2), radix: 16) else { throw fail("bad pc") }
                    pcs.append(pc)
                }
                samples.append(Sample(allocs: n[0], allocBytes: n[1], frees: n[2], freeBytes: n[3], size: n[4], pcs: pcs))
            case "dropped":
                guard f.count == 3, let a = Int(f[1]), let b = Int(f[2]) else { throw fail("bad dropped line") }
                droppedSamples = a; droppedObjects = b
            case "maps": inMaps = true
            default: throw fail("unknown record")
            }
        }
        if !sawHeader { throw ParseError(line: 1, text: "empty profile dump") }
        if !sawEnd { throw ParseError(line: 0, text: "no end line (the dump was cut short)") }
    }

    /// The mapping holding `pc`, if any.
    func mapping(of pc: UInt) -> Mapping? {
        mappings.first { pc >= $0.start && pc < $0.end }
    }
}

/// pprof's scaling of a heap sample (Go's scaleHeapSample): a bucket of `count` samples of
/// `size`-byte objects sampled at `rate` bytes stands for count / (1 - e^(-size/rate)) objects.
func heapSampleScale(size: Int, rate: Int) -> Double {
    if rate <= 1 || size <= 0 { return 1 }
    return 1 / (1 - exp(-Double(size) / Double(rate)))
}

/// A symbolized profile: per bucket its estimates and its frames (function names, the
/// outermost last), the allocator's own frames removed.
struct SymbolizedProfile {
    struct Frame: Hashable {
        var function: String
        /// The binary's path (basename shown).
        var binary: String
        var pc: UInt
        /// Source file and line of the call, from the binary's DWARF line table (nil without one).
        var file: String? = nil
        var line: Int = 0
    }

    struct Entry {
        var frames: [Frame]
        var size: Int
        var allocObjects: Double
        var allocBytes: Double
        var inuseObjects: Double
        var inuseBytes: Double
        /// Raw counts, for pprof's unscaled view.
        var raw: ProfileDump.Sample
    }

    var rate: Int
    var entries: [Entry]
    var mappings: [ProfileDump.Mapping]

    /// Whether a mapping is GoMalloc itself (its frames are the allocator's, not the program's).
    static func isAllocator(_ path: String) -> Bool {
        let name = (path as NSString).lastPathComponent
        return name.hasPrefix("libgomalloc")
    }

    init(_ dump: ProfileDump, symbols: SymbolCache = SymbolCache()) {
        rate = dump.rate
        mappings = dump.mappings
        entries = dump.samples.map { s in
            var frames: [Frame] = []
            var leading = true
            for pc in s.pcs {
                let m = dump.mapping(of: pc)
                if leading, let m, Self.isAllocator(m.path) { continue }
                leading = false
                frames.append(symbols.frame(pc: pc, mapping: m))
            }
            let k = heapSampleScale(size: s.size, rate: dump.rate)
            return Entry(frames: frames, size: s.size,
                         allocObjects: Double(s.allocs) * k, allocBytes: Double(s.allocBytes) * k,
                         inuseObjects: Double(s.allocs - s.frees) * k, inuseBytes: Double(s.allocBytes - s.freeBytes) * k,
                         raw: s)
        }
    }

    /// The allocation site of an entry: its innermost frame outside the allocator, with the
    /// file and line of its call to the allocator when the binary has a line table.
    static func site(_ e: Entry) -> String {
        guard let f = e.frames.first else { return "[unknown]" }
        guard let file = f.file, f.line > 0 else { return f.function }
        return "\(f.function) (\((file as NSString).lastPathComponent):\(f.line))"
    }

    /// Estimated bytes per site, largest first (ties by name).
    func topSites(inuse: Bool, count: Int = 20) -> [(site: String, bytes: Double, objects: Double)] {
        var d: [String: (Double, Double)] = [:]
        for e in entries {
            let b = inuse ? e.inuseBytes : e.allocBytes, o = inuse ? e.inuseObjects : e.allocObjects
            let v = d[Self.site(e), default: (0, 0)]
            d[Self.site(e)] = (v.0 + b, v.1 + o)
        }
        return d.filter { $0.value.0 > 0 }
            .map { (site: $0.key, bytes: $0.value.0, objects: $0.value.1) }
            .sorted { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.site < $1.site }
            .prefix(count).map { $0 }
    }

    /// Folded stacks (Brendan Gregg's format): `outer;...;inner bytes`, one line per distinct
    /// stack, estimated bytes rounded, sorted.
    func folded(inuse: Bool) -> String {
        var d: [String: Double] = [:]
        for e in entries {
            let v = inuse ? e.inuseBytes : e.allocBytes
            if v <= 0 { continue }
            let key = e.frames.reversed().map { $0.function.replacingOccurrences(of: ";", with: ":") }.joined(separator: ";")
            d[key.isEmpty ? "[unknown]" : key, default: 0] += v
        }
        return d.sorted { $0.key < $1.key }.map { "\($0.key) \(Int($0.value.rounded()))\n" }.joined()
    }
}

/// Symbols of the binaries a profile's mappings name, each file read once.
final class SymbolCache {
    private var files: [String: ELFSymbols?] = [:]

    func symbols(_ path: String) -> ELFSymbols? {
        if let s = files[path] { return s }
        let s = ELFSymbols(path: path)
        files[path] = s
        return s
    }

    /// The frame of return address `pc`: the function holding pc - 1 (the call), or
    /// `binary+0xoffset` when the binary has no symbol for it, or `0xpc` outside any file.
    func frame(pc: UInt, mapping m: ProfileDump.Mapping?) -> SymbolizedProfile.Frame {
        guard let m, !m.path.isEmpty, m.path.hasPrefix("/") else {
            return .init(function: "0x" + String(pc, radix: 16), binary: m?.path ?? "", pc: pc)
        }
        let fileOffset = pc &- 1 &- m.start &+ m.offset
        let base = (m.path as NSString).lastPathComponent
        if let elf = symbols(m.path), let vaddr = elf.vaddr(ofFileOffset: fileOffset), let name = elf.function(at: vaddr) {
            var f = SymbolizedProfile.Frame(function: name, binary: m.path, pc: pc)
            if let l = elf.lines?.lookup(vaddr) { f.file = l.file; f.line = l.line }
            return f
        }
        return .init(function: "\(base)+0x\(String(fileOffset, radix: 16))", binary: m.path, pc: pc)
    }
}
