/* cuda/maxsim.cu: ColBERT's MaxSim scores of queries against packed
 * documents, and their backward.
 *
 * Forward: one block per (query, document) pair, one thread per query
 * vector; the query's vectors sit in shared memory, the document's rows
 * stream through it in tiles. Each thread walks the rows in order and keeps
 * the first maximum (strict >, as torch.max and the CPU); thread 0 adds the
 * maxima in order, in double. No workspace.
 * Backward: as the CPU, each query row is owned by one block (its
 * gradients add in document order) and each document's rows by one block
 * (queries, then query vectors, in order): no atomics, and the additions
 * of the CPU in the CPU's order. */
#include "common.cuh"
#include "kernels.cuh"

#define MAXSIM_EMPTY -9999.0f
#define DOC_TILE 32

size_t cb_cuda_maxsim_workspace(ops_device *d, int Lq, size_t doc_rows) { return 256; }

/* grid: nq * G blocks; block: Lq rounded up to a warp */
static __global__ void maxsim_fwd_kernel(float *scores, int32_t *argmax, const float *qv, const float *dv, const int *d_off,
                                  const uint8_t *d_keep, int group, int G, int Lq, int D) {
    extern __shared__ float sm[];
    float *Q = sm;                                   /* [Lq][D + 1] */
    float *Dt = Q + (size_t)Lq * (D + 1);            /* [DOC_TILE][D] */
    float *best_of = Dt + (size_t)DOC_TILE * D;      /* [Lq] */
    int q = blockIdx.x / G, k = blockIdx.x % G;
    int dd = (group > 0 ? q * group : 0) + k;
    int i = threadIdx.x;
    const float *qsrc = qv + (size_t)q * Lq * D;
    for (int e = threadIdx.x; e < Lq * D; e += blockDim.x) Q[(e / D) * (D + 1) + e % D] = qsrc[e];
    int j0 = d_off[dd], j1 = d_off[dd + 1];
    float best = MAXSIM_EMPTY;
    int32_t arg = -1;
    for (int t0 = j0; t0 < j1; t0 += DOC_TILE) {
        int nt = min(DOC_TILE, j1 - t0);
        __syncthreads();
        for (int e = threadIdx.x; e < nt * D; e += blockDim.x) Dt[e] = dv[(size_t)t0 * D + e];
        __syncthreads();
        if (i < Lq) {
            const float *qi = Q + (size_t)i * (D + 1);
            for (int r = 0; r < nt; r++) {
                int j = t0 + r;
                if (d_keep && !d_keep[j]) continue;
                const float *row = Dt + (size_t)r * D;
                float s = 0.0f;
                for (int c = 0; c < D; c++) s = fmaf(qi[c], row[c], s);
                if (arg < 0 || s > best) {
                    best = s;
                    arg = j;
                }
            }
        }
    }
    if (i < Lq) {
        argmax[((size_t)q * G + k) * Lq + i] = arg;
        best_of[i] = arg < 0 ? MAXSIM_EMPTY : best;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0;
        for (int x = 0; x < Lq; x++) total += best_of[x];
        scores[(size_t)q * G + k] = (float)total;
    }
}

void cb_cuda_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                         const int *d_off, const int *d_off_host, const uint8_t *d_keep, int group, int nq, int nd,
                         int Lq, int D, const ops_work *work) {
    cuda_state *s = cb_cuda_enter(d);
    int G = group > 0 ? group : nd;
    CB_ASSERT(group == 0 || nd >= nq * group);
    CB_ASSERT(Lq >= 1 && Lq <= 1024);
    if (nq <= 0 || G <= 0) return;
    size_t smem = ((size_t)Lq * (D + 2) + (size_t)DOC_TILE * D) * sizeof(float);
    if (smem > 48 * 1024) {
        if (smem > (size_t)s->prop.sharedMemPerBlockOptin) {
            cb_cuda_die("MaxSim of %d query vectors of dim %d needs %zu bytes of shared memory; this GPU has %zu",
                        Lq, D, smem, (size_t)s->prop.sharedMemPerBlockOptin);
        }
        CU_CHECK(cudaFuncSetAttribute(maxsim_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    int threads = ((Lq + 31) / 32) * 32;
    maxsim_fwd_kernel<<<(unsigned)((size_t)nq * G), threads, smem, s->stream>>>(scores, argmax, qv, dv, d_off, d_keep,
                                                                                 group, G, Lq, D);
    CU_LAUNCHED();
}

/* d_qv: one block per query vector (q, i); the documents in order */
static __global__ void maxsim_bwd_q_kernel(float *d_qv, const float *d_scores, const int32_t *argmax, const float *dv,
                                    int G, int Lq, int D) {
    int q = blockIdx.x / Lq, i = blockIdx.x % Lq;
    float *dq = d_qv + ((size_t)q * Lq + i) * D;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        float acc = dq[c];
        for (int k = 0; k < G; k++) {
            float g = d_scores[(size_t)q * G + k];
            int32_t a = argmax[((size_t)q * G + k) * Lq + i];
            if (g == 0.0f || a < 0) continue;
            acc = __fadd_rn(acc, __fmul_rn(g, dv[(size_t)a * D + c]));
        }
        dq[c] = acc;
    }
}

/* d_dv: one block per document (its rows are its own); its queries in
 * order, then their vectors in order */
static __global__ void maxsim_bwd_d_kernel(float *d_dv, const float *d_scores, const int32_t *argmax, const float *qv,
                                    int group, int nq, int G, int Lq, int D) {
    int dd = blockIdx.x;
    int q0 = group > 0 ? dd / group : 0, q1 = group > 0 ? q0 + 1 : nq;
    if (q1 > nq) q1 = nq;
    for (int q = q0; q < q1; q++) {
        int k = group > 0 ? dd - q * group : dd;
        float g = d_scores[(size_t)q * G + k];
        if (g == 0.0f) continue;
        const int32_t *am = argmax + ((size_t)q * G + k) * Lq;
        for (int i = 0; i < Lq; i++) {
            int32_t a = am[i];
            if (a < 0) continue;
            float *dx = d_dv + (size_t)a * D;
            const float *y = qv + ((size_t)q * Lq + i) * D;
            for (int c = threadIdx.x; c < D; c += blockDim.x) dx[c] = __fadd_rn(dx[c], __fmul_rn(g, y[c]));
        }
    }
}

/* forward: score(q, d) = sum_i <Q[q, i], dv[argmax_i]> */
void cb_cuda_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores, const int32_t *argmax,
                          const float *qv, const float *dv, int group, int nq, int nd, int Lq, int D) {
    cuda_state *s = cb_cuda_enter(d);
    int G = group > 0 ? group : nd;
    if (nq <= 0 || G <= 0) return;
    int threads = D < 128 ? ((D + 31) / 32) * 32 : 128;
    maxsim_bwd_q_kernel<<<(unsigned)((size_t)nq * Lq), threads, 0, s->stream>>>(d_qv, d_scores, argmax, dv, G, Lq, D);
    CU_LAUNCHED();
    if (nd > 0) {
        maxsim_bwd_d_kernel<<<nd, threads, 0, s->stream>>>(d_dv, d_scores, argmax, qv, group, nq, G, Lq, D);
        CU_LAUNCHED();
    }
}
