/* optim.c: AdamW's defaults and the warmup/decay schedule; see optim.h. */
#include "optim.h"
#include "common.h"

#include <math.h>

adamw_config cb_adamw_default(double lr) {
    adamw_config c = {.lr = lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    return c;
}

double cb_optim_lr(double base_lr, long step, long warmup, long maxsteps) {
    double f;
    if (step < warmup) f = (double)step / (double)(warmup > 1 ? warmup : 1);
    else {
        long span = maxsteps - warmup > 1 ? maxsteps - warmup : 1;
        f = (double)(maxsteps - step) / (double)span;
        if (f < 0) f = 0;
    }
    return base_lr * f;
}
