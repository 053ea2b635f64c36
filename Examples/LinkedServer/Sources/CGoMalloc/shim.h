// The C API the example uses: GoMalloc's own functions and glibc's malloc introspection.
#include <gomalloc.h>
#include <malloc.h>
