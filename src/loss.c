/* loss.c: the shape of the loss's scores; see loss.h (the loss itself:
 * cb_ops_loss, src/cpu/loss.c). */
#include "loss.h"

int cb_loss_score_cols(const loss_config *c, int B) {
    if (!c->use_ib_negatives && !c->contrastive) return c->nway;
    return (c->ib_global && c->q_global > 0 ? c->q_global : B) * c->nway;
}

int cb_loss_own_col(const loss_config *c, int B, int b) {
    if (!c->use_ib_negatives && !c->contrastive) return 0;
    return (c->ib_global && c->q_global > 0 ? c->q_first + b : b) * c->nway;
}
