/* fuzz_npy.c: the .npy reader (npy.c) that `colbert prepare
 * --load-embeddings` uses on docs.npy and queries.npy: any bytes as a file,
 * read with the shape unchecked and with a fixed one. */
#include "fuzz.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *NAMES[] = {"x.npy"};
static void cleanup(void) { fuzz_cleanup_dir(fuzz_dir("npy"), NAMES, 1); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        atexit(cleanup);
    }
    const char *dir = fuzz_dir("npy");
    fuzz_write(dir, "x.npy", data, size);
    char path[512];
    fuzz_path(path, sizeof path, dir, "x.npy");
    cb_err err;
    free(cb_npy_read_f32(path, -1, -1, &err));
    free(cb_npy_read_f32(path, 3, 4, &err));
    return 0;
}
