/* optim.h: the optimiser of colbert-ai's training loop, on one flat array
 * of parameters (llm.c style: params, grads, m and v each one allocation
 * of n floats, the same layout).
 *
 *   clip (cb_ops_clip_grad_norm) torch.nn.utils.clip_grad_norm_(max_norm=2.0):
 *                          total = ||g||_2 over everything,
 *                          g *= min(1, max_norm / (total + 1e-6))
 *   cb_optim_lr               transformers' get_linear_schedule_with_warmup
 *                          under LambdaLR: step s (0-based, the number of
 *                          optimizer steps already taken) uses
 *                          lr * s / warmup while s < warmup, then
 *                          lr * max(0, (maxsteps - s) / (maxsteps - warmup))
 *   adamw (cb_ops_adamw)      torch.optim.AdamW (single-tensor path): p *= 1 -
 *                          lr*wd; m = lerp(m, g, 1-b1); v = b2 v + (1-b2) g^2;
 *                          p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * This header holds the configuration and the schedule; clipping and the
 * update run on a device (ops.h).
 */
#ifndef CB_OPTIM_H
#define CB_OPTIM_H
#include <stddef.h>

typedef struct adamw_config {
    double lr;                  /* the scheduled rate of this step */
    double beta1, beta2;        /* 0.9, 0.999 */
    double eps;                 /* 1e-8 */
    double weight_decay;        /* 0.01 */
} adamw_config;

/* torch's defaults with weight decay 0.01 and learning rate lr. */
adamw_config cb_adamw_default(double lr);

/* Learning rate of 0-based step `step` (see above). */
double cb_optim_lr(double base_lr, long step, long warmup, long maxsteps);

#endif
