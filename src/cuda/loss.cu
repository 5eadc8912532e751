/* cuda/loss.cu: the losses. The score matrix is tiny ([B, B * nway] at
 * most, a few thousand floats), so it is copied to the host, the CPU
 * backend's formulas (cpu/loss.c: sums in double) run there unchanged, and
 * the gradient is uploaded back: the loss and its gradient are the CPU's
 * exactly, for one small synchronous copy per micro-batch. */
#include "common.cuh"
#include "kernels.cuh"

#include <string.h>

float cb_cuda_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
                const loss_config *c, int B) {
    cuda_state *s = cb_cuda_enter(d);
    size_t n = (size_t)B * cb_loss_score_cols(c, B), nt = teacher ? (size_t)B * c->nway : 0;
    size_t need = (2 * n + nt) * sizeof(float);
    if (need > s->h_bytes) {
        float *p = (float *)realloc(s->h_buf, need);
        if (!p) cb_cuda_die("out of memory: the loss needs %zu bytes of host memory", need);
        s->h_buf = p;
        s->h_bytes = need;
    }
    float *h_sc = s->h_buf, *h_d = h_sc + n, *h_t = teacher ? h_d + n : NULL;
    CU_CHECK(cudaMemcpyAsync(h_sc, scores, n * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    if (teacher) CU_CHECK(cudaMemcpyAsync(h_t, teacher, nt * sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    CU_CHECK(cudaStreamSynchronize(s->stream));
    float loss = cb_cpu_loss(cb_ops_cpu(), h_d, parts, h_sc, h_t, c, B);
    CU_CHECK(cudaMemcpyAsync(d_scores, h_d, n * sizeof(float), cudaMemcpyHostToDevice, s->stream));
    /* h_d is pageable: the copy has staged it when the call returns, but
     * wait anyway so that the next loss may overwrite it */
    CU_CHECK(cudaStreamSynchronize(s->stream));
    return loss;
}
