/* cuda/matmul.cu: linear layers through cuBLASLt.
 *
 * Precision (ops_device.precision):
 *   OPS_FP32  fp32 inputs and outputs, CUBLAS_COMPUTE_32F_PEDANTIC: no TF32,
 *             no tensor-op shortcuts (the parity mode);
 *   OPS_BF16  inputs rounded to bf16 (round to nearest even) into the
 *             scratch arena, fp32 accumulation and fp32 outputs, as
 *             torch.autocast(bfloat16) runs a linear layer.
 * The bias is written into the output first and the product added with
 * beta = 1 (the CPU's order of operations); db is a deterministic column
 * sum (common.cuh). A bf16 product cuBLASLt has no algorithm for (odd
 * leading dimensions) runs in fp32 instead: counted (cb_cuda_matmul_stats)
 * and said once on stderr, so that a test can tell.
 *
 * cuBLASLt is loaded with dlopen at the first device open, so the binary
 * needs no CUDA library to start (the CPU path runs anywhere). It is looked
 * for as $COLBERT_CUBLASLT, then libcublasLt.so.<major> on the loader's
 * path, then in the CUDA toolkit the build used (CB_CUDA_LIBDIR) and
 * /usr/local/cuda/lib64.
 *
 * Row-major to cuBLASLt's column-major: a row-major [r, c] matrix is the
 * column-major [c, r] one, so out[T, OC] = inp[T, C] w[OC, C]^T is
 * out' (OC x T) = w'^T (OC x C) inp' (C x T), the "TN" product.
 */
#include "common.cuh"
#include "kernels.cuh"

#include <cublasLt.h>
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#define STR2(x) #x
#define STR(x) STR2(x)
#define LT_SONAME "libcublasLt.so." STR(CUBLAS_VER_MAJOR)

/* ---- loading cuBLASLt ------------------------------------------------------ */

static struct {
    void *so;
    char path[512];
    char err[1024];
    decltype(&cublasLtCreate) create;
    decltype(&cublasLtDestroy) destroy;
    decltype(&cublasLtGetVersion) version;
    decltype(&cublasLtMatmulDescCreate) desc_create;
    decltype(&cublasLtMatmulDescDestroy) desc_destroy;
    decltype(&cublasLtMatmulDescSetAttribute) desc_set;
    decltype(&cublasLtMatrixLayoutCreate) layout_create;
    decltype(&cublasLtMatrixLayoutDestroy) layout_destroy;
    decltype(&cublasLtMatmulPreferenceCreate) pref_create;
    decltype(&cublasLtMatmulPreferenceDestroy) pref_destroy;
    decltype(&cublasLtMatmulPreferenceSetAttribute) pref_set;
    decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic;
    decltype(&cublasLtMatmul) matmul;
} LT;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;

#ifndef CB_CUDA_LIBDIR
#define CB_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

static void lt_load(void) {
    const char *env = getenv("COLBERT_CUBLASLT");
    const char *tries[4] = {env && *env ? env : NULL, LT_SONAME, CB_CUDA_LIBDIR "/" LT_SONAME,
                            "/usr/local/cuda/lib64/" LT_SONAME};
    char first[300] = "";
    for (int i = 0; i < 4 && !LT.so; i++) {
        if (!tries[i]) continue;
        LT.so = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
        if (!LT.so && !first[0]) snprintf(first, sizeof first, "%s", dlerror());
        if (LT.so) snprintf(LT.path, sizeof LT.path, "%s", tries[i]);
    }
    if (!LT.so) {
        snprintf(LT.err, sizeof LT.err,
                 "cuBLASLt not found (%s); install the CUDA %d toolkit or set COLBERT_CUBLASLT to the path of "
                 "%s",
                 first, CUBLAS_VER_MAJOR, LT_SONAME);
        return;
    }
    int ok = 1;
#define SYM(field, name)                                                       \
    do {                                                                       \
        *(void **)&LT.field = dlsym(LT.so, #name);                             \
        if (!LT.field) ok = 0;                                                 \
    } while (0)
    SYM(create, cublasLtCreate);
    SYM(destroy, cublasLtDestroy);
    SYM(version, cublasLtGetVersion);
    SYM(desc_create, cublasLtMatmulDescCreate);
    SYM(desc_destroy, cublasLtMatmulDescDestroy);
    SYM(desc_set, cublasLtMatmulDescSetAttribute);
    SYM(layout_create, cublasLtMatrixLayoutCreate);
    SYM(layout_destroy, cublasLtMatrixLayoutDestroy);
    SYM(pref_create, cublasLtMatmulPreferenceCreate);
    SYM(pref_destroy, cublasLtMatmulPreferenceDestroy);
    SYM(pref_set, cublasLtMatmulPreferenceSetAttribute);
    SYM(heuristic, cublasLtMatmulAlgoGetHeuristic);
    SYM(matmul, cublasLtMatmul);
#undef SYM
    if (!ok) {
        snprintf(LT.err, sizeof LT.err, "%s lacks cuBLASLt functions this build needs", LT.path);
        dlclose(LT.so);
        LT.so = NULL;
    }
}

int cb_cuda_lt_describe(char *buf, size_t bytes) {
    pthread_once(&lt_once, lt_load);
    if (!LT.so) {
        snprintf(buf, bytes, "%s", LT.err);
        return -1;
    }
    size_t v = LT.version();
    char real[512];
    Dl_info info;
    const char *where = LT.path;
    if (dladdr((void *)LT.matmul, &info) && info.dli_fname) {
        snprintf(real, sizeof real, "%s", info.dli_fname);
        where = real;
    }
    snprintf(buf, bytes, "cuBLASLt %zu.%zu.%zu (%s)", v / 10000, v / 100 % 100, v % 100, where);
    return 0;
}

/* ---- the algorithm cache ---------------------------------------------------- */

/* One product's shape, types and pointer alignments: the heuristic's
 * answer for it is kept (round-robin over CACHE_N entries). */
struct mm_key {
    int bf16, ta, tb, m, n, k, lda, ldb, ldc, beta1;
    int align_a, align_b, align_c;
};
struct mm_entry {
    mm_key key;
    int valid;                  /* 1: algo found; -1: none exists; 0: empty slot */
    cublasComputeType_t compute;
    cublasLtMatmulAlgo_t algo;
};
#define CACHE_N 256
struct mm_cache {
    mm_entry e[CACHE_N];
    int next;
};

#define LT_WORKSPACE ((size_t)32 << 20)

int cb_cuda_matmul_init(cuda_state *s, cb_err *err) {
    pthread_once(&lt_once, lt_load);
    if (!LT.so) return cb_err_set(err, "cuda: no usable GPU (%s)", LT.err);
    cublasLtHandle_t h;
    cublasStatus_t st = LT.create(&h);
    if (st != CUBLAS_STATUS_SUCCESS) return cb_err_set(err, "cuda:%d: cublasLtCreate failed (status %d)", s->index, (int)st);
    s->lt = h;
    cudaError_t e = cudaMalloc(&s->lt_ws, LT_WORKSPACE);
    if (e != cudaSuccess) {
        LT.destroy(h);
        s->lt = NULL;
        return cb_err_set(err, "cuda:%d: out of GPU memory for cuBLASLt's workspace: %s", s->index, cudaGetErrorString(e));
    }
    s->lt_ws_bytes = LT_WORKSPACE;
    s->mm_cache = calloc(1, sizeof(mm_cache));
    if (!s->mm_cache) {
        cb_cuda_matmul_free(s);
        return cb_err_set(err, "out of memory: the matmul cache");
    }
    return 0;
}

void cb_cuda_matmul_free(cuda_state *s) {
    if (s->lt) LT.destroy((cublasLtHandle_t)s->lt);
    if (s->lt_ws) cudaFree(s->lt_ws);
    free(s->mm_cache);
    s->lt = NULL;
    s->lt_ws = NULL;
    s->mm_cache = NULL;
}

static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && (a % (uintptr_t)al)) al >>= 1;
    return al;
}

#define LT_CHECK(call)                                                         \
    do {                                                                       \
        cublasStatus_t st_ = (call);                                           \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                    \
            char m_[64];                                                       \
            snprintf(m_, sizeof m_, "cuBLASLt status %d", (int)st_);           \
            cb_cuda_fatal(__FILE__, __LINE__, #call, m_);                         \
        }                                                                      \
    } while (0)

struct mm_descs {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
};

static void descs_free(mm_descs *x) {
    if (x->a) LT.layout_destroy(x->a);
    if (x->b) LT.layout_destroy(x->b);
    if (x->c) LT.layout_destroy(x->c);
    if (x->op) LT.desc_destroy(x->op);
    memset(x, 0, sizeof *x);
}

/* The descriptors of a product; on failure (a compute type this cuBLASLt
 * does not take, say) nothing is left allocated and the status returned. */
static cublasStatus_t descs_make(mm_descs *x, const mm_key *k, cublasComputeType_t compute) {
    memset(x, 0, sizeof *x);
    cudaDataType_t in = k->bf16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t ta = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st = LT.desc_create(&x->op, compute, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS) st = LT.desc_set(x->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS) st = LT.desc_set(x->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    /* stored shapes: op(A) is m x k, op(B) is k x n */
    if (st == CUBLAS_STATUS_SUCCESS)
        st = LT.layout_create(&x->a, in, k->ta ? k->k : k->m, k->ta ? k->m : k->k, k->lda);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = LT.layout_create(&x->b, in, k->tb ? k->n : k->k, k->tb ? k->k : k->n, k->ldb);
    if (st == CUBLAS_STATUS_SUCCESS) st = LT.layout_create(&x->c, CUDA_R_32F, k->m, k->n, k->ldc);
    if (st != CUBLAS_STATUS_SUCCESS) descs_free(x);
    return st;
}

/* The heuristic's best algorithm for key, or 0 when it has none. */
static int find_algo(cuda_state *s, const mm_key *k, cublasComputeType_t compute, cublasLtMatmulAlgo_t *algo) {
    mm_descs x;
    if (descs_make(&x, k, compute) != CUBLAS_STATUS_SUCCESS) return 0;   /* then the next compute type */
    cublasLtMatmulPreference_t pref;
    LT_CHECK(LT.pref_create(&pref));
    uint64_t ws = s->lt_ws_bytes;
    uint32_t al[3] = {(uint32_t)k->align_a, (uint32_t)k->align_b, (uint32_t)k->align_c};
    LT_CHECK(LT.pref_set(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT_CHECK(LT.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]));
    LT_CHECK(LT.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]));
    LT_CHECK(LT.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]));
    LT_CHECK(LT.pref_set(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof al[2]));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = LT.heuristic((cublasLtHandle_t)s->lt, x.op, x.a, x.b, x.c, x.c, pref, 1, &res, &found);
    LT.pref_destroy(pref);
    descs_free(&x);
    if (st != CUBLAS_STATUS_SUCCESS || found < 1 || res.state != CUBLAS_STATUS_SUCCESS) return 0;
    *algo = res.algo;
    return 1;
}

/* C (m x n, ld ldc, fp32) = op(A) op(B) + beta C, column-major; A and B fp32
 * or bf16. Returns -1 when cuBLASLt has no algorithm for it (bf16 with odd
 * leading dimensions may have none: the caller then runs it in fp32). */
static int gemm(cuda_state *s, int bf16, int ta, int tb, int m, int n, int kk, const void *A, int lda, const void *B,
                 int ldb, float beta, float *C, int ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (kk <= 0) {
        /* no terms: C = beta C (beta is 0 or 1 here) */
        CB_ASSERT(beta == 0.0f || beta == 1.0f);
        if (beta == 0.0f)
            CU_CHECK(cudaMemset2DAsync(C, (size_t)ldc * sizeof(float), 0, (size_t)m * sizeof(float), (size_t)n,
                                       s->stream));
        return 0;
    }
    mm_key key;
    memset(&key, 0, sizeof key);
    key.bf16 = bf16;
    key.ta = ta;
    key.tb = tb;
    key.m = m;
    key.n = n;
    key.k = kk;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.beta1 = beta != 0.0f;
    key.align_a = align_of(A);
    key.align_b = align_of(B);
    key.align_c = align_of(C);
    mm_cache *cache = (mm_cache *)s->mm_cache;
    mm_entry *e = NULL;
    for (int i = 0; i < CACHE_N; i++)
        if (cache->e[i].valid != 0 && !memcmp(&cache->e[i].key, &key, sizeof key)) {
            e = &cache->e[i];
            break;
        }
    if (!e) {
        e = &cache->e[cache->next];
        cache->next = (cache->next + 1) % CACHE_N;
        e->key = key;
        e->valid = 0;
        /* fp32: pedantic (no TF32, no reduced-precision shortcuts); the plain
         * fp32 compute type (also without TF32) if pedantic has no kernel */
        cublasComputeType_t tries[2] = {bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_COMPUTE_32F};
        for (int t = 0; t < 2 && !e->valid; t++)
            if (find_algo(s, &key, tries[t], &e->algo)) {
                e->compute = tries[t];
                e->valid = 1;
            }
        if (!e->valid) e->valid = -1;    /* remembered: no algorithm */
    }
    if (bf16) s->mm_bf16++;
    if (e->valid < 0) {
        if (bf16) {
            s->mm_fallback++;
            if (!s->mm_fallback_said) {
                s->mm_fallback_said = 1;
                fprintf(stderr, "colbert: cuda:%d: note: cuBLASLt has no bf16 algorithm for a product (%c%c m %d n %d "
                        "k %d, leading dimensions %d %d %d); such products run in fp32\n", s->index, ta ? 'T' : 'N',
                        tb ? 'T' : 'N', m, n, kk, lda, ldb, ldc);
            }
            return -1;
        }
        char msg[256];
        snprintf(msg, sizeof msg, "no cuBLASLt algorithm for fp32 %c%c m %d n %d k %d", ta ? 'T' : 'N', tb ? 'T' : 'N',
                 m, n, kk);
        cb_cuda_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", msg);
    }
    mm_descs x;
    LT_CHECK(descs_make(&x, &key, e->compute));
    float alpha = 1.0f;
    LT_CHECK(LT.matmul((cublasLtHandle_t)s->lt, x.op, &alpha, A, x.a, B, x.b, &beta, C, x.c, C, x.c, &e->algo,
                       s->lt_ws, s->lt_ws_bytes, s->stream));
    CU_LAUNCHED();
    descs_free(&x);
    return 0;
}

void cb_cuda_matmul_stats(const ops_device *d, long *bf16_products, long *fp32_fallbacks) {
    const cuda_state *s = (const cuda_state *)d->impl;
    if (bf16_products) *bf16_products = s ? s->mm_bf16 : 0;
    if (fp32_fallbacks) *fp32_fallbacks = s ? s->mm_fallback : 0;
}

/* ---- kernels --------------------------------------------------------------- */

static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void cb_cuda_to_bf16(cuda_state *s, __nv_bfloat16 *dst, const float *src, size_t n) {
    if (!n) return;
    to_bf16_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(dst, src, n);
    CU_LAUNCHED();
}

/* out[t, :] = b */
static __global__ void bias_rows_kernel(float *out, const float *b, int T, int OC) {
    size_t n = (size_t)T * OC;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = b[i % (size_t)OC];
}

struct col_of {
    const float *x;
    int ld;
    __device__ void operator()(int r, int c, float *v) const { v[0] = x[(size_t)r * ld + c]; }
};

/* ---- the ops ----------------------------------------------------------------- */

/* out: [T, OC]; inp: [T, C]; w: [OC, C]; b: [OC] or NULL */
void cb_cuda_linear_forward(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T, int C,
                         int OC) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0 || OC <= 0) return;
    if (b) {
        bias_rows_kernel<<<grid_for((size_t)T * OC, 256), 256, 0, s->stream>>>(out, b, T, OC);
        CU_LAUNCHED();
    }
    float beta = b ? 1.0f : 0.0f;
    if (d->precision == OPS_BF16) {
        char *cur = (char *)cb_cuda_scratch(s, scratch_round((size_t)T * C * 2) + scratch_round((size_t)OC * C * 2));
        __nv_bfloat16 *ib = (__nv_bfloat16 *)scratch_take(&cur, (size_t)T * C * 2);
        __nv_bfloat16 *wb = (__nv_bfloat16 *)scratch_take(&cur, (size_t)OC * C * 2);
        cb_cuda_to_bf16(s, ib, inp, (size_t)T * C);
        cb_cuda_to_bf16(s, wb, w, (size_t)OC * C);
        if (!gemm(s, 1, 1, 0, OC, T, C, wb, C, ib, C, beta, out, OC)) return;
    }
    gemm(s, 0, 1, 0, OC, T, C, w, C, inp, C, beta, out, OC);
}

/* forward: out[T, OC] = inp[T, C] @ w[OC, C]^T + b.
 * dinp' (C x T) = w' (C x OC) dout' (OC x T)        [NN]
 * dw'   (C x OC) += inp' (C x T) dout'^T (T x OC)   [NT] */
void cb_cuda_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, int T, int C, int OC, int acc) {
    cuda_state *s = cb_cuda_enter(d);
    size_t conv = d->precision == OPS_BF16
                      ? scratch_round((size_t)T * OC * 2) + scratch_round((size_t)OC * C * 2) +
                            scratch_round((size_t)T * C * 2)
                      : 0;
    size_t part = db ? colsum_scratch(T, OC, 1) : 0;
    char *cur = (char *)cb_cuda_scratch(s, conv + part);
    float *partial = db ? (float *)scratch_take(&cur, part) : NULL;
    if (d->precision == OPS_BF16) {
        __nv_bfloat16 *ob = (__nv_bfloat16 *)scratch_take(&cur, (size_t)T * OC * 2);
        __nv_bfloat16 *wb = (__nv_bfloat16 *)scratch_take(&cur, (size_t)OC * C * 2);
        __nv_bfloat16 *ib = (__nv_bfloat16 *)scratch_take(&cur, (size_t)T * C * 2);
        cb_cuda_to_bf16(s, ob, dout, (size_t)T * OC);
        cb_cuda_to_bf16(s, wb, w, (size_t)OC * C);
        cb_cuda_to_bf16(s, ib, inp, (size_t)T * C);
        if (gemm(s, 1, 0, 0, C, T, OC, wb, C, ob, OC, acc ? 1.0f : 0.0f, dinp, C))
            gemm(s, 0, 0, 0, C, T, OC, w, C, dout, OC, acc ? 1.0f : 0.0f, dinp, C);
        if (gemm(s, 1, 0, 1, C, OC, T, ib, C, ob, OC, 1.0f, dw, C))
            gemm(s, 0, 0, 1, C, OC, T, inp, C, dout, OC, 1.0f, dw, C);
    } else {
        gemm(s, 0, 0, 0, C, T, OC, w, C, dout, OC, acc ? 1.0f : 0.0f, dinp, C);
        gemm(s, 0, 0, 1, C, OC, T, inp, C, dout, OC, 1.0f, dw, C);
    }
    if (db) {
        colsum_out<1> o = {{db}};
        colsum<1>(s, o, col_of{dout, OC}, T, OC, partial);
    }
}
