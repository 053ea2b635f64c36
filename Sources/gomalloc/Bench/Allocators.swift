// Allocators.swift: finding the allocators `gomalloc bench` compares: glibc (no preload), the
// peers (jemalloc, tcmalloc, mimalloc) in the library directories or `ldconfig -p`, and
// GoMalloc's drop-in library (through DropInLibrary, the rule `gomalloc run` uses too).

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct AllocatorInfo {
    var name: String
    var library: String?  // nil: the system allocator
    var available: Bool
    var skipped: String?
    var install: String?
}

struct PeerSpec {
    var name: String
    var sonames: [String]
    var package: String
}

let peerSpecs = [
    PeerSpec(name: "jemalloc", sonames: ["libjemalloc.so.2", "libjemalloc.so"], package: "libjemalloc2"),
    PeerSpec(
        name: "tcmalloc", sonames: ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so"],
        package: "libtcmalloc-minimal4"),
    PeerSpec(name: "mimalloc", sonames: ["libmimalloc.so.2", "libmimalloc.so"], package: "libmimalloc2.0"),
]

func machineName() -> String {
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: &u.machine) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}

/// Library directories to search, the multiarch ones of this machine first.
func librarySearchDirs() -> [String] {
    let machine = machineName()
    var triples: [String] = []
    switch machine {
    case "x86_64", "amd64": triples = ["x86_64-linux-gnu"]
    case "aarch64", "arm64": triples = ["aarch64-linux-gnu"]
    default: triples = ["\(machine)-linux-gnu"]
    }
    var dirs: [String] = []
    for t in triples { dirs += ["/usr/lib/\(t)", "/lib/\(t)", "/usr/local/lib/\(t)"] }
    dirs += ["/usr/lib64", "/lib64", "/usr/local/lib", "/usr/lib", "/lib"]
    return dirs
}

/// `ldconfig -p` lines `\tlibfoo.so.2 (libc6,x86-64) => /path/libfoo.so.2`, by soname.
func ldconfigCache() -> [String: String] {
    var map: [String: String] = [:]
    for ldconfig in ["/sbin/ldconfig", "/usr/sbin/ldconfig"] where FileManager.default.isExecutableFile(atPath: ldconfig) {
        guard let text = try? captureOutput(ldconfig, ["-p"]) else { continue }
        for line in text.split(separator: "\n") {
            let parts = line.components(separatedBy: " => ")
            guard parts.count == 2, let soname = parts[0].trimmingCharacters(in: .whitespaces).split(separator: " ").first
            else { continue }
            if map[String(soname)] == nil { map[String(soname)] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        break
    }
    return map
}

func findPeer(_ spec: PeerSpec, ldcache: () -> [String: String]) -> String? {
    let env = ProcessInfo.processInfo.environment["GOMALLOC_BENCH_\(spec.name.uppercased())"]
    if let env, FileManager.default.fileExists(atPath: env) { return env }
    let dirs = librarySearchDirs()
    for soname in spec.sonames {
        for dir in dirs {
            let path = "\(dir)/\(soname)"
            if FileManager.default.fileExists(atPath: path) { return path }
        }
    }
    let cache = ldcache()
    for soname in spec.sonames {
        if let path = cache[soname], FileManager.default.fileExists(atPath: path) { return path }
    }
    return nil
}

extension BenchRunner {
    mutating func discoverAllocators() {
        var ldcacheMemo: [String: String]?
        let ldcache: () -> [String: String] = {
            if ldcacheMemo == nil { ldcacheMemo = ldconfigCache() }
            return ldcacheMemo!
        }
        var found: [AllocatorInfo] = [AllocatorInfo(name: "glibc", library: nil, available: true)]
        for spec in peerSpecs {
            let install = "apt-get install -y \(spec.package)"
            if let path = findPeer(spec, ldcache: ldcache) {
                found.append(AllocatorInfo(name: spec.name, library: path, available: true, install: install))
            } else {
                found.append(AllocatorInfo(
                    name: spec.name, library: nil, available: false,
                    skipped: "\(spec.sonames[0]) not found (Debian package \(spec.package))", install: install))
            }
        }
        do {
            let path = try DropInLibrary.locate(explicit: config.gomallocLib, for: .measure)
            found.append(AllocatorInfo(name: "gomalloc", library: path, available: true))
        } catch let error as DropInLibrary.NotFound {
            found.append(AllocatorInfo(
                name: "gomalloc", library: nil, available: false,
                skipped: "libgomalloc-preload.so not found (build it with `swift build -c release`; looked in \(error.searched.joined(separator: ", ")))"
            ))
        } catch {
            found.append(AllocatorInfo(name: "gomalloc", library: nil, available: false, skipped: "\(error)"))
        }
        if !config.allocatorFilter.isEmpty {
            for i in found.indices where !config.allocatorFilter.contains(found[i].name) {
                found[i].available = false
                found[i].skipped = "not selected (--allocator)"
            }
        }
        allocators = found
        for a in allocators {
            if a.available {
                var line = "allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(a.library ?? "system malloc (no preload)")"
                if a.name == "gomalloc", let lib = a.library, lib.contains("/debug/") {
                    line += "  (a debug build: numbers are not representative)"
                }
                say(line)
            } else if let install = a.install, a.skipped?.hasPrefix("not selected") != true {
                say("allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) SKIPPED: \(a.skipped ?? "") — install it with: \(install)")
            } else {
                say("allocator \(a.name.padding(toLength: 9, withPad: " ", startingAt: 0)) SKIPPED: \(a.skipped ?? "")")
            }
        }
    }
}
