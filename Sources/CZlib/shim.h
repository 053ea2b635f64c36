// The system zlib, for the CLI's gzip output (heap.pb.gz). Debian: zlib1g-dev.
#include <zlib.h>
