// HeapProfile.swift — the Swift API's view of heap profiling (Sources/GoMallocCore/Profile.swift):
// turn sampling on, and read the samples as Go's runtime.MemProfile returns its records.
import Foundation
import GoMallocCoreHosted

/// One sampled call stack and object size (Go's runtime.MemProfileRecord), with raw sample
/// counts and the estimates pprof derives from them.
public struct HeapProfileSample: Equatable, Sendable {
    /// Sampled allocations and their bytes (object sizes: size classes, or whole pages).
    public var allocatedObjects: Int
    public var allocatedBytes: Int
    /// Sampled objects freed since, and their bytes.
    public var freedObjects: Int
    public var freedBytes: Int
    /// The size of each object sampled here.
    public var objectSize: Int
    /// Return addresses, innermost first, starting inside the allocator (its sampling routine
    /// and entry points) and going out through the caller's frames, as far as frame
    /// pointers lead.
    public var stack: [UInt]

    public var inUseObjects: Int { allocatedObjects - freedObjects }
    public var inUseBytes: Int { allocatedBytes - freedBytes }

    /// pprof's estimate of the bytes these samples stand for at `rate`: each sample of an
    /// s-byte object counts 1 / (1 - e^(-s/rate)) objects.
    public func estimated(_ bytes: Int, rate: Int) -> Double {
        if rate <= 1 || objectSize <= 0 { return Double(bytes) }
        return Double(bytes) / (1 - exp(-Double(objectSize) / Double(rate)))
    }
}

extension GoAllocator {
    /// The mean bytes between samples (Go's MemProfileRate): 0 when sampling is off. Set
    /// from GOMALLOC_PROFILE / GOMALLOC_PROFILE_RATE at start; `setHeapProfileRate` changes it.
    public static var heapProfileRate: Int { profileCurrentRate() }

    /// Turn sampling on at `bytes` (1 samples every allocation) or off with 0; samples
    /// already taken stay, and the frees of sampled objects are still counted. While on,
    /// every allocation takes the allocator's slow path. false if the profile's tables could
    /// not be mapped.
    @discardableResult
    public static func setHeapProfileRate(_ bytes: Int) -> Bool { setProfileRate(max(0, bytes)) }

    /// Every sample taken so far, one per call stack and object size, in the order the stacks
    /// were first seen.
    public static func heapProfile() -> [HeapProfileSample] {
        (0..<profileBucketCount()).map { b in
            let v = profileBucket(b)
            return HeapProfileSample(allocatedObjects: v.allocs, allocatedBytes: v.allocBytes,
                                     freedObjects: v.frees, freedBytes: v.freeBytes, objectSize: v.size,
                                     stack: (0..<v.depth).map { v.pc($0) })
        }
    }
}
