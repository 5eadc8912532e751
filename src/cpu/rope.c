/* cpu/rope.c: rotary position embeddings (NeoX style: the head's first
 * half rotates with its second half) on the query and key parts of the
 * fused qkv rows, and their backward (the inverse rotation). */
#include "cpu.h"

#include <math.h>

/* The rotation angle of position pos, frequency i of D/2, with transformers'
 * float32 arithmetic: inv_freq = 1 / theta^(2i / D), angle = pos * inv_freq. */
static float rope_angle(int pos, int i, int D, float theta) {
    float inv = 1.0f / powf(theta, (float)(2 * i) / (float)D);
    return (float)pos * inv;
}

/* sign +1: forward, x' = R(a) x; sign -1: backward, dx = R(a)^T dx' = R(-a) dx'.
 * x: [T, 3H] rows; the query (columns 0 .. H-1) and key (H .. 2H-1) parts. */
static void rope_apply(float *x, const ops_seqs *s, int H, int NH, float theta, float sign) {
    int D = H / NH, half = D / 2;
    CB_ASSERT(D % 2 == 0);
#pragma omp parallel for schedule(dynamic, 1)
    for (int q = 0; q < s->n_seq; q++) {
        for (int t = s->off[q]; t < s->off[q + 1]; t++) {
            float *row = x + (size_t)t * 3 * H;
            int pos = t - s->off[q];
            for (int i = 0; i < half; i++) {
                float a = rope_angle(pos, i, D, theta);
                float c = cosf(a), sn = sign * sinf(a);
                for (int part = 0; part < 2; part++)
                    for (int h = 0; h < NH; h++) {
                        float *v = row + (size_t)part * H + (size_t)h * D;
                        float x1 = v[i], x2 = v[i + half];
                        v[i] = x1 * c - x2 * sn;
                        v[i + half] = x2 * c + x1 * sn;
                    }
            }
        }
    }
}

/* qkv: [T, 3H], in place */
void cb_cpu_rope_forward(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta) {
    (void)d;
    rope_apply(qkv, s, H, NH, theta, 1.0f);
}

/* forward: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s); so
 * dx1 = dy1 c + dy2 s, dx2 = dy2 c - dy1 s: the same rotation by -a.
 * d_qkv: [T, 3H], in place */
void cb_cpu_rope_backward(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH, float theta) {
    (void)d;
    rope_apply(d_qkv, s, H, NH, theta, -1.0f);
}
