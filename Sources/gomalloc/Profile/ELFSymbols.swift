// ELFSymbols.swift — function symbols of an ELF64 file (.symtab, else .dynsym), its PT_LOAD
// segments, enough to name the function holding an address, and its DWARF line table
// (.debug_line, DWARFLines) when it has one, for the source file and line.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct ELFSymbols {
    struct Segment {
        var offset: UInt
        var vaddr: UInt
        var filesz: UInt
    }

    /// Function symbols sorted by address: (start, size, name).
    private(set) var functions: [(start: UInt, size: UInt, name: String)] = []
    private(set) var segments: [Segment] = []
    /// The line table (nil without .debug_line, or when it is compressed).
    private(set) var lines: DWARFLines?

    /// nil when the file cannot be read or is not a little-endian ELF64 file.
    init?(path: String) {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        self.init(data: data)
    }

    init?(data: Data) {
        let bytes = [UInt8](data)
        guard bytes.count >= 64, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46,
              bytes[4] == 2, bytes[5] == 1 else { return nil }
        func u16(_ o: Int) -> UInt { o + 2 <= bytes.count ? UInt(bytes[o]) | UInt(bytes[o + 1]) << 8 : 0 }
        func u32(_ o: Int) -> UInt { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> UInt { u32(o) | u32(o + 4) << 32 }
        let phoff = Int(u64(0x20)), shoff = Int(u64(0x28))
        let phentsize = Int(u16(0x36)), phnum = Int(u16(0x38))
        let shentsize = Int(u16(0x3A)), shnum = Int(u16(0x3C))
        for i in 0..<phnum {
            let o = phoff + i * phentsize
            guard o + 56 <= bytes.count else { break }
            if u32(o) == 1 {  // PT_LOAD
                segments.append(Segment(offset: u64(o + 8), vaddr: u64(o + 16), filesz: u64(o + 32)))
            }
        }
        // Sections: type, offset, size, link, entsize.
        struct Section { var name: Int; var type: UInt; var flags: UInt; var offset: Int; var size: Int; var link: Int; var entsize: Int }
        var sections: [Section] = []
        for i in 0..<shnum {
            let o = shoff + i * shentsize
            guard o + 64 <= bytes.count else { break }
            sections.append(Section(name: Int(u32(o)), type: u32(o + 4), flags: u64(o + 8), offset: Int(u64(o + 24)),
                                    size: Int(u64(o + 32)), link: Int(u32(o + 40)), entsize: Int(u64(o + 56))))
        }
        // Sections by name (through the section-name string table, e_shstrndx).
        let shstrndx = Int(u16(0x3E))
        func named(_ want: String) -> ArraySlice<UInt8>? {
            guard shstrndx < sections.count else { return nil }
            let names = sections[shstrndx]
            for s in sections where s.type != 8 && s.flags & 0x800 == 0 {  // not NOBITS, not SHF_COMPRESSED
                var e = names.offset + s.name
                let start = e
                while e < bytes.count && bytes[e] != 0 { e += 1 }
                guard e < bytes.count, String(decoding: bytes[start..<e], as: UTF8.self) == want,
                      s.offset + s.size <= bytes.count else { continue }
                return bytes[s.offset..<(s.offset + s.size)]
            }
            return nil
        }
        if let debugLine = named(".debug_line") {
            let l = DWARFLines(debugLine: debugLine, lineStr: named(".debug_line_str") ?? [], str: named(".debug_str") ?? [])
            lines = l.isEmpty ? nil : l
        }
        func read(_ tableType: UInt) -> [(UInt, UInt, String)] {
            var out: [(UInt, UInt, String)] = []
            for s in sections where s.type == tableType && s.entsize >= 24 && s.link < sections.count {
                let strtab = sections[s.link]
                var o = s.offset
                while o + 24 <= s.offset + s.size && o + 24 <= bytes.count {
                    let nameOff = Int(u32(o)), info = bytes[o + 4], shndx = u16(o + 6)
                    let value = u64(o + 8), size = u64(o + 16)
                    let type = info & 0xF
                    if (type == 2 || type == 10) && shndx != 0 && value != 0 {  // STT_FUNC, STT_GNU_IFUNC
                        var e = strtab.offset + nameOff
                        let start = e
                        while e < bytes.count && bytes[e] != 0 { e += 1 }
                        if e > start { out.append((value, size, String(decoding: bytes[start..<e], as: UTF8.self))) }
                    }
                    o += s.entsize
                }
            }
            return out
        }
        var syms = read(2)  // SHT_SYMTAB
        if syms.isEmpty { syms = read(11) }  // SHT_DYNSYM
        syms.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 > $1.1 }
        functions = syms.map { (start: $0.0, size: $0.1, name: $0.2) }
    }

    /// The virtual address a file offset is loaded at (by the PT_LOAD segment holding it).
    func vaddr(ofFileOffset off: UInt) -> UInt? {
        for s in segments where off >= s.offset && off < s.offset + s.filesz { return off - s.offset + s.vaddr }
        return nil
    }

    /// The name of the function holding `vaddr` (demangled when Swift or C++): the last symbol
    /// starting at or below it, if the address lies within its size (or the size is 0).
    func function(at vaddr: UInt) -> String? {
        var lo = 0, hi = functions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if functions[mid].start <= vaddr { lo = mid + 1 } else { hi = mid }
        }
        var i = lo - 1
        while i >= 0 {
            let f = functions[i]
            if f.size == 0 || vaddr < f.start + f.size { return Demangler.demangle(f.name) }
            // A symbol nested in a larger one (an alias of the same start): look further down.
            if i > 0 && functions[i - 1].start == f.start { i -= 1; continue }
            return nil
        }
        return nil
    }
}

/// Swift names through the runtime's swift_demangle, C++ names through libstdc++'s
/// __cxa_demangle (found with dlsym: both are loaded in a Swift program on Linux).
enum Demangler {
    private typealias SwiftDemangle = @convention(c) (UnsafePointer<CChar>, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32) -> UnsafeMutablePointer<CChar>?
    private typealias CxaDemangle = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int32>?) -> UnsafeMutablePointer<CChar>?
    private static let swiftDemangle: SwiftDemangle? = dlsym(nil, "swift_demangle").map { unsafeBitCast($0, to: SwiftDemangle.self) }
    private static let cxaDemangle: CxaDemangle? = dlsym(nil, "__cxa_demangle").map { unsafeBitCast($0, to: CxaDemangle.self) }

    static func demangle(_ name: String) -> String {
        if name.hasPrefix("$s") || name.hasPrefix("_$s"), let f = swiftDemangle {
            if let out = name.withCString({ f($0, strlen($0), nil, nil, 0) }) {
                defer { free(out) }
                return String(cString: out)
            }
        } else if name.hasPrefix("_Z"), let f = cxaDemangle {
            var status: Int32 = 0
            if let out = name.withCString({ f($0, nil, nil, &status) }), status == 0 {
                defer { free(out) }
                return String(cString: out)
            }
        }
        return name
    }
}
