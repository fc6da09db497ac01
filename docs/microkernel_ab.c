/* Two or more builds of the engine's micro-kernel (src/condnet/engine/microkernel.c) side by side in one
 * process, rounds interleaved, medians: the product of m examples with one output block of `width`
 * outputs over k inputs, as the engine calls it. `blocks` > 1 cycles through that many blocks' weights
 * (a layer whose tiles stream from L3 or memory, as in a gated first layer); 1 reuses one (from cache).
 * With BF16=1 in the environment the weights are bfloat16 (the upper halves of the same floats).
 * Usage (docs/microkernel_ab.sh builds and runs it): microkernel_ab M K WIDTH BLOCKS LIB.so... */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*product_fn)(const float *, int64_t, const int64_t *, const int64_t *, int64_t, int64_t, int64_t,
                           const void *, int64_t, int64_t, float *, int64_t, int64_t);
enum { ROUNDS = 31, MAX_LIBS = 8 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *random_floats(int64_t n) {
    float *v = aligned_alloc(64, (n * 4 + 63) / 64 * 64);
    for (int64_t i = 0; i < n; i++) v[i] = rand() / (float)RAND_MAX - 0.5f;
    return v;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s M K WIDTH BLOCKS LIB.so...\n", argv[0]);
        return 2;
    }
    int64_t m = atoll(argv[1]), k = atoll(argv[2]), width = atoll(argv[3]), blocks = atoll(argv[4]);
    int libs = argc - 5 < MAX_LIBS ? argc - 5 : MAX_LIBS;
    product_fn product[MAX_LIBS];
    for (int i = 0; i < libs; i++) {
        void *handle = dlopen(argv[5 + i], RTLD_NOW | RTLD_LOCAL);
        if (!handle || !(product[i] = (product_fn)dlsym(handle, "condnet_gathered_product"))) {
            fprintf(stderr, "cannot load %s: %s\n", argv[5 + i], dlerror());
            return 1;
        }
    }
    float *x = random_floats(m * k), *panels = random_floats(blocks * width * k), *acc = random_floats(m * width);
    int bf16 = getenv("BF16") && atoi(getenv("BF16"));
    int64_t bytes = bf16 ? 2 : 4; /* per weight */
    if (bf16) /* in place, front to back: element i of the bf16 array is read before it is written */
        for (int64_t i = 0; i < blocks * width * k; i++) {
            uint32_t bits = *(uint32_t *)(panels + i);
            ((uint16_t *)panels)[i] = (uint16_t)(bits >> 16);
        }
    int64_t *rows = malloc((m + 1) * sizeof(int64_t));
    for (int64_t r = 0; r < m; r++) rows[r] = r;
    int64_t repeats = 20000000 / (m * k * width / 16 + 1) / blocks + 1; /* ~20 M multiply-adds a round */
    double t[MAX_LIBS][ROUNDS];
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < libs; i++) {
            double start = now();
            for (int64_t r = 0; r < repeats; r++)
                for (int64_t b = 0; b < blocks; b++)
                    product[i](x, k, rows, rows, m, 0, k, (char *)panels + b * width * k * bytes, k, width, acc,
                               width, bf16);
            t[i][round] = (now() - start) / repeats / blocks;
        }
    printf("m %4lld, k %5lld, width %4lld, %s%s:", (long long)m, (long long)k, (long long)width,
           blocks > 1 ? "streamed" : "in cache", bf16 ? ", bf16" : "");
    for (int i = 0; i < libs; i++) {
        qsort(t[i], ROUNDS, sizeof(double), by_value);
        double median = t[i][ROUNDS / 2];
        printf("  %.2f us (%.0f GMAC/s, %.1f GB/s)", 1e6 * median, m * k * width / median / 1e9,
               width * k * bytes / median / 1e9);
        if (i > 0) printf(" x%.2f", t[0][ROUNDS / 2] / median);
    }
    printf("\n");
    return 0;
}
