/* test_libcolbert.c: the public header compiles on its own and its
 * documented calls work together: load a model as a new ColBERT, encode
 * queries and documents, and get clear errors for bad arguments. */
#include "libcolbert.h"
#include "test.h"

int main(int argc, char **argv) {
    cb_blas_init(argc, argv);
    const char *model = test_env("COLBERT_MODEL");
    cb_err err = {{0}};
    colmodel m;
    CHECK(cb_colmodel_load(&m, cb_ops_cpu(), model, 64, 7, &err) == 0);
    m.quiet = 1;
    const char *q[2] = {"what is vitamin d?", "statins"};
    size_t ql[2] = {strlen(q[0]), strlen(q[1])};
    float *out = malloc(2 * 32 * 64 * sizeof(float));
    CHECK(cb_colmodel_encode_queries(&m, q, ql, 2, out, &err) == 0);
    double n0 = 0;
    for (int i = 0; i < 64; i++) n0 += (double)out[i] * out[i];
    CHECK_MSG(fabs(n0 - 1.0) < 1e-5, "query vector norm^2 %g", n0);
    int *L;
    float *vec;
    CHECK(cb_colmodel_encode_docs(&m, q, ql, 2, &L, &vec, &err) == 0);
    CHECK(L[0] > 3 && L[1] >= 3);  /* [CLS] [D] ... [SEP], "?" dropped */
    free(L);
    free(vec);
    free(out);
    cb_colmodel_free(&m);

    CHECK(cb_colmodel_load(&m, cb_ops_cpu(), "/nonexistent/model", 0, 0, &err) != 0);
    CHECK_MSG(strstr(err.msg, "/nonexistent/model") != NULL, "error does not name the model: %s", err.msg);
    return test_finish("test_libcolbert");
}
