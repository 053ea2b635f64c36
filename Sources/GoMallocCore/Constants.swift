// Constants.swift — the numbers the whole allocator is built from.
//
// Role: one place for every size, shift and count; each says how it relates to the others.
// Go counterpart: malloc.go (constants), sizeclasses.go (_MaxSmallSize, _NumSizeClasses),
//   mpagealloc.go / mpagealloc_64bit.go (chunk and summary constants).
// Invariants:
//   I1. pageSize == 1 << pageShift; heapArenaBytes == pagesPerArena * pageSize.
//   I2. pallocChunkPages == 512 == 8 words of 64 bits; an arena holds 16 whole chunks.
//   I3. summary level l covers 2^(pallocChunkPages log2 + 3 * (levels-1-l)) pages per entry.
// Concurrency: immutable.
// Failure: none.

/// Go's `_PageShift`: the allocator's page is 8 KiB, whatever the OS page is.
let pageShift = 13
let pageSize = 1 << pageShift
let pageMask = pageSize - 1

/// Objects up to `maxSmallSize` come from size classes; larger ones are large spans.
let maxSmallSize = 32768
/// 67 size classes + class 0 (large objects).
let numSizeClasses = 68
/// `spanClass = sizeclass << 1 | noscan`.
let numSpanClasses = numSizeClasses << 1
/// The mcentrals: one per span class, then one for the tiny allocator's spans (Tiny.swift).
let numCentrals = numSpanClasses + 1
/// The size class of tiny blocks (16 bytes).
let tinySizeClass = 2
/// The size-to-class lookup steps by 8 bytes (SizeClasses.swift, fastClassTableEntries);
/// classes above 1 KiB are multiples of 128 bytes (Go's _LargeSizeDiv, for the generator).
let smallSizeDiv = 8
let largeSizeDiv = 128

/// The OS page size valloc and pvalloc align to, and the unit in which untouched metadata
/// becomes resident (Go's physPageSize on Linux x86-64; AArch64 kernels with 16 or 64 KiB
/// pages only make those figures conservative).
let physPageSize = 4096

/// User addresses we manage fit in 48 bits (x86-64 and AArch64 with 4-level tables).
let heapAddrBits = 48
/// Go's `heapArenaBytes`: the unit in which address space is reserved from the OS.
let logHeapArenaBytes = 26
let heapArenaBytes = 1 << logHeapArenaBytes                     // 64 MiB
let pagesPerArena = heapArenaBytes / pageSize                   // 8192
/// The arena map is one flat table indexed by addr >> 26, as Go's on amd64 (arenaL1Bits 0).
let arenaBits = heapAddrBits - logHeapArenaBytes                // 22
let arenaMapEntries = 1 << arenaBits                            // 4 Mi entries, 32 MiB virtual

/// Page allocator: a chunk is 512 pages (4 MiB), one 512-bit bitmap.
let logPallocChunkPages = 9
let pallocChunkPages = 1 << logPallocChunkPages                 // 512
let pallocChunkBytes = pallocChunkPages * pageSize              // 4 MiB
let logPallocChunkBytes = logPallocChunkPages + pageShift       // 22
let pallocChunkWords = pallocChunkPages / 64                    // 8

/// Radix tree of summaries: 5 levels; level 0 has 2^14 entries, each next level 8x more.
let summaryLevels = 5
let summaryLevelBits = 3
let summaryL0Bits = heapAddrBits - logPallocChunkBytes - (summaryLevels - 1) * summaryLevelBits  // 14

/// The P count never exceeds this (GOMALLOC_MAXPROCS is clamped to it).
let maxProcs = 256

/// fixalloc carves metadata out of chunks this big (Go's _FixAllocChunk).
let fixAllocChunk = 16 << 10

/// Cache line (x86-64 and most AArch64): mcentrals and Ps are padded to it.
let cacheLineSize = 64
