/* The engine's int8 products for batches: exact int32 sums acc[accrows[r]] += x[xrows[r], col0 : col0 + k]
 * @ B[col0 : col0 + k] for r < m, x the examples' layer inputs quantized to integers of at most 127
 * (kernels.int8_input_bound), B one output block of an int8 layer's weights. Two layouts of B, two
 * products (kernels.block_layer_int8 picks one per CPU; both give the same integers, which are batch
 * 1's):
 * - quads (AVX-512 VNNI, condnet_int8_quads_product): B laid out by condnet.engine.layout.int8_quads,
 *   panels of 16 outputs (the last one 8 wide when width is 8 mod 16) whose rows hold each output's
 *   weights of 4 consecutive inputs as unsigned bytes (w + 128), x signed bytes. vpdpbusd multiplies
 *   unsigned by signed bytes and adds each group of 4 into a 32-bit sum: 64 multiply-adds per
 *   instruction (float32's FMA: 16), weights used as they are read. It adds 128 x sum(x) besides, which
 *   the caller takes off once per example.
 * - pairs (AVX2 and any other CPU, condnet_int8_product): B laid out by layout.int8_panels, rows of each
 *   output's weights of 2 consecutive inputs, x int16. vpmaddwd multiplies 16-bit integers in pairs
 *   and adds each pair into a 32-bit lane (AVX2 has no 8-bit product that does not saturate: vpmaddubsw's
 *   16-bit sums overflow with 8-bit weights).
 * n_in, col0 and k are multiples of 4 (quads) or 2 (pairs): layout pads each input block with zero
 * weights, kernels.py the inputs with zeros. The batch-1 product (int8_dots.c) reads the same weights
 * as rows of tiles instead.
 *
 * Versions picked at load: AMX (quads: a quad row of a 16-wide panel is a row of an AMX weight tile;
 * groups of 8 or more examples, up to 16 at a time, by tdpbsud; input blocks under 64, narrow panels
 * and smaller groups by VNNI), AVX-512 VNNI (quads; a 16-wide panel is one register, 12 examples
 * per step), AVX2 (pairs; 6 examples x 16 outputs), portable C (both). `condnet_int8_path` reads or
 * switches the choice, so that tests run every version the CPU has. Intrinsics under target attributes
 * rather than target_clones: GCC's generic vectors have no byte or pairwise multiply-add.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PANEL 16

enum { PORTABLE = 1, AVX2 = 2, VNNI = 3, AMX = 4 };
static int path = 0; /* 0: not decided yet */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Pairs: one panel of `pw` outputs (16 or 8), portable (the tests check every version against numpy). */
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

/* Every example of the group times one panel, in steps of equal size (as quads_vnni). */
ON_AVX2 static void panel_avx2(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                               int64_t m, int64_t col0, int64_t k, const int8_t *panel, int pw, int32_t *acc,
                               int64_t ldacc) {
    int64_t steps = (m + AVX2_ROWS - 1) / AVX2_ROWS;
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

/* Quads (condnet_int8_quads_product): `rows` examples times one panel of `pw` (16 or 8) outputs, whose
 * rows hold each output's 4 weights of 4 consecutive inputs as unsigned bytes (w + 128); an example's 4
 * inputs (signed bytes) are one 32-bit broadcast. vpdpbusd multiplies unsigned by signed bytes and adds
 * each group of 4 into a 32-bit sum: 64 multiply-adds per instruction, from weights read as they are
 * stored (no widening). A sum waits about 5 cycles for its previous vpdpbusd, so fewer than about 10
 * examples would leave the unit idle: consecutive quads then alternate between `split` sets of sums,
 * added at the end (in the 16-bit VNNI product this one replaced, 2 and 4 examples over 3072 x 640 took
 * 103 us without, 61 and 80 with: RESULTS 10.18). */
#define QUAD_STEP(VEC, LOAD, STORE, ZERO, DOT, SET1)                                                        \
    const int split = rows >= 7 ? 1 : (rows >= 5 ? 2 : (rows == 4 ? 3 : 4));                               \
    VEC sum[VNNI_ROWS];                                                                                    \
    const int8_t *in[VNNI_ROWS];                                                                           \
    _Pragma("GCC unroll 12") for (int r = 0; r < VNNI_ROWS; r++) {                                          \
        if (r < rows) {                                                                                    \
            in[r] = x + xrows[r] * ldx + col0;                                                             \
            sum[r] = LOAD(acc + accrows[r] * ldacc);                                                       \
        } else if (r < rows * split) {                                                                     \
            sum[r] = ZERO();                                                                               \
        }                                                                                                  \
    }                                                                                                      \
    int64_t p = 0, quads = k / 4;                                                                          \
    for (; p + split <= quads; p += split) {                                                               \
        __builtin_prefetch(panel + (p + 64) * 4 * pw);                                                     \
        _Pragma("GCC unroll 4") for (int u = 0; u < split; u++) {                                          \
            VEC w = LOAD(panel + (p + u) * 4 * pw);                                                        \
            _Pragma("GCC unroll 12") for (int r = 0; r < VNNI_ROWS; r++) {                                  \
                if (r < rows) sum[u * rows + r] = DOT(sum[u * rows + r], w, SET1(input_quad(in[r], p + u))); \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
    for (; p < quads; p++) { /* the quads left over by the split */                                        \
        VEC w = LOAD(panel + p * 4 * pw);                                                                  \
        _Pragma("GCC unroll 12") for (int r = 0; r < VNNI_ROWS; r++) {                                      \
            if (r < rows) sum[r] = DOT(sum[r], w, SET1(input_quad(in[r], p)));                             \
        }                                                                                                  \
    }                                                                                                      \
    _Pragma("GCC unroll 12") for (int r = 0; r < VNNI_ROWS; r++) {                                          \
        if (r < rows) {                                                                                    \
            for (int u = 1; u < split; u++) sum[r] = ADD(sum[r], sum[u * rows + r]);                       \
            STORE(acc + accrows[r] * ldacc, sum[r]);                                                       \
        }                                                                                                  \
    }

ALWAYS_INLINE int32_t input_quad(const int8_t *in, int64_t p) {
    int32_t quad;
    memcpy(&quad, in + 4 * p, 4);
    return quad;
}

#define LOAD512(a) _mm512_loadu_si512((const void *)(a))
#define STORE512(a, v) _mm512_storeu_si512((void *)(a), v)
#define LOAD256(a) _mm256_loadu_si256((const __m256i *)(a))
#define STORE256(a, v) _mm256_storeu_si256((__m256i *)(a), v)

ON_VNNI ALWAYS_INLINE void quad_step16(int rows, const int8_t *x, int64_t ldx, const int64_t *xrows,
                                       const int64_t *accrows, int64_t col0, int64_t k, const uint8_t *panel,
                                       int32_t *acc, int64_t ldacc) {
    const int pw = 16;
#define ADD _mm512_add_epi32
    QUAD_STEP(__m512i, LOAD512, STORE512, _mm512_setzero_si512, _mm512_dpbusd_epi32, _mm512_set1_epi32)
#undef ADD
}

ON_VNNI ALWAYS_INLINE void quad_step8(int rows, const int8_t *x, int64_t ldx, const int64_t *xrows,
                                      const int64_t *accrows, int64_t col0, int64_t k, const uint8_t *panel,
                                      int32_t *acc, int64_t ldacc) {
    const int pw = 8;
#define ADD _mm256_add_epi32
    QUAD_STEP(__m256i, LOAD256, STORE256, _mm256_setzero_si256, _mm256_dpbusd_epi32, _mm256_set1_epi32)
#undef ADD
}

ON_VNNI static void quads_vnni(const int8_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                               int64_t m, int64_t col0, int64_t k, const uint8_t *panel, int pw, int32_t *acc,
                               int64_t ldacc) {
    /* steps of equal size: 50 examples as 5 x 10, where 4 x 12 + 2 left a latency-bound step of 2 */
    int64_t steps = (m + VNNI_ROWS - 1) / VNNI_ROWS;
    for (int64_t s = 0, r = 0; s < steps; s++) {
        int64_t rest = (m - r) / (steps - s);
#define STEP(n)                                                                                            \
    if (pw == PANEL) quad_step16(n, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc);           \
    else quad_step8(n, x, ldx, xrows + r, accrows + r, col0, k, panel, acc, ldacc)
        if (rest == VNNI_ROWS) {
            STEP(VNNI_ROWS);
        } else {
            REMAINDER_CASES(STEP)
        }
#undef STEP
        r += rest;
    }
}

/* AMX: tiles of 16 rows of 64 bytes. A weight tile (B) is 16 quad rows of a 16-wide panel (64 inputs x
 * 16 outputs, as layout.int8_quads stores them); an input tile (A) 16 examples' 64 signed input bytes,
 * gathered into a buffer of this thread (a tile loads rows at one stride); tdpbsud adds signed x unsigned
 * products of 4 into 16 x 16 int32 sums: 16,384 multiply-adds an instruction, the same integers as
 * vpdpbusd's. Up to 4 panels (C tiles 0-3) share each input tile. Inputs past the last multiple of 64
 * (784 = 12 x 64 + 16) run on two more tiles of their own width (6: inputs, 7: weights), in the same pass:
 * a separate VNNI pass over every example's sums for them cost more than the tiles' 48 missing inputs
 * (RESULTS 10.22). */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11)
#define HAVE_AMX 1 /* compilers from these know AMX's intrinsics */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ON_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define AMX_ROWS 16
#define AMX_MIN_ROWS 8 /* with fewer examples VNNI was as fast or faster (4: 1.18x AMX's time; RESULTS 10.21) */
#define AMX_PANELS 4

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static __thread int8_t *gathered = NULL; /* the input tiles' rows of this thread, grown as needed */
static __thread size_t gathered_size = 0;
static pthread_key_t gathered_key; /* frees a thread's buffer when the thread ends */
static pthread_once_t gathered_key_made = PTHREAD_ONCE_INIT;

static void make_gathered_key(void) { pthread_key_create(&gathered_key, free); }

static int8_t *gather_buffer(size_t size) {
    if (size > gathered_size) {
        free(gathered);
        gathered = aligned_alloc(64, (size + 63) / 64 * 64);
        gathered_size = gathered ? size : 0;
        pthread_once(&gathered_key_made, make_gathered_key);
        pthread_setspecific(gathered_key, gathered);
    }
    return gathered;
}

/* Sum tiles 0..n-1 += input tile A x the weight tiles of the set's n panels from input i, each loaded in
 * turn into tile W (b, stride and n: quads_amx's panel set). A macro: tile numbers must be constants. */
#define TIMES_PANELS(A, W, i)                                                                            \
    do {                                                                                                 \
        _tile_loadd(W, b + (i) * PANEL, 64);                                                             \
        _tile_dpbsud(0, A, W);                                                                           \
        if (n > 1) {                                                                                     \
            _tile_loadd(W, b + stride + (i) * PANEL, 64);                                                \
            _tile_dpbsud(1, A, W);                                                                       \
        }                                                                                                \
        if (n > 2) {                                                                                     \
            _tile_loadd(W, b + 2 * stride + (i) * PANEL, 64);                                            \
            _tile_dpbsud(2, A, W);                                                                       \
        }                                                                                                \
        if (n > 3) {                                                                                     \
            _tile_loadd(W, b + 3 * stride + (i) * PANEL, 64);                                            \
            _tile_dpbsud(3, A, W);                                                                       \
        }                                                                                                \
    } while (0)

/* The 16-wide panels' product on tiles; returns 0, having done nothing, when this thread's buffer cannot
 * grow (the caller then runs VNNI's, which needs none). */
ON_AMX static int quads_amx(const int8_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                            int64_t m, int64_t col0, int64_t k, const uint8_t *panels, int64_t n_in,
                            int64_t full_panels, int32_t *acc, int64_t ldacc) {
    int64_t groups = (m + AMX_ROWS - 1) / AMX_ROWS, on_tiles = k / 64 * 64, tail = k - on_tiles;
    int8_t *a = gather_buffer((size_t)(groups * AMX_ROWS * k));
    if (a == NULL) return 0;
    for (int64_t r = 0; r < groups * AMX_ROWS; r++) { /* rows past m are zeros: their sums are not read */
        if (r < m) memcpy(a + r * k, x + xrows[r] * ldx + col0, (size_t)k);
        else memset(a + r * k, 0, (size_t)k);
    }
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 6; t++) { /* tiles 0-3: sums; 4: inputs (A); 5: weights (B) */
        config.colsb[t] = 64;
        config.rows[t] = AMX_ROWS;
    }
    if (tail > 0) { /* 6: the last inputs (A, tail bytes a row); 7: their weights (B, a quad row each) */
        config.colsb[6] = (uint16_t)tail;
        config.rows[6] = AMX_ROWS;
        config.colsb[7] = 64;
        config.rows[7] = (uint8_t)(tail / 4);
    }
    _tile_loadconfig(&config);
    int32_t sums[AMX_PANELS][AMX_ROWS][PANEL];
    for (int64_t first = 0; first < full_panels; first += AMX_PANELS) {
        int n = full_panels - first < AMX_PANELS ? (int)(full_panels - first) : AMX_PANELS;
        const uint8_t *b = panels + first * PANEL * n_in + col0 * PANEL; /* panel j: b + j * PANEL * n_in */
        int64_t stride = PANEL * n_in;
        for (int64_t g = 0; g < groups; g++) {
            const int8_t *rows = a + g * AMX_ROWS * k;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int64_t i = 0; i < on_tiles; i += 64) { /* a quad row is 64 bytes: input i's at i * 16 */
                _tile_loadd(4, rows + i, k);
                TIMES_PANELS(4, 5, i);
            }
            if (tail > 0) {
                _tile_loadd(6, rows + on_tiles, k);
                TIMES_PANELS(6, 7, on_tiles);
            }
            _tile_stored(0, sums[0], 64);
            _tile_stored(1, sums[1], 64);
            _tile_stored(2, sums[2], 64);
            _tile_stored(3, sums[3], 64);
            int64_t in_group = m - g * AMX_ROWS < AMX_ROWS ? m - g * AMX_ROWS : AMX_ROWS;
            for (int j = 0; j < n; j++) {
                for (int64_t r = 0; r < in_group; r++) {
                    int32_t *out = acc + accrows[g * AMX_ROWS + r] * ldacc + (first + j) * PANEL;
                    __m512i total = _mm512_add_epi32(LOAD512(out), LOAD512(sums[j][r]));
                    STORE512(out, total);
                }
            }
        }
    }
    _tile_release();
    return 1;
}
#undef TIMES_PANELS

/* Whether this process may use AMX: the CPU has its tiles and int8 products (CPUID leaf 7: EDX bits 24
 * and 25) and Linux lets it use their state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA; Linux
 * 5.16 and later). The permission holds for the whole process and its forked children. */
#include <cpuid.h>
static int amx_usable(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !((edx >> 24) & 1) || !((edx >> 25) & 1)) return 0;
#ifdef SYS_arch_prctl
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return 0;
#endif
}
#else
static int amx_usable(void) { return 0; }
#endif
#endif

static int cpu_path(void) {
#ifdef HAVE_VECTORS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        return amx_usable() ? AMX : VNNI;
    if (__builtin_cpu_supports("avx2")) return AVX2;
#endif
    return PORTABLE;
}

/* The version in use: 4 AMX, 3 AVX-512 VNNI, 2 AVX2, 1 portable. `choice` 1-4 switches to that version
 * for this process where the CPU has it (tests and benchmarks run each on one machine); 0 only reads it. */
int condnet_int8_path(int choice) {
    static int best = 0; /* asked once: AMX's permission is a system call */
    if (best == 0) best = cpu_path();
    if (choice >= PORTABLE && choice <= best) path = choice;
    else if (path == 0) path = best;
    return path;
}

/* The pairs product (see the top). */
void condnet_int8_product(const int16_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                          int64_t m, int64_t col0, int64_t k, const int8_t *panels, int64_t n_in,
                          int64_t width, int32_t *acc, int64_t ldacc) {
    int version = path ? path : condnet_int8_path(0);
    for (int64_t o = 0; o < width; o += PANEL) {
        int pw = width - o >= PANEL ? PANEL : 8;
        const int8_t *panel = panels + o * n_in + col0 * pw;
#ifdef HAVE_VECTORS
        if (version >= AVX2) { /* a CPU with VNNI has AVX2 */
            panel_avx2(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
            continue;
        }
#endif
        panel_portable(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
    }
}

/* The quads product, portable: any CPU (the engine uses quads only where VNNI is; tests use this). */
static void quads_portable(const int8_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                           int64_t m, int64_t col0, int64_t k, const uint8_t *panel, int pw, int32_t *acc,
                           int64_t ldacc) {
    for (int64_t r = 0; r < m; r++) {
        const int8_t *in = x + xrows[r] * ldx + col0;
        int32_t *out = acc + accrows[r] * ldacc;
        for (int64_t p = 0; p < k / 4; p++) {
            const uint8_t *row = panel + p * 4 * pw;
            for (int o = 0; o < pw; o++)
                for (int a = 0; a < 4; a++) out[o] += row[4 * o + a] * in[4 * p + a];
        }
    }
}

/* acc[accrows[r]] += x[xrows[r], col0 : col0 + k] @ B[col0 : col0 + k] + 128 * sum(x[xrows[r], col0 : col0
 * + k]) for r < m, in int32: x signed bytes (inputs of at most 127 in magnitude), B one output block laid
 * out by layout.int8_quads (panels of 16 outputs, the last one 8 wide; rows of each output's 4 weights of
 * 4 consecutive inputs, stored as w + 128); n_in, col0 and k multiples of 4. The caller takes the 128 x
 * sum of each example's inputs off once. AMX where the version in use is 4 (the 16-wide panels of 64
 * inputs or more, in groups of AMX_MIN_ROWS or more), AVX-512 VNNI where it is 3 or 4 (the rest), else
 * portable. */
void condnet_int8_quads_product(const int8_t *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                                int64_t m, int64_t col0, int64_t k, const uint8_t *panels, int64_t n_in,
                                int64_t width, int32_t *acc, int64_t ldacc) {
    int version = path ? path : condnet_int8_path(0);
#ifdef HAVE_AMX
    int64_t full_panels = width / PANEL;
    if (version == AMX && m >= AMX_MIN_ROWS && k >= 64 && full_panels > 0 &&
        quads_amx(x, ldx, xrows, accrows, m, col0, k, panels, n_in, full_panels, acc, ldacc)) {
        if (full_panels * PANEL < width) /* a last panel 8 wide */
            quads_vnni(x, ldx, xrows, accrows, m, col0, k, panels + full_panels * PANEL * n_in + col0 * 8, 8,
                       acc + full_panels * PANEL, ldacc);
        return;
    }
#endif
    for (int64_t o = 0; o < width; o += PANEL) {
        int pw = width - o >= PANEL ? PANEL : 8;
        const uint8_t *panel = panels + o * n_in + col0 * pw;
#ifdef HAVE_VECTORS
        if (version >= VNNI) {
            quads_vnni(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
            continue;
        }
#endif
        quads_portable(x, ldx, xrows, accrows, m, col0, k, panel, pw, acc + o, ldacc);
    }
}
