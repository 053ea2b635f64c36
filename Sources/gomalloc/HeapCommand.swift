// `gomalloc heap`: run an allocation scenario through GoMalloc's Swift library and show the
// heap it leaves: arenas, pages, spans per span class by where they sit, and a page map.
import ArgumentParser
import Foundation
import GoMalloc

struct HeapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heap",
        abstract: "Allocate a mix of objects with GoMalloc, free some, and show the heap's structure.",
        discussion: """
            The scenario allocates --objects blocks with sizes drawn from --max-size (mostly small, \
            some large), frees --free-percent of them at random, then prints the arenas, the page \
            counts, every span class in use with its spans split by location (allocating in an \
            mcache, retired in an mcache, on the mcentral's partial or full list), and a map of the \
            first pages of the heap. --svg draws every arena page by page (the picture of `gomalloc heapmap`).
            """)

    @Option(help: "Objects to allocate.") var objects = 50_000
    @Option(help: "Largest object size in bytes (1% of objects are large, up to 4x this).") var maxSize = 2048
    @Option(help: "Percentage of the objects freed again, at random.") var freePercent = 50
    @Option(help: "Pages shown in the page map.") var mapPages = 512
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: ArgumentHelp("Also draw every arena page by page, as `gomalloc heapmap` does, into this SVG file.", valueName: "file.svg"))
    var svg: String?

    func run() throws {
        var rng = SeededGenerator(seed: seed)
        var blocks: [UnsafeMutableRawPointer] = []
        blocks.reserveCapacity(objects)
        for _ in 0..<objects {
            let large = rng.next() % 100 == 0
            let size = large ? 32769 + Int(rng.next() % UInt64(4 * max(maxSize, 8192)))
                             : 1 + Int(rng.next() % UInt64(max(maxSize, 1)))
            guard let p = GoAllocator.allocate(byteCount: size, alignment: 8) else {
                throw ValidationError("out of memory after \(blocks.count) objects")
            }
            p.storeBytes(of: 0xA5, as: UInt8.self)
            blocks.append(p)
        }
        var kept: [UnsafeMutableRawPointer] = []
        for p in blocks {
            if Int(rng.next() % 100) < freePercent { GoAllocator.deallocate(p) } else { kept.append(p) }
        }
        let snap = GoAllocator.heapSnapshot(pageMapLength: mapPages)
        let stats = GoAllocator.statistics()
        print("GoMalloc heap after \(objects) allocations, \(objects - kept.count) freed (Ps: \(stats.processors), mcaches: \(stats.mcaches))")
        print("arenas (64 MiB): " + snap.arenas.map { "0x" + String($0, radix: 16) }.joined(separator: " "))
        print("pages (8 KiB): \(snap.committedPages) committed, \(snap.inUsePages) in spans, \(snap.freePages) free (\(snap.releasedPages) released to the OS)")
        print("HeapAlloc \(stats.heapAlloc) B, HeapInuse \(stats.heapInuse) B, HeapIdle \(stats.heapIdle) B, HeapReleased \(stats.heapReleased) B")
        print("large objects: \(snap.largeSpans) spans, \(snap.largePages) pages; stacks: \(snap.stackSpans) spans, \(snap.stackPages) pages")
        print("")
        print("spanclass  class   size  spans  alloc  retired  partial   full   live/total objects  pages")
        for r in snap.spanClasses {
            print(String(format: "%9d  %5d  %5d  %5d  %5d  %7d  %7d  %5d  %9d/%-9d  %5d",
                         r.spanClass, r.sizeClass, r.objectSize, r.spans, r.allocating, r.retired,
                         r.partial, r.full, r.liveObjects, r.totalObjects, r.pages))
        }
        print("")
        print("page map from 0x\(String(snap.arenas.min() ?? 0, radix: 16)) (s small-object span, L large, M manual, . free, r released):")
        let map = Array(snap.pageMap)
        stride(from: 0, to: map.count, by: 64).forEach { i in
            print(String(format: "  +%5d ", i) + String(map[i..<min(i + 64, map.count)]))
        }
        if let svg {
            let dump = try HeapDump.ofThisProcess()
            try HeapMapSVG.render(dump, title: "gomalloc heap: \(objects) objects up to \(maxSize) B, \(freePercent)% freed")
                .write(toFile: svg, atomically: true, encoding: .utf8)
            print("")
            print("wrote \(svg) (\(dump.arenas.count) arena(s), \(dump.spanCount) spans)")
        }
        for p in kept { GoAllocator.deallocate(p) }
    }
}

/// SplitMix64: a small deterministic generator for reproducible scenarios.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
