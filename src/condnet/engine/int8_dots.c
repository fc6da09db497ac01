/* The engine's int8 product at batch 1: acc[c] += x . w[c] for every row c of a tile (rows x n int8
 * weights, row-major), x the layer's input quantized to int16 (layout.py and kernels.py say how).
 *
 * Why C: numba's LLVM widens int8 products to 32 bits and multiplies them one lane per 32 bits (no
 * faster than float32); GCC vectorizes this loop into vpmovsxbw + vpmaddwd (16 multiply-adds of 16-bit
 * integers into 32-bit sums per instruction on AVX2, 32 with AVX-512 BW), reading a quarter of
 * float32's bytes. The sums are exact integers: the engine bounds x so that no sum of a row can
 * overflow 32 bits. target_clones builds an AVX-512, an AVX2 and a baseline version, as microkernel.c.
 */
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PER_CPU __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PER_CPU
#endif

PER_CPU void condnet_int8_dots(const int16_t *x, const int8_t *w, int64_t n, int64_t rows, int32_t *acc) {
    int64_t c = 0;
    for (; c + 4 <= rows; c += 4) { /* four rows per pass over x: one load of x feeds four products */
        const int8_t *r0 = w + c * n, *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t a = 0; a < n; a++) {
            int32_t v = x[a];
            s0 += v * r0[a];
            s1 += v * r1[a];
            s2 += v * r2[a];
            s3 += v * r3[a];
        }
        acc[c] += s0;
        acc[c + 1] += s1;
        acc[c + 2] += s2;
        acc[c + 3] += s3;
    }
    for (; c < rows; c++) {
        const int8_t *r = w + c * n;
        int32_t s = 0;
        for (int64_t a = 0; a < n; a++) s += (int32_t)x[a] * r[a];
        acc[c] += s;
    }
}

/* max |x[a]| over n float32 values (not NaN: the engine refuses NaN inputs). Compared as integers: the
 * bits of non-negative floats order as the floats do, and GCC vectorizes an integer max (vpmaxud) where
 * numba's LLVM kept the float max scalar (1 us over 3072 inputs). */
PER_CPU float condnet_largest_magnitude(const float *x, int64_t n) {
    uint32_t largest = 0;
    for (int64_t a = 0; a < n; a++) {
        uint32_t bits;
        memcpy(&bits, x + a, 4);
        bits &= 0x7fffffffu;
        largest = bits > largest ? bits : largest;
    }
    float value;
    memcpy(&value, &largest, 4);
    return value;
}
