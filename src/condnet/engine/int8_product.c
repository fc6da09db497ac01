/* The engine's int8 product for batches: acc[accrows[r]] += x[xrows[r], col0 : col0 + k] @ B[col0 : col0 + k]
 * for r < m, as exact int32 sums. x holds the examples' layer inputs quantized to int16 (kernels.py
 * bounds them so that no sum can overflow 32 bits); B is one output block of an int8 layer laid out by
 * condnet.engine.layout.int8_panels: panels of 16 outputs (the last one 8 wide when width is 8 mod 16),
 * each panel n_in / 2 rows, row p holding for every output of the panel its weights of inputs 2p and
 * 2p + 1 side by side. n_in, col0 and k are even (layout.int8_panels pads each input block to an even
 * size with zero weights, and the inputs with zeros).
 *
 * Why pairs: vpmaddwd multiplies 16-bit integers in pairs and adds each pair into one 32-bit sum (AVX-512
 * VNNI's vpdpwssd also adds the sum): one instruction does two multiply-adds per 32-bit lane, twice a
 * float32 FMA, from a quarter of float32's weight bytes. Pairs of weights widened from int8 (vpmovsxbw)
 * sit in the lanes of their output; a pair of one example's inputs is one 32-bit broadcast. The batch-1
 * product (int8_dots.c) reads the same weights as rows of tiles instead.
 *
 * Three versions, picked at load: AVX-512 with VNNI (a 16-wide panel is one register, 12 examples per
 * step), AVX2 (two 8-wide registers per panel, 6 examples), and portable C. `condnet_int8_path` reads or
 * switches the choice, so that tests run every version the CPU has. Intrinsics under target attributes
 * rather than target_clones: GCC's generic vectors have no pairwise multiply-add.
 */
#include <stdint.h>

#define PANEL 16

enum { PORTABLE = 1, AVX2 = 2, VNNI = 3 };
static int path = 0; /* 0: not decided yet */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* One panel of `pw` outputs (16 or 8), portable: any CPU, and the reference for the vector versions'
 * tests (which also check all three against numpy). */
static void panel_portable(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                           int64_t m, int64_t col0, int64_t k, const int8_t *panel, int pw, int32_t *acc,
                           int64_t ldacc) {
    for (int64_t r = 0; r < m; r++) {
        const int16_t *in = x + xrows[r] * ldx + col0;
        int32_t *out = acc + accrows[r] * ldacc;
        for (int64_t p = 0; p < k / 2; p++) {
            const int8_t *row = panel + p * 2 * pw;
            for (int o = 0; o < pw; o++) out[o] += in[2 * p] * row[2 * o] + in[2 * p + 1] * row[2 * o + 1];
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>
#define HAVE_VECTORS 1
#define ON_AVX2 __attribute__((target("avx2,fma")))
#define ON_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define VNNI_ROWS 12
#define AVX2_ROWS 6

/* inputs 2p and 2p + 1 of an example as one 32-bit lane (the lower input in the low half, as vpmaddwd
 * pairs it with the weight of the lower input) */
ALWAYS_INLINE int32_t input_pair(const int16_t *in, int64_t p) {
    int32_t pair;
    memcpy(&pair, in + 2 * p, 4);
    return pair;
}

/* `rows` examples (a constant once inlined) times one 16-wide panel: 1 load + 1 widening + `rows`
 * broadcast multiply-adds per pair of inputs. A sum waits about 5 cycles for its previous vpdpwssd, so
 * fewer than about 10 examples leave the unit idle (2 or 4 examples over 3072 x 640: 103 us each, the
 * latency's time): consecutive pairs then alternate between SPLIT sets of sums, added at the end. */
ON_VNNI ALWAYS_INLINE void step_vnni(int rows, const int16_t *x, int64_t ldx, const int64_t *xrows,
                                     const int64_t *accrows, int64_t col0, int64_t k, const int8_t *panel,
                                     int32_t *acc, int64_t ldacc) {
    const int split = rows >= 7 ? 1 : (rows >= 5 ? 2 : (rows == 4 ? 3 : 4)); /* rows x split <= 12 */
    __m512i sum[VNNI_ROWS];
    const int16_t *in[VNNI_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < VNNI_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            sum[r] = _mm512_loadu_si512(acc + accrows[r] * ldacc);
        } else if (r < rows * split) {
            sum[r] = _mm512_setzero_si512();
        }
    }
    int64_t p = 0, pairs = k / 2;
    for (; p + split <= pairs; p += split) {
        __builtin_prefetch(panel + (p + 128) * 2 * PANEL);
#pragma GCC unroll 4
        for (int u = 0; u < split; u++) {
            __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(panel + (p + u) * 2 * PANEL)));
#pragma GCC unroll 12
            for (int r = 0; r < VNNI_ROWS; r++) {
                if (r < rows)
                    sum[u * rows + r] = _mm512_dpwssd_epi32(sum[u * rows + r], w,
                                                            _mm512_set1_epi32(input_pair(in[r], p + u)));
            }
        }
    }
    for (; p < pairs; p++) { /* the pairs left over by the split */
        __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(panel + p * 2 * PANEL)));
#pragma GCC unroll 12
        for (int r = 0; r < VNNI_ROWS; r++) {
            if (r < rows) sum[r] = _mm512_dpwssd_epi32(sum[r], w, _mm512_set1_epi32(input_pair(in[r], p)));
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < VNNI_ROWS; r++) {
        if (r < rows) {
            for (int u = 1; u < split; u++) sum[r] = _mm512_add_epi32(sum[r], sum[u * rows + r]);
            _mm512_storeu_si512(acc + accrows[r] * ldacc, sum[r]);
        }
    }
}

/* the same over an 8-wide panel, in 256-bit registers */
ON_VNNI ALWAYS_INLINE void step_vnni8(int rows, const int16_t *x, int64_t ldx, const int64_t *xrows,
                                      const int64_t *accrows, int64_t col0, int64_t k, const int8_t *panel,
                                      int32_t *acc, int64_t ldacc) {
    __m256i sum[VNNI_ROWS];
    const int16_t *in[VNNI_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < VNNI_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            sum[r] = _mm256_loadu_si256((const __m256i *)(acc + accrows[r] * ldacc));
        }
    }
    for (int64_t p = 0; p < k / 2; p++) {
        __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(panel + p * 16)));
#pragma GCC unroll 12
        for (int r = 0; r < VNNI_ROWS; r++) {
            if (r < rows) sum[r] = _mm256_dpwssd_epi32(sum[r], w, _mm256_set1_epi32(input_pair(in[r], p)));
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < VNNI_ROWS; r++) {
        if (r < rows) _mm256_storeu_si256((__m256i *)(acc + accrows[r] * ldacc), sum[r]);
    }
}

/* AVX2: `vectors` (2: a 16-wide panel, 1: an 8-wide one) registers of 8 sums per example */
ON_AVX2 ALWAYS_INLINE void step_avx2(int rows, int vectors, const int16_t *x, int64_t ldx,
                                     const int64_t *xrows, const int64_t *accrows, int64_t col0, int64_t k,
                                     const int8_t *panel, int32_t *acc, int64_t ldacc) {
    __m256i sum[AVX2_ROWS][2];
    const int16_t *in[AVX2_ROWS];
    const int pw = 8 * vectors;
#pragma GCC unroll 6
    for (int r = 0; r < AVX2_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            for (int v = 0; v < vectors; v++)
                sum[r][v] = _mm256_loadu_si256((const __m256i *)(acc + accrows[r] * ldacc + 8 * v));
        }
    }
    for (int64_t p = 0; p < k / 2; p++) {
        __builtin_prefetch(panel + (p + 128) * 2 * pw);
        __m256i w[2];
        for (int v = 0; v < vectors; v++)
            w[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(panel + p * 2 * pw + 16 * v)));
#pragma GCC unroll 6
        for (int r = 0; r < AVX2_ROWS; r++) {
            if (r < rows) {
                __m256i pair = _mm256_set1_epi32(input_pair(in[r], p));
                for (int v = 0; v < vectors; v++)
                    sum[r][v] = _mm256_add_epi32(sum[r][v], _mm256_madd_epi16(w[v], pair));
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < AVX2_ROWS; r++) {
        if (r < rows) {
            for (int v = 0; v < vectors; v++)
                _mm256_storeu_si256((__m256i *)(acc + accrows[r] * ldacc + 8 * v), sum[r][v]);
        }
    }
}

/* Every example of the group times one panel: ROWS at a time, then the remainder (a constant per case,
 * so that each case compiles to its own register-blocked loop). */
#define REMAINDER_CASES(STEP)                                                                              \
    switch (rest) {                                                                                        \
    case 11: STEP(11); break;                                                                              \
    case 10: STEP(10); break;                                                                              \
    case 9: STEP(9); break;                                                                                \
    case 8: STEP(8); break;                                                                                \
    case 7: STEP(7); break;                                                                                \
    case 6: STEP(6); break;                                                                                \
    case 5: STEP(5); break;                                                                                \
    case 4: STEP(4); break;                                                                                \
    case 3: STEP(3); break;                                                                                \
    case 2: STEP(2); break;                                                                                \
    case 1: STEP(1); break;                                                                                \
    }

/* Steps of equal size: 50 examples as 5 x 10, where 4 x 12 + 2 left a step of 2 whose sums' chains
 * wait on vpdpwssd's latency (measured below). */
ON_VNNI static void panel_vnni(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                               int64_t m, int64_t col0, int64_t k, const int8_t *panel, int pw, int32_t *acc,
                               int64_t ldacc) {
    int64_t steps = (m + VNNI_ROWS - 1) / VNNI_ROWS;
    for (int64_t s = 0, r = 0; s < steps; s++) {
        int64_t rest = (m - r) / (steps - s); /* the rows of this step: at most VNNI_ROWS */
#define STEP(n)                                                                                            \
    if (pw == PANEL) step_vnni(n, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc);             \
    else step_vnni8(n, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc)
        if (rest == VNNI_ROWS) {
            STEP(VNNI_ROWS);
        } else {
            REMAINDER_CASES(STEP)
        }
#undef STEP
        r += rest;
    }
}

ON_AVX2 static void panel_avx2(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                               int64_t m, int64_t col0, int64_t k, const int8_t *panel, int pw, int32_t *acc,
                               int64_t ldacc) {
    int64_t steps = (m + AVX2_ROWS - 1) / AVX2_ROWS; /* steps of equal size, as panel_vnni's */
    for (int64_t s = 0, r = 0; s < steps; s++) {
        int64_t rest = (m - r) / (steps - s);
#define STEP(n)                                                                                            \
    if (pw == PANEL) step_avx2(n, 2, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc);          \
    else step_avx2(n, 1, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc)
        switch (rest) {
        case 6: STEP(6); break;
        case 5: STEP(5); break;
        case 4: STEP(4); break;
        case 3: STEP(3); break;
        case 2: STEP(2); break;
        case 1: STEP(1); break;
        }
#undef STEP
        r += rest;
    }
}
#endif

static int cpu_path(void) {
#ifdef HAVE_VECTORS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return VNNI;
    if (__builtin_cpu_supports("avx2")) return AVX2;
#endif
    return PORTABLE;
}

/* The version in use: 3 AVX-512 VNNI, 2 AVX2, 1 portable. `choice` 1-3 switches to that version for this
 * process where the CPU has it (tests and benchmarks run each on one machine); 0 only reads it. */
int condnet_int8_path(int choice) {
    int best = cpu_path();
    if (choice >= PORTABLE && choice <= best) path = choice;
    else if (path == 0) path = best;
    return path;
}

void condnet_int8_product(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                          int64_t m, int64_t col0, int64_t k, const int8_t *panels, int64_t n_in,
                          int64_t width, int32_t *acc, int64_t ldacc) {
    int version = path ? path : condnet_int8_path(0);
    for (int64_t o = 0; o < width; o += PANEL) {
        int pw = width - o >= PANEL ? PANEL : 8;
        const int8_t *panel = panels + o * n_in + col0 * pw;
#ifdef HAVE_VECTORS
        if (version == VNNI) {
            panel_vnni(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
            continue;
        }
        if (version == AVX2) {
            panel_avx2(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
            continue;
        }
#endif
        panel_portable(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
    }
}
