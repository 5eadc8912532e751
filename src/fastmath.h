/* fastmath.h: exp and erf for float that the compiler can vectorise.
 *
 * libm's expf and erff are scalar calls; in the encoder they took 20% of
 * the time (softmax and GELU). These inline versions are branch-free so a
 * loop over them becomes SIMD code.
 *   cb_fast_expf: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and a
 *              degree-6 minimax polynomial for e^r (the classic Cephes
 *              coefficients); relative error about 2e-7 over [-87, 88];
 *              NaN in, NaN out.
 *   cb_fast_erff: Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7.
 * Both are far below the 1e-4 tolerance of the parity tests, which use them.
 */
#ifndef CB_FASTMATH_H
#define CB_FASTMATH_H
#include <stdint.h>
#include <string.h>

static inline float cb_fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* 2^n from the exponent bits; a NaN x (weights or activations gone
     * bad) must give NaN, not undefined behaviour: n is 0 for the
     * conversion then (p is NaN anyway), so the exponent stays in 1..254 */
    float nc = n == n ? n : 0.0f;
    int32_t bits = (int32_t)((uint32_t)((int32_t)nc + 127) << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float cb_fast_erff(float x) {
    float s = x < 0 ? -1.0f : 1.0f;
    float a = x * s;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
              t * (-1.453152027f + t * 1.061405429f))));
    return s * (1.0f - y * cb_fast_expf(-a * a));
}
#endif
