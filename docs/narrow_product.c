/* Tried and not kept (RESULTS 10.24): the engine with this kernel for its narrow layers (commit e54c018)
 * was no faster over a whole forward. Kept here, built and timed by docs/narrow_product_ab.py, for a
 * CPU where it may pay.
 *
 * The product of a narrow layer (a few outputs: a policy's scores, a 10-class output layer, a 16-unit
 * hidden layer): acc[accrows[r]][o] += x[xrows[r], col0 : col0 + k] . w[o, 0 : k] for r < m, o < n_out,
 * where w holds each output's weights as a row (ldw apart): W itself, or one input block's tile of it.
 *
 * Why not microkernel.c: its panels hold outputs along the vector, 16 to a panel, so a layer of 10
 * outputs wastes 6 of every 16 lanes, and with one panel each multiply-add needs its own broadcast of
 * an input. Here the vectors run along the inputs: a step holds ROWS examples times OUTS outputs, and
 * per vector of inputs loads ROWS input vectors and OUTS weight vectors for ROWS x OUTS multiply-adds,
 * every lane useful; each sum is added across its lanes once per run of inputs. The inputs are taken in
 * chunks of CHUNK so that a step's weights stay in L1 while the group's examples pass over them.
 *
 * As microkernel.c: GCC vector types; an AVX-512 version (16-wide vectors, 3 x 8 sums in 24 of the 32
 * registers) chosen at run time by narrow_vector_width, and an 8-wide one built per CPU by
 * target_clones (3 x 4 sums: 12 of AVX2's 16 registers). Keep IEEE arithmetic (never -ffast-math): a
 * non-finite input makes every sum it enters non-finite, which is how the engine finds it.
 */
#include <stdint.h>

/* The vector width in use: 16 (AVX-512) where the CPU has it, else 8; `width` 8 or 16 sets it (16 only
 * where the CPU has it), 0 reads it. (The engine's microkernel.c has the same switch.) */
int narrow_vector_width(int width) {
    static int in_use = 0;
    __builtin_cpu_init();
    int wide = __builtin_cpu_supports("avx512f");
    if (width == 8 || (width == 16 && wide)) in_use = width;
    else if (in_use == 0) in_use = wide ? 16 : 8;
    return in_use;
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define ROWS 3
#define CHUNK 1024 /* inputs per pass: 8 outputs' weights, 32 KiB, stay in L1 (48 KiB here) */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PER_CPU __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PER_CPU
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_unaligned __attribute__((vector_size(32), aligned(4)));

ALWAYS_INLINE v8f load8(const float *p) { return *(const v8f_unaligned *)p; }

ALWAYS_INLINE float lanes8(v8f v) { return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])); }

/* `rows` examples x `outs` outputs (constants once inlined) over inputs 0 .. k of `in` and `w`, 8 at a
 * time, the k % 8 left over one by one. */
ALWAYS_INLINE void step8(int rows, int outs, const float *const *in, const float *w, int64_t ldw, int64_t k,
                         float *const *out) {
    enum { OUTS = 4 };
    v8f sum[ROWS][OUTS];
#pragma GCC unroll 3
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 4
        for (int o = 0; o < OUTS; o++) sum[r][o] = (v8f){0};
    int64_t q = 0;
    for (; q + 8 <= k; q += 8) {
        v8f xv[ROWS];
#pragma GCC unroll 3
        for (int r = 0; r < ROWS; r++)
            if (r < rows) xv[r] = load8(in[r] + q);
#pragma GCC unroll 4
        for (int o = 0; o < OUTS; o++) {
            if (o < outs) {
                v8f wv = load8(w + o * ldw + q);
#pragma GCC unroll 3
                for (int r = 0; r < ROWS; r++)
                    if (r < rows) sum[r][o] += xv[r] * wv;
            }
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < ROWS; r++) { /* unrolled, so that the sums stay in registers in the loop above */
#pragma GCC unroll 4
        for (int o = 0; o < OUTS; o++) {
            if (r < rows && o < outs) {
                float total = lanes8(sum[r][o]);
                for (int64_t t = q; t < k; t++) total += in[r][t] * w[o * ldw + t];
                out[r][o] += total;
            }
        }
    }
}

#define STEP8(r, o) step8(r, o, in, w, ldw, k, out)

PER_CPU static void narrow8(int rows, int outs, const float *const *in, const float *w, int64_t ldw, int64_t k,
                            float *const *out) {
    switch (rows * 8 + outs) { /* each shape its own register-blocked loop */
    case 3 * 8 + 4: STEP8(3, 4); break;
    case 3 * 8 + 3: STEP8(3, 3); break;
    case 3 * 8 + 2: STEP8(3, 2); break;
    case 3 * 8 + 1: STEP8(3, 1); break;
    case 2 * 8 + 4: STEP8(2, 4); break;
    case 2 * 8 + 3: STEP8(2, 3); break;
    case 2 * 8 + 2: STEP8(2, 2); break;
    case 2 * 8 + 1: STEP8(2, 1); break;
    case 1 * 8 + 4: STEP8(1, 4); break;
    case 1 * 8 + 3: STEP8(1, 3); break;
    case 1 * 8 + 2: STEP8(1, 2); break;
    default: STEP8(1, 1); break;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_WIDE 1
#define WIDE __attribute__((target("avx512f,avx512vl,avx2,fma")))

/* One vector of inputs (the lanes in `mask`; zeros elsewhere, and masked-off lanes are never read, so
 * a row's end is never overrun) into the rows x outs sums. */
WIDE ALWAYS_INLINE void fma16(int rows, int outs, __mmask16 mask, const float *const *in, const float *w,
                              int64_t ldw, int64_t q, __m512 sum[ROWS][8]) {
    __m512 xv[ROWS];
#pragma GCC unroll 3
    for (int r = 0; r < ROWS; r++)
        if (r < rows) xv[r] = _mm512_maskz_loadu_ps(mask, in[r] + q);
#pragma GCC unroll 8
    for (int o = 0; o < 8; o++) {
        if (o < outs) {
            __m512 wv = _mm512_maskz_loadu_ps(mask, w + o * ldw + q);
            __asm__("" : "+v"(wv)); /* one load per weight vector: GCC would fold it into each FMA */
#pragma GCC unroll 3
            for (int r = 0; r < ROWS; r++)
                if (r < rows) sum[r][o] = _mm512_fmadd_ps(xv[r], wv, sum[r][o]);
        }
    }
}

/* out[o] += the sum of sum[o]'s 16 lanes, for o < outs: the 8 sums folded together in halves (21
 * instructions where one sum at a time takes 8 each). */
WIDE ALWAYS_INLINE void add_lanes(const __m512 sum[8], int outs, float *out) {
    /* pairs: lanes of each 128-bit quarter hold partial sums of o, o + 1, o, o + 1 */
    __m512 p[4], q[2];
    for (int i = 0; i < 4; i++)
        p[i] = _mm512_add_ps(_mm512_unpacklo_ps(sum[2 * i], sum[2 * i + 1]),
                             _mm512_unpackhi_ps(sum[2 * i], sum[2 * i + 1]));
    /* fours: each quarter holds partial sums of o .. o + 3 */
    for (int i = 0; i < 2; i++)
        q[i] = _mm512_add_ps(_mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(p[2 * i], p[2 * i + 1], 0xee));
    /* eights: quarters 0, 2 of q[0], q[1] against quarters 1, 3: halves hold partial sums of 0-3, 4-7 */
    __m512 h = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], 0x88), _mm512_shuffle_f32x4(q[0], q[1], 0xdd));
    /* the two 256-bit halves: quarters (0, 1) + (2, 3) -> sums of 0-3 then 4-7 */
    __m256 total = _mm256_add_ps(_mm512_castps512_ps256(_mm512_shuffle_f32x4(h, h, 0x08)),
                                 _mm512_castps512_ps256(_mm512_shuffle_f32x4(h, h, 0x0d)));
    __mmask8 mask = (__mmask8)((1u << outs) - 1);
    _mm256_mask_storeu_ps(out, mask, _mm256_add_ps(_mm256_maskz_loadu_ps(mask, out), total));
}

/* As step8 with 16-wide vectors and up to 8 outputs; the last k % 16 inputs by a masked load. */
WIDE ALWAYS_INLINE void step16(int rows, int outs, const float *const *in, const float *w, int64_t ldw,
                               int64_t k, float *const *out) {
    __m512 sum[ROWS][8];
#pragma GCC unroll 3
    for (int r = 0; r < ROWS; r++)
#pragma GCC unroll 8
        for (int o = 0; o < 8; o++) sum[r][o] = _mm512_setzero_ps();
    int64_t q = 0;
    for (; q + 16 <= k; q += 16) fma16(rows, outs, 0xffff, in, w, ldw, q, sum);
    if (q < k) fma16(rows, outs, (__mmask16)((1u << (k - q)) - 1), in, w, ldw, q, sum);
#pragma GCC unroll 3
    for (int r = 0; r < ROWS; r++) /* unrolled, so that the sums stay in registers in the loop above */
        if (r < rows) add_lanes(sum[r], outs, out[r]);
}

#define STEP16(r, o) step16(r, o, in, w, ldw, k, out)
#define ROWS_OF(r)                                                                                         \
    case r * 16 + 8: STEP16(r, 8); break;                                                                  \
    case r * 16 + 7: STEP16(r, 7); break;                                                                  \
    case r * 16 + 6: STEP16(r, 6); break;                                                                  \
    case r * 16 + 5: STEP16(r, 5); break;                                                                  \
    case r * 16 + 4: STEP16(r, 4); break;                                                                  \
    case r * 16 + 3: STEP16(r, 3); break;                                                                  \
    case r * 16 + 2: STEP16(r, 2); break;                                                                  \
    case r * 16 + 1: STEP16(r, 1); break;

WIDE static void narrow16(int rows, int outs, const float *const *in, const float *w, int64_t ldw, int64_t k,
                          float *const *out) {
    switch (rows * 16 + outs) {
        ROWS_OF(3)
        ROWS_OF(2)
        ROWS_OF(1)
    }
}
#endif

/* x: rows of ldx floats; w: n_out rows of k weights, ldw apart; acc: rows of ldacc floats (>= n_out). */
void narrow_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                            int64_t m, int64_t col0, int64_t k, const float *w, int64_t ldw, int64_t n_out,
                            float *acc, int64_t ldacc) {
    int outs_per_step = 4;
#ifdef HAVE_WIDE
    int wide = narrow_vector_width(0) == 16;
    if (wide) outs_per_step = 8;
#endif
    for (int64_t c = 0; c < k; c += CHUNK) {
        int64_t kc = k - c < CHUNK ? k - c : CHUNK;
        for (int64_t o = 0; o < n_out; o += outs_per_step) {
            int outs = n_out - o < outs_per_step ? (int)(n_out - o) : outs_per_step;
            for (int64_t r = 0; r < m; r += ROWS) {
                int rows = m - r < ROWS ? (int)(m - r) : ROWS;
                const float *in[ROWS];
                float *out[ROWS];
                for (int e = 0; e < rows; e++) {
                    in[e] = x + xrows[r + e] * ldx + col0 + c;
                    out[e] = acc + accrows[r + e] * ldacc + o;
                }
#ifdef HAVE_WIDE
                if (wide) {
                    narrow16(rows, outs, in, w + o * ldw + c, ldw, kc, out);
                    continue;
                }
#endif
                narrow8(rows, outs, in, w + o * ldw + c, ldw, kc, out);
            }
        }
    }
}
