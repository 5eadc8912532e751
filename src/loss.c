/* loss.c: the shape of the loss's scores; see loss.h (the loss itself:
 * cb_ops_loss, src/cpu/loss.c). */
#include "loss.h"

int cb_loss_score_cols(const loss_config *c, int B) {
    return c->use_ib_negatives || c->contrastive ? B * c->nway : c->nway;
}
