/* fuzz_metadata.c: a ColBERT checkpoint's artifact.metadata
 * (cb_colbert_metadata_parse of colmodel.h) from memory: settings that
 * parse must be in range, as the encoders size their buffers from them. */
#include "fuzz.h"
#include "colmodel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);   /* exactly size bytes: no terminator to lean on */
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    colbert_config c;
    cb_colbert_config_default(&c);
    int dim;
    cb_err err;
    if (cb_colbert_metadata_parse(&c, &dim, text, size, "artifact.metadata", &err) == 0) {
        if (c.dim < 1 || c.query_maxlen < 4 || c.doc_maxlen < 3 || (dim && dim != c.dim)) abort();
    }
    free(text);
    return 0;
}
