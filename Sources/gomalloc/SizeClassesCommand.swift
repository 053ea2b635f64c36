// `gomalloc sizeclasses`: the generated size-class table, in the columns of Go's sizeclasses.go.
import ArgumentParser
import Foundation
import GoMalloc

struct SizeClassesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sizeclasses",
        abstract: "Print the 67 size classes, generated as Go's mksizeclasses does.",
        discussion: "Columns: class, bytes per object, bytes per span, objects per span, tail waste, worst-case waste, minimum alignment. The span class of an allocation is sizeclass<<1 | noscan (136 span classes).")

    func run() throws {
        print(SizeClassesCommand.header)
        for row in GoAllocator.sizeClasses {
            print(SizeClassesCommand.format(row))
        }
    }

    static let header = "class  bytes/obj  bytes/span  objects  tail waste  max waste  min align"

    static func format(_ r: SizeClass) -> String {
        String(format: "%5d  %9d  %10d  %7d  %10d  %8.2f%%  %9d",
               r.sizeClass, r.bytesPerObject, r.bytesPerSpan, r.objects, r.tailWaste, 100 * r.maxWaste, r.minAlign)
    }
}
