/* The engine's one product: acc[accrows[r]] += x[xrows[r], col0 : col0 + k] @ B[col0 : col0 + k] for
 * r < m, where B is one output block of a layer's weights (n_in inputs x width outputs) packed by
 * condnet.engine.layout.to_panels into panels of 16 outputs (the last one 8 wide when width is 8 mod
 * 16), each panel n_in rows of contiguous outputs, so any run of inputs (one input block's) of a panel
 * is one stream. The weights are float32, or bfloat16 (`bf16`: the upper half of a float32, half the
 * bytes), widened to float32 as they are loaded; the sums are float32 either way.
 *
 * Why C: numba cannot hold a block of accumulators in registers. This register-blocked kernel keeps a
 * 6 x 16 block of sums in twelve 8-wide registers; per input it loads two vectors of the panel and
 * broadcasts one input of each of six examples (2 loads + 6 broadcasts per 12 FMAs). With AVX-512 a
 * panel is one register and a step holds 12 examples (below). The examples are rows of x picked by
 * index, so the engine's groups of examples (those that switched a block on) need no copy. Written with
 * GCC vector types rather than intrinsics so that one source compiles for every CPU: target_clones
 * builds an AVX-512, an AVX2 + FMA and a baseline (SSE2) version of the 8-wide product and picks one
 * when the library is loaded, so a build on one machine runs on another.
 *
 * numba kernels call it by symbol (condnet.engine.kernels); the library is loaded by
 * condnet.engine.native. Pointers arrive as integers (numba's array.ctypes.data).
 *
 * Keep IEEE arithmetic (never -ffast-math): the engine finds NaN and infinite inputs through the sums
 * this computes (a non-finite input makes every sum it enters non-finite).
 */
#include <stdint.h>

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_unaligned __attribute__((vector_size(32), aligned(4)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h_unaligned __attribute__((vector_size(16), aligned(2)));
typedef uint32_t v8u_unaligned __attribute__((vector_size(32), aligned(2)));
typedef int32_t v8i __attribute__((vector_size(32)));

/* Elements of two 8-wide vectors picked by index (0-7 from a, 8-15 from b): GCC's spelling works from
 * GCC 4.7 on (__builtin_shufflevector only from 12), clang's is its own. */
#if defined(__clang__)
#define SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUFFLE(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

#define PANEL 16 /* outputs per panel: two 8-wide vectors */
#define ROWS 6   /* examples per step: 12 accumulators + 2 panel vectors + 1 broadcast <= 16 registers */
/* Inputs ahead whose panel row is prefetched. The engine's groups are small (a block switched on by
 * 18 % of 50 examples: 9), so a panel is used by few examples and streamed from memory at one core's
 * bandwidth; prefetching 4 KiB ahead keeps more of it in flight. Measured on 10 tiles of 3072 x 64
 * evicted from the caches before each run, 9 examples: 766 -> 606 us (AMD EPYC, AVX2). A prefetch
 * past the end of the weights is harmless: prefetches never fault. */
#define PREFETCH 64

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static int vector_width = 0; /* 16: the AVX-512 product; 8: the 8-wide one; 0: not decided yet */

/* x86-64 with GCC: one version per vector extension, chosen at load time. Elsewhere (another compiler,
 * an ARM CPU) one build for the target's own vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PER_CPU __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PER_CPU
#endif

ALWAYS_INLINE v8f load(const float *p) { return *(const v8f_unaligned *)p; }
ALWAYS_INLINE void store(float *p, v8f v) { *(v8f_unaligned *)p = v; }

/* 8 weights from element i of w: float32, or bfloat16 shifted into a float32's upper half (exact). */
ALWAYS_INLINE v8f weights8(const void *w, int64_t i, int bf16) {
    if (bf16) return (v8f)(__builtin_convertvector(*(const v8h_unaligned *)((const uint16_t *)w + i), v8u) << 16);
    return load((const float *)w + i);
}

/* bf16 over a 16-wide panel: its row of 16 weights read in one 32-byte load as eight pairs, each 32-bit
 * lane holding outputs 2j (low half) and 2j + 1 (high half); a shift and a mask widen both exactly: two
 * element-wise instructions for 16 weights where GCC's generic widening (weights8) takes ten shuffle-
 * port instructions on AVX2 (bf16 ran 1.2-1.5x slower than float32 at batch 50, RESULTS 10.12). The
 * sums are then kept "dealt": outputs 0, 2, ..., 14 in one vector, 1, 3, ..., 15 in the other;
 * load_sums and store_sums reorder a row of acc once per step. A 16-wide panel in float32, or an 8-wide
 * one, is read as before, in order. */
ALWAYS_INLINE int dealt(int bf16, int vectors) { return bf16 && vectors == 2; }

ALWAYS_INLINE void dealt_row(const void *panel, int64_t i, v8f *even, v8f *odd) {
    v8u pair = *(const v8u_unaligned *)((const uint16_t *)panel + i);
    *even = (v8f)(pair << 16);
    *odd = (v8f)(pair & 0xffff0000u);
}

ALWAYS_INLINE void panel_row(int bf16, int vectors, const void *panel, int64_t i, v8f *w) {
    if (dealt(bf16, vectors)) {
        dealt_row(panel, i, &w[0], &w[1]);
    } else {
        for (int v = 0; v < vectors; v++) w[v] = weights8(panel, i + 8 * v, bf16);
    }
}

ALWAYS_INLINE void load_sums(int bf16, int vectors, const float *p, v8f *sum) {
    if (dealt(bf16, vectors)) {
        v8f lo = load(p), hi = load(p + 8);
        sum[0] = SHUFFLE(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
        sum[1] = SHUFFLE(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
    } else {
        for (int v = 0; v < vectors; v++) sum[v] = load(p + 8 * v);
    }
}

ALWAYS_INLINE void store_sums(int bf16, int vectors, float *p, const v8f *sum) {
    if (dealt(bf16, vectors)) {
        store(p, SHUFFLE(sum[0], sum[1], 0, 8, 1, 9, 2, 10, 3, 11));
        store(p + 8, SHUFFLE(sum[0], sum[1], 4, 12, 5, 13, 6, 14, 7, 15));
    } else {
        for (int v = 0; v < vectors; v++) store(p + 8 * v, sum[v]);
    }
}

/* Prefetch element i of w (bf16: 2-byte elements). */
ALWAYS_INLINE void prefetch(const void *w, int64_t i, int bf16) {
    __builtin_prefetch((const char *)w + i * (bf16 ? 2 : 4));
}

/* `rows` (<= ROWS, a constant once inlined) examples times one panel of `vectors` (2 or 1) vectors. */
ALWAYS_INLINE void step(int bf16, int rows, int vectors, const float *x, int64_t ldx, const int64_t *xrows,
                        const int64_t *accrows, int64_t col0, int64_t k, const void *panel, float *acc,
                        int64_t ldacc) {
    v8f sum[ROWS][2];
    const float *in[ROWS];
    const int stride = 8 * vectors;
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            load_sums(bf16, vectors, acc + accrows[r] * ldacc, sum[r]);
        }
    }
    for (int64_t q = 0; q < k; q++) {
        prefetch(panel, (q + PREFETCH) * stride, bf16);
        v8f w0, w1;
        if (dealt(bf16, vectors)) {
            dealt_row(panel, q * stride, &w0, &w1);
        } else { /* as panel_row, written out: that call left float32's 5-example step short of registers */
            w0 = weights8(panel, q * stride, bf16);
            w1 = vectors == 2 ? weights8(panel, q * stride + 8, bf16) : w0;
        }
#pragma GCC unroll 6
        for (int r = 0; r < ROWS; r++) {
            if (r < rows) {
                float t = in[r][q];
                v8f s = {t, t, t, t, t, t, t, t};
                sum[r][0] += s * w0;
                if (vectors == 2) sum[r][1] += s * w1;
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < ROWS; r++) {
        if (r < rows) store_sums(bf16, vectors, acc + accrows[r] * ldacc, sum[r]);
    }
}

/* One example: `step` would keep only 1-2 sums in flight, and an FMA waits about 4 cycles for the
 * previous one on its sum while two issue per cycle. Here consecutive inputs alternate between SPLIT
 * sets of sums, added at the end. Measured on a 784 x 64 tile in cache: 4.9 -> 3.4 us (3072 x 64:
 * 16.8 -> 14.4 us). (The same for 2-6 examples was as fast or slower.) */
ALWAYS_INLINE void step_one(int bf16, int vectors, const float *x, int64_t ldx, const int64_t *xrows,
                            const int64_t *accrows, int64_t col0, int64_t k, const void *panel, float *acc,
                            int64_t ldacc) {
    enum { SPLIT = 4 };
    const float *in = x + xrows[0] * ldx + col0;
    float *out = acc + accrows[0] * ldacc;
    const int stride = 8 * vectors;
    v8f sum[SPLIT][2];
    for (int u = 0; u < SPLIT; u++) sum[u][0] = sum[u][1] = (v8f){0};
    int64_t q = 0;
    for (; q + SPLIT <= k; q += SPLIT) {
        prefetch(panel, (q + PREFETCH) * stride, bf16);
#pragma GCC unroll 4
        for (int u = 0; u < SPLIT; u++) {
            float t = in[q + u];
            v8f s = {t, t, t, t, t, t, t, t}, w[2];
            panel_row(bf16, vectors, panel, (q + u) * stride, w);
            for (int v = 0; v < vectors; v++) sum[u][v] += s * w[v];
        }
    }
    for (; q < k; q++) { /* the inputs left over by the split */
        float t = in[q];
        v8f s = {t, t, t, t, t, t, t, t}, w[2];
        panel_row(bf16, vectors, panel, q * stride, w);
        for (int v = 0; v < vectors; v++) sum[0][v] += s * w[v];
    }
    v8f total[2];
    load_sums(bf16, vectors, out, total);
    for (int v = 0; v < vectors; v++) total[v] += (sum[0][v] + sum[1][v]) + (sum[2][v] + sum[3][v]);
    store_sums(bf16, vectors, out, total);
}

#define STEP(n) step(bf16, n, vectors, x, ldx, xrows, accrows, col0, k, panel, acc, ldacc)

/* Every example of the group times one panel: ROWS at a time, then the remainder (a constant per case,
 * so each case compiles to its own register-blocked loop). */
ALWAYS_INLINE void panel_product(int bf16, int vectors, const float *x, int64_t ldx, const int64_t *xrows,
                                 const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                 const void *panel, float *acc, int64_t ldacc) {
    int64_t r = 0;
    for (; r + ROWS <= m; r += ROWS)
        step(bf16, ROWS, vectors, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc);
    xrows += r;
    accrows += r;
    switch (m - r) {
    case 5: STEP(5); break;
    case 4: STEP(4); break;
    case 3: STEP(3); break;
    case 2: STEP(2); break;
    case 1: step_one(bf16, vectors, x, ldx, xrows, accrows, col0, k, panel, acc, ldacc); break;
    }
}

/* 2-3 examples (`rows`, a constant once inlined) times two 16-wide panels, four 8-wide vectors: 8-12
 * sums in flight where one panel's 2-3 examples keep 4-6: an FMA waits about 4 cycles for the previous
 * one on its sum while two issue per cycle (so 8 are needed to keep both busy). Each sum adds the same
 * products in the same order as `step`'s. */
ALWAYS_INLINE void step_pair(int bf16, int rows, const float *x, int64_t ldx, const int64_t *xrows,
                             const int64_t *accrows, int64_t col0, int64_t k, const void *pa, const void *pb,
                             float *acc, int64_t ldacc) {
    enum { PAIR_MAX = 3 };
    v8f sum[PAIR_MAX][4];
    const float *in[PAIR_MAX];
#pragma GCC unroll 3
    for (int r = 0; r < PAIR_MAX; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            load_sums(bf16, 2, acc + accrows[r] * ldacc, sum[r]);
            load_sums(bf16, 2, acc + accrows[r] * ldacc + PANEL, sum[r] + 2);
        }
    }
    for (int64_t q = 0; q < k; q++) {
        prefetch(pa, (q + PREFETCH) * PANEL, bf16);
        prefetch(pb, (q + PREFETCH) * PANEL, bf16);
        v8f w[4];
        panel_row(bf16, 2, pa, q * PANEL, w);
        panel_row(bf16, 2, pb, q * PANEL, w + 2);
#pragma GCC unroll 3
        for (int r = 0; r < PAIR_MAX; r++) {
            if (r < rows) {
                float t = in[r][q];
                v8f s = {t, t, t, t, t, t, t, t};
                for (int v = 0; v < 4; v++) sum[r][v] += s * w[v];
            }
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < PAIR_MAX; r++) {
        if (r < rows) {
            store_sums(bf16, 2, acc + accrows[r] * ldacc, sum[r]);
            store_sums(bf16, 2, acc + accrows[r] * ldacc + PANEL, sum[r] + 2);
        }
    }
}

/* Element `i` of a weights array of 4-byte (float32) or 2-byte (bf16) elements. */
ALWAYS_INLINE const void *element(const void *w, int64_t i, int bf16) {
    return (const char *)w + i * (bf16 ? 2 : 4);
}

/* Every panel of the output block, the 16-wide ones as two 8-wide vectors. */
ALWAYS_INLINE void product_narrow(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                  const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                  const void *panels, int64_t n_in, int64_t width, float *acc, int64_t ldacc) {
    int64_t p = 0, full = m - m % ROWS, rest = m % ROWS;
    /* the last 2-3 examples over two panels at a time (step_pair); not 3 in bf16, whose widened weights
     * and mask would not fit in the 16 registers beside 12 sums (two sums spilled: 1.7x slower) */
    if (rest == 2 || (rest == 3 && !bf16)) {
        for (; width - p >= 2 * PANEL; p += 2 * PANEL) {
            const void *pa = element(panels, p * n_in + col0 * PANEL, bf16);
            const void *pb = element(panels, (p + PANEL) * n_in + col0 * PANEL, bf16);
            panel_product(bf16, 2, x, ldx, xrows, accrows, full, col0, k, pa, acc + p, ldacc);
            panel_product(bf16, 2, x, ldx, xrows, accrows, full, col0, k, pb, acc + p + PANEL, ldacc);
            if (rest == 3) step_pair(bf16, 3, x, ldx, xrows + full, accrows + full, col0, k, pa, pb, acc + p, ldacc);
            else step_pair(bf16, 2, x, ldx, xrows + full, accrows + full, col0, k, pa, pb, acc + p, ldacc);
        }
    }
    for (; p < width; p += PANEL) {
        if (width - p >= PANEL) {
            const void *panel = element(panels, p * n_in + col0 * PANEL, bf16);
            panel_product(bf16, 2, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
        } else { /* the last panel, 8 wide */
            const void *panel = element(panels, p * n_in + col0 * 8, bf16);
            panel_product(bf16, 1, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
        }
    }
}

/* bf16 a constant in each branch, so each compiles to its own loops */
#define BOTH_WEIGHTS(product)                                                                              \
    if (bf16) product(1, x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc);             \
    else product(0, x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc)

PER_CPU static void narrow(int bf16, const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                           int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in, int64_t width,
                           float *acc, int64_t ldacc) {
    BOTH_WEIGHTS(product_narrow);
}

/* AVX-512: a panel of 16 outputs is one 16-wide register, so a step holds WIDE_ROWS examples' sums in
 * WIDE_ROWS registers (of 32) and does 1 load + WIDE_ROWS broadcast FMAs per input: twice the multiply-
 * adds per instruction of the 8-wide step; or PAIR_ROWS examples times two panels, 2 loads + 16 FMAs;
 * or QUAD_ROWS examples times four panels, 4 loads + 24 FMAs. Compiled for AVX-512 only (target attribute) and chosen at
 * run time when the CPU has it (`condnet_gathered_product`). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_WIDE 1
#define WIDE __attribute__((target("avx512f,avx512vl,avx2,fma")))
typedef float v16f __attribute__((vector_size(64)));
typedef float v16f_unaligned __attribute__((vector_size(64), aligned(4)));
#define WIDE_ROWS 12

WIDE ALWAYS_INLINE v16f load16(const float *p) { return *(const v16f_unaligned *)p; }
WIDE ALWAYS_INLINE void store16(float *p, v16f v) { *(v16f_unaligned *)p = v; }
WIDE ALWAYS_INLINE v16f broadcast16(float t) { return (v16f){t, t, t, t, t, t, t, t, t, t, t, t, t, t, t, t}; }

/* bf16 with an intrinsic: GCC widens the generic vector conversion in 128-bit pieces (5 instructions
 * where vpmovzxwd does it in one). */
WIDE ALWAYS_INLINE v16f weights16(const void *w, int64_t i, int bf16) {
    if (bf16)
        return (v16f)_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))), 16);
    return load16((const float *)w + i);
}

WIDE ALWAYS_INLINE void step16(int bf16, int rows, const float *x, int64_t ldx, const int64_t *xrows,
                               const int64_t *accrows, int64_t col0, int64_t k, const void *panel,
                               float *acc, int64_t ldacc) {
    v16f sum[WIDE_ROWS];
    const float *in[WIDE_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < WIDE_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            sum[r] = load16(acc + accrows[r] * ldacc);
        }
    }
    for (int64_t q = 0; q < k; q++) {
        prefetch(panel, (q + PREFETCH) * PANEL, bf16);
        v16f w = weights16(panel, q * PANEL, bf16);
#pragma GCC unroll 12
        for (int r = 0; r < WIDE_ROWS; r++)
            if (r < rows) sum[r] += broadcast16(in[r][q]) * w;
    }
#pragma GCC unroll 12
    for (int r = 0; r < WIDE_ROWS; r++)
        if (r < rows) store16(acc + accrows[r] * ldacc, sum[r]);
}

/* One example, as `step_one`: SPLIT sets of sums so that consecutive FMAs do not wait on each other. */
WIDE ALWAYS_INLINE void step16_one(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                   const int64_t *accrows, int64_t col0, int64_t k, const void *panel,
                                   float *acc, int64_t ldacc) {
    enum { SPLIT = 4 };
    const float *in = x + xrows[0] * ldx + col0;
    float *out = acc + accrows[0] * ldacc;
    v16f sum[SPLIT] = {{0}};
    int64_t q = 0;
    for (; q + SPLIT <= k; q += SPLIT) {
        prefetch(panel, (q + PREFETCH) * PANEL, bf16);
#pragma GCC unroll 4
        for (int u = 0; u < SPLIT; u++) sum[u] += broadcast16(in[q + u]) * weights16(panel, (q + u) * PANEL, bf16);
    }
    for (; q < k; q++) sum[0] += broadcast16(in[q]) * weights16(panel, q * PANEL, bf16);
    store16(out, load16(out) + ((sum[0] + sum[1]) + (sum[2] + sum[3])));
}

#define STEP16(n) step16(bf16, n, x, ldx, xrows, accrows, col0, k, panel, acc, ldacc)

WIDE ALWAYS_INLINE void panel16_product(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                        const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                        const void *panel, float *acc, int64_t ldacc) {
    int64_t r = 0;
    for (; r + WIDE_ROWS <= m; r += WIDE_ROWS)
        step16(bf16, WIDE_ROWS, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc);
    xrows += r;
    accrows += r;
    switch (m - r) { /* each remainder its own register-blocked loop */
    case 11: STEP16(11); break;
    case 10: STEP16(10); break;
    case 9: STEP16(9); break;
    case 8: STEP16(8); break;
    case 7: STEP16(7); break;
    case 6: STEP16(6); break;
    case 5: STEP16(5); break;
    case 4: STEP16(4); break;
    case 3: STEP16(3); break;
    case 2: STEP16(2); break;
    case 1: step16_one(bf16, x, ldx, xrows, accrows, col0, k, panel, acc, ldacc); break;
    }
}

#define PAIR_ROWS 8

/* `rows` (<= WIDE_ROWS) examples times two 16-wide panels: 2 loads + `rows` x 2 broadcast FMAs per
 * input (16 FMAs for 10 loads at 8 rows, 24 for 14 at 12, where a 12-row step over one panel does 12
 * for 13; 12 rows hold 24 of the 32 registers in sums). */
WIDE ALWAYS_INLINE void step16x2(int bf16, int rows, const float *x, int64_t ldx, const int64_t *xrows,
                                 const int64_t *accrows, int64_t col0, int64_t k, const void *pa,
                                 const void *pb, float *acc, int64_t ldacc) {
    v16f sum[WIDE_ROWS][2];
    const float *in[WIDE_ROWS];
#pragma GCC unroll 12
    for (int r = 0; r < WIDE_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            sum[r][0] = load16(acc + accrows[r] * ldacc);
            sum[r][1] = load16(acc + accrows[r] * ldacc + PANEL);
        }
    }
    for (int64_t q = 0; q < k; q++) {
        prefetch(pa, (q + PREFETCH) * PANEL, bf16);
        prefetch(pb, (q + PREFETCH) * PANEL, bf16);
        v16f wa = weights16(pa, q * PANEL, bf16), wb = weights16(pb, q * PANEL, bf16);
#pragma GCC unroll 12
        for (int r = 0; r < WIDE_ROWS; r++) {
            if (r < rows) {
                v16f t = broadcast16(in[r][q]);
                sum[r][0] += t * wa;
                sum[r][1] += t * wb;
            }
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < WIDE_ROWS; r++) {
        if (r < rows) {
            store16(acc + accrows[r] * ldacc, sum[r][0]);
            store16(acc + accrows[r] * ldacc + PANEL, sum[r][1]);
        }
    }
}

#define PAIR(n) step16x2(bf16, n, x, ldx, xrows, accrows, col0, k, pa, pb, acc, ldacc)

WIDE ALWAYS_INLINE void pair16_product(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                       const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                       const void *pa, const void *pb, float *acc, int64_t ldacc) {
    int64_t r = 0;
    for (; r + PAIR_ROWS <= m; r += PAIR_ROWS)
        step16x2(bf16, PAIR_ROWS, x, ldx, xrows + r, accrows + r, col0, k, pa, pb, acc, ldacc);
    xrows += r;
    accrows += r;
    switch (m - r) {
    case 7: PAIR(7); break;
    case 6: PAIR(6); break;
    case 5: PAIR(5); break;
    case 4: PAIR(4); break;
    case 3: PAIR(3); break;
    case 2: PAIR(2); break;
    case 1:
        step16_one(bf16, x, ldx, xrows, accrows, col0, k, pa, acc, ldacc);
        step16_one(bf16, x, ldx, xrows, accrows, col0, k, pb, acc + PANEL, ldacc);
        break;
    }
}

/* 9-12 examples (PAIR_ROWS < m <= WIDE_ROWS) times two panels in one pass. */
WIDE ALWAYS_INLINE void pair16_few(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                   const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                   const void *pa, const void *pb, float *acc, int64_t ldacc) {
    switch (m) {
    case 12: PAIR(12); break;
    case 11: PAIR(11); break;
    case 10: PAIR(10); break;
    default: PAIR(9); break;
    }
}

#define QUAD_ROWS 6

/* `rows` (<= QUAD_ROWS) examples times four 16-wide panels: 4 loads + `rows` broadcasts per `rows` x 4
 * FMAs (24 FMAs for 10 loads at 6 rows, where the 12-row step over one panel does 12 for 13: its
 * broadcasts, one per FMA, bound it). Measured on 3072 x 64 tiles, 5-12 examples: 1.2-1.3x faster;
 * the same at 50-256 examples (RESULTS 10.6). */
WIDE ALWAYS_INLINE void step16x4(int bf16, int rows, const float *x, int64_t ldx, const int64_t *xrows,
                                 const int64_t *accrows, int64_t col0, int64_t k, const void *pa,
                                 const void *pb, const void *pc, const void *pd, float *acc, int64_t ldacc) {
    v16f sum[QUAD_ROWS][4];
    const float *in[QUAD_ROWS];
#pragma GCC unroll 6
    for (int r = 0; r < QUAD_ROWS; r++) {
        if (r < rows) {
            in[r] = x + xrows[r] * ldx + col0;
            for (int v = 0; v < 4; v++) sum[r][v] = load16(acc + accrows[r] * ldacc + v * PANEL);
        }
    }
    for (int64_t q = 0; q < k; q++) {
        prefetch(pa, (q + PREFETCH) * PANEL, bf16);
        prefetch(pb, (q + PREFETCH) * PANEL, bf16);
        prefetch(pc, (q + PREFETCH) * PANEL, bf16);
        prefetch(pd, (q + PREFETCH) * PANEL, bf16);
        v16f wa = weights16(pa, q * PANEL, bf16), wb = weights16(pb, q * PANEL, bf16);
        v16f wc = weights16(pc, q * PANEL, bf16), wd = weights16(pd, q * PANEL, bf16);
#pragma GCC unroll 6
        for (int r = 0; r < QUAD_ROWS; r++) {
            if (r < rows) {
                v16f t = broadcast16(in[r][q]);
                sum[r][0] += t * wa;
                sum[r][1] += t * wb;
                sum[r][2] += t * wc;
                sum[r][3] += t * wd;
            }
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < QUAD_ROWS; r++) {
        if (r < rows) {
            for (int v = 0; v < 4; v++) store16(acc + accrows[r] * ldacc + v * PANEL, sum[r][v]);
        }
    }
}

#define QUAD(n) step16x4(bf16, n, x, ldx, xrows, accrows, col0, k, pa, pb, pc, pd, acc, ldacc)

WIDE ALWAYS_INLINE void quad16_product(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                       const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                       const void *pa, const void *pb, const void *pc, const void *pd,
                                       float *acc, int64_t ldacc) {
    int64_t r = 0;
    for (; r + QUAD_ROWS <= m; r += QUAD_ROWS)
        step16x4(bf16, QUAD_ROWS, x, ldx, xrows + r, accrows + r, col0, k, pa, pb, pc, pd, acc, ldacc);
    xrows += r;
    accrows += r;
    switch (m - r) {
    case 5: QUAD(5); break;
    case 4: QUAD(4); break;
    case 3: QUAD(3); break;
    case 2: QUAD(2); break;
    case 1: QUAD(1); break;
    }
}

/* Four panels at a time (if `quads`), then two, then one, then the last 8-wide one. */
WIDE ALWAYS_INLINE void product_panels(int bf16, int quads, const float *x, int64_t ldx, const int64_t *xrows,
                                       const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                       const void *panels, int64_t n_in, int64_t width, float *acc, int64_t ldacc) {
    int64_t p = 0;
    if (quads) {
        for (; width - p >= 4 * PANEL; p += 4 * PANEL) {
            const void *pa = element(panels, p * n_in + col0 * PANEL, bf16);
            const void *pb = element(panels, (p + PANEL) * n_in + col0 * PANEL, bf16);
            const void *pc = element(panels, (p + 2 * PANEL) * n_in + col0 * PANEL, bf16);
            const void *pd = element(panels, (p + 3 * PANEL) * n_in + col0 * PANEL, bf16);
            quad16_product(bf16, x, ldx, xrows, accrows, m, col0, k, pa, pb, pc, pd, acc + p, ldacc);
        }
    }
    for (; width - p >= 2 * PANEL; p += 2 * PANEL) {
        const void *pa = element(panels, p * n_in + col0 * PANEL, bf16);
        const void *pb = element(panels, (p + PANEL) * n_in + col0 * PANEL, bf16);
        pair16_product(bf16, x, ldx, xrows, accrows, m, col0, k, pa, pb, acc + p, ldacc);
    }
    if (width - p >= PANEL) {
        const void *panel = element(panels, p * n_in + col0 * PANEL, bf16);
        panel16_product(bf16, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
        p += PANEL;
    }
    if (width > p) { /* the last panel, 8 wide */
        const void *panel = element(panels, p * n_in + col0 * 8, bf16);
        panel_product(bf16, 1, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
    }
}

/* Inputs up to which a group of 9-12 examples takes four panels at a time in two passes (6 examples, then
 * the rest): four panels of 1024 inputs are 256 KiB, read again from L2. Beyond, every row in one pass
 * reads each panel once: on 3072-input tiles streamed from L3, two passes were up to 1.2x slower. */
#define QUADS_REREAD 1024

WIDE ALWAYS_INLINE void product_wide(int bf16, const float *x, int64_t ldx, const int64_t *xrows,
                                     const int64_t *accrows, int64_t m, int64_t col0, int64_t k,
                                     const void *panels, int64_t n_in, int64_t width, float *acc, int64_t ldacc) {
    /* The fewest passes over the panels with the most FMAs per load (measured, RESULTS 10.5 and 10.6):
     * up to 6 examples, four panels at a time; 7-8, two; 9-12, four (from cache) or two with every row
     * in one pass; more, four (several passes whatever the step). */
    int few = m > PAIR_ROWS && m <= WIDE_ROWS;
    if (few && k > QUADS_REREAD) { /* every row in one pass: two panels at a time, then one */
        int64_t p = 0;
        for (; width - p >= 2 * PANEL; p += 2 * PANEL) {
            const void *pa = element(panels, p * n_in + col0 * PANEL, bf16);
            const void *pb = element(panels, (p + PANEL) * n_in + col0 * PANEL, bf16);
            pair16_few(bf16, x, ldx, xrows, accrows, m, col0, k, pa, pb, acc + p, ldacc);
        }
        for (; p < width; p += PANEL) {
            if (width - p >= PANEL) {
                const void *panel = element(panels, p * n_in + col0 * PANEL, bf16);
                panel16_product(bf16, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
            } else { /* the last panel, 8 wide */
                const void *panel = element(panels, p * n_in + col0 * 8, bf16);
                panel_product(bf16, 1, x, ldx, xrows, accrows, m, col0, k, panel, acc + p, ldacc);
            }
        }
        return;
    }
    int quads = m <= QUAD_ROWS || m > PAIR_ROWS;
    product_panels(bf16, quads, x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc);
}

WIDE static void wide(int bf16, const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                      int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in, int64_t width,
                      float *acc, int64_t ldacc) {
    BOTH_WEIGHTS(product_wide);
}
#endif


/* The vector width in use (16 or 8); `width` 8 or 16 sets it (16 only where the CPU has AVX-512), so that
 * the tests and benchmarks can run both products on one machine; other values only read it. */
int condnet_vector_width(int width) {
#ifdef HAVE_WIDE
    __builtin_cpu_init();
    int wide = __builtin_cpu_supports("avx512f");
#else
    int wide = 0;
#endif
    if (width == 8 || (width == 16 && wide)) vector_width = width;
    else if (vector_width == 0) vector_width = wide ? 16 : 8;
    return vector_width;
}

/* x: rows of ldx floats; acc: rows of ldacc floats (ldacc >= width, width a multiple of 8); panels:
 * width * n_in float32 (bf16 = 0) or bfloat16 (bf16 = 1) weights. Panel-major order: one panel's rows
 * col0..col0 + k (64 KiB for k = 1024) stay in cache while every example of the group passes over them. */
void condnet_gathered_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                              int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in,
                              int64_t width, float *acc, int64_t ldacc, int64_t bf16) {
#ifdef HAVE_WIDE
    if ((vector_width ? vector_width : condnet_vector_width(0)) == 16) {
        wide(bf16 != 0, x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc);
        return;
    }
#endif
    narrow(bf16 != 0, x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc);
}
