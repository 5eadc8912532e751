/* cpu/optim.c: gradient clipping and AdamW over the one flat parameter
 * block, with torch's arithmetic (fp32 tensors, double scalars); optim.h
 * has the formulas. */
#include "cpu.h"

#include <math.h>

float cb_cpu_clip_grad_norm(ops_device *d, float *grads, size_t n, float max_norm) {
    (void)d;
    double ss = 0;
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (size_t i = 0; i < n; i++) ss += (double)grads[i] * grads[i];
    float total = (float)sqrt(ss);
    float coef = (float)max_norm / (total + 1e-6f);
    if (coef < 1.0f) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) grads[i] *= coef;
    }
    return total;
}

void cb_cpu_adamw(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
               const adamw_config *c, long t) {
    (void)d;
    CB_ASSERT(t >= 1);
    /* the scalars torch computes in Python floats, then applies as fp32 */
    float decay = (float)(1.0 - c->lr * c->weight_decay);
    float w1 = (float)(1.0 - c->beta1);
    float b2 = (float)c->beta2, w2 = (float)(1.0 - c->beta2);
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step_size = (float)(c->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float eps = (float)c->eps;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        float p = params[i] * decay;
        float mi = m[i] + w1 * (g - m[i]);      /* lerp, weight < 0.5 */
        float vi = v[i] * b2 + w2 * g * g;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        params[i] = p + (-step_size * mi) / denom;     /* addcdiv */
        m[i] = mi;
        v[i] = vi;
    }
}
