/* microkernel.c's products shared between threads without waiting for a sleeping thread to wake. Two
 * jobs, each cut into chunks:
 * - condnet_shared_product: one product (condnet_gathered_product's arguments, and the number of
 *   threads) by chunks of its outputs: a dense layer read by a few examples, whose time is its weights'
 *   bytes over the bandwidth, so each thread reads the panels of its own chunks;
 * - condnet_block_products: a gated layer's products by output blocks (a chunk: one output block, for
 *   the examples that switched it on, over their active input blocks; what kernels._output_block
 *   computes before its rows are finished).
 *
 * Why not an OpenMP region (numba's prange): it ends only when every thread of its team has arrived,
 * and a thread asleep between calls (OMP_WAIT_POLICY=PASSIVE, which `condnet bench` sets so that idle
 * threads do not spin) took 20-45 us to wake on an AMD EPYC VM and about 100 us on a Xeon VM, where a
 * 3072 x 640 layer then took as long on two threads as on one (RESULTS 10.17). Here the calling thread
 * starts on the chunks at once; helpers that wake in time take chunks from the same counter; the caller
 * waits for the chunks a helper has taken, never for a helper to wake.
 *
 * One job at a time: a call that finds the helpers busy (another thread of the process is in this
 * file) computes its chunks alone. Helpers are started at the first call that needs them and sleep on a
 * condition variable between jobs; a child process after fork() starts its own.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

void condnet_gathered_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                              int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in,
                              int64_t width, float *acc, int64_t ldacc, int64_t bf16);

#define CHUNK 32         /* outputs per chunk of one product: two 16-wide panels (the two-panel step) */
#define MAX_CHUNKS 65535 /* chunks fit 16 bits of the ticket */
#define MAX_HELPERS 63
#if defined(__x86_64__) || defined(__i386__)
#define PAUSE() __builtin_ia32_pause()
#else
#define PAUSE() ((void)0)
#endif

/* chunk `chunk` of the job whose arguments `context` points to; participant: 0 the caller, k > 0 the
 * k-th helper (an index into per-participant scratch) */
typedef void (*chunk_function)(const void *context, int64_t chunk, int64_t participant);

/* The job: written by the caller before it publishes the job's ticket, read by helpers only after they
 * took one of its chunks, and unchanged (as what `context` points to, on the caller's stack) until every
 * taken chunk is done. */
static struct {
    chunk_function compute;
    const void *context;
} job;

/* generation (32 bits) | chunks (16 bits) | next chunk to take (16 bits) */
static _Atomic uint64_t ticket;
static _Atomic int64_t done;   /* chunks of the current job computed */
static _Atomic int64_t helped; /* chunks helpers computed since the library was loaded (for tests) */
static atomic_flag busy = ATOMIC_FLAG_INIT;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static uint32_t published;   /* under lock: the generation of the latest job */
static int64_t wanted;       /* under lock: helpers that take part in it (threads - 1) */
static int64_t started;      /* under lock: helpers running */
static uint32_t generation;  /* the caller's (under busy) */
static int fork_handler_set; /* under lock */

/* The next chunk of job `gen` nobody has taken, or -1. */
static int64_t take(uint32_t gen) {
    uint64_t t = atomic_load(&ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen || (t & 0xffff) >= ((t >> 16) & 0xffff)) return -1;
        if (atomic_compare_exchange_weak(&ticket, &t, t + 1)) return (int64_t)(t & 0xffff);
    }
}

static void take_part(uint32_t gen, int64_t participant) {
    for (int64_t chunk = take(gen); chunk >= 0; chunk = take(gen)) {
        job.compute(job.context, chunk, participant);
        if (participant) atomic_fetch_add(&helped, 1);
        atomic_fetch_add(&done, 1);
    }
}

static void *helper(void *index_as_pointer) {
    int64_t index = (int64_t)(intptr_t)index_as_pointer;
    uint32_t seen = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (published == seen) pthread_cond_wait(&wake, &lock);
        seen = published;
        int takes_part = index < wanted;
        pthread_mutex_unlock(&lock);
        if (takes_part) take_part(seen, index + 1);
        pthread_mutex_lock(&lock);
    }
    return 0;
}

/* In a forked child only the forking thread exists: forget the parent's helpers. */
static void after_fork_in_child(void) {
    pthread_mutex_init(&lock, 0);
    pthread_cond_init(&wake, 0);
    started = 0;
    atomic_store(&ticket, 0); /* a job of the parent's caller is no job here */
    atomic_flag_clear(&busy);
}

/* Under lock: start helpers until `count` run (fewer if the system refuses a thread). */
static void start_helpers(int64_t count) {
    if (!fork_handler_set) fork_handler_set = pthread_atfork(0, 0, after_fork_in_child) == 0;
    while (started < count) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, helper, (void *)(intptr_t)started);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        started++;
    }
}

/* compute(context, c, participant) for every chunk c < chunks, on up to `threads` threads (participants
 * 0 .. threads - 1). */
static void share(chunk_function compute, const void *context, int64_t chunks, int64_t threads) {
    if (threads < 2 || chunks < 2 || chunks > MAX_CHUNKS || atomic_flag_test_and_set(&busy)) {
        for (int64_t chunk = 0; chunk < chunks; chunk++) compute(context, chunk, 0);
        return;
    }
    int64_t helpers = threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS;
    job.compute = compute, job.context = context;
    atomic_store(&done, 0);
    uint32_t gen = ++generation ? generation : ++generation; /* 0 is no job's: helpers start at 0 */
    atomic_store(&ticket, (uint64_t)gen << 32 | (uint64_t)chunks << 16);
    pthread_mutex_lock(&lock);
    start_helpers(helpers);
    published = gen, wanted = helpers;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    take_part(gen, 0);
    while (atomic_load(&done) < chunks) PAUSE(); /* only chunks a helper is computing */
    atomic_flag_clear(&busy);
}

/* One product by chunks of its outputs. */
typedef struct {
    const float *x;
    const int64_t *xrows, *accrows;
    const char *panels;
    float *acc;
    int64_t ldx, m, col0, k, n_in, width, ldacc, bf16, chunk;
} product_job;

static void product_chunk(const void *context, int64_t chunk, int64_t participant) {
    const product_job *p = context;
    (void)participant;
    int64_t lo = chunk * p->chunk, width = p->width - lo < p->chunk ? p->width - lo : p->chunk;
    int64_t bytes_per_output = p->n_in * (p->bf16 ? 2 : 4); /* panels of outputs lo.. start here */
    condnet_gathered_product(p->x, p->ldx, p->xrows, p->accrows, p->m, p->col0, p->k,
                             p->panels + lo * bytes_per_output, p->n_in, width, p->acc + lo, p->ldacc,
                             p->bf16);
}

void condnet_shared_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                            int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in,
                            int64_t width, float *acc, int64_t ldacc, int64_t bf16, int64_t threads) {
    int64_t chunk = CHUNK;
    while ((width + chunk - 1) / chunk > MAX_CHUNKS) chunk *= 2;
    product_job p = {.x = x, .xrows = xrows, .accrows = accrows, .panels = panels, .acc = acc, .ldx = ldx,
                     .m = m, .col0 = col0, .k = k, .n_in = n_in, .width = width, .ldacc = ldacc, .bf16 = bf16,
                     .chunk = chunk};
    share(product_chunk, &p, (width + chunk - 1) / chunk, threads);
}

/* A gated layer's products by output blocks. */
typedef struct {
    const float *x;
    const uint8_t *in_mask, *out_mask;
    const char *panels;
    float *acc;
    int64_t *scratch;
    int64_t ldx, ld_in, ld_out, batch, n_in_blocks, bs_in, n_in, width, block_bytes, bf16;
} blocks_job;

static void block_chunk(const void *context, int64_t j, int64_t participant) {
    const blocks_job *p = context;
    int64_t *rows = p->scratch + participant * 3 * p->batch; /* this participant's: rows, xrows, accrows */
    int64_t *xrows = rows + p->batch, *accrows = xrows + p->batch;
    int64_t n = 0;
    for (int64_t b = 0; b < p->batch; b++)
        if (p->out_mask[b * p->ld_out + j]) rows[n++] = b;
    float *acc = p->acc + j * p->batch * p->width;
    memset(acc, 0, (size_t)(n * p->width) * sizeof(float));
    for (int64_t i = 0; i < p->n_in_blocks; i++) {
        int64_t m = 0; /* examples of this group whose input block i is on */
        for (int64_t e = 0; e < n; e++)
            if (p->in_mask[rows[e] * p->ld_in + i]) xrows[m] = rows[e], accrows[m++] = e;
        if (m > 0)
            condnet_gathered_product(p->x, p->ldx, xrows, accrows, m, i * p->bs_in, p->bs_in,
                                     p->panels + j * p->block_bytes, p->n_in, p->width, acc, p->width,
                                     p->bf16);
    }
}

/* For each output block j and the examples e whose block j is on (in order), acc[j, e'] = the sums of
 * their products with the tiles (j, i) of their active input blocks i, e' counting those examples from
 * 0. x: rows of ldx floats; in_mask, out_mask: uint8 rows of ld_in, ld_out bytes; panels: n_out_blocks
 * runs of block_bytes (layout.to_panels); acc: n_out_blocks x batch x width floats; scratch: threads x 3
 * x batch int64. */
void condnet_block_products(const float *x, int64_t ldx, const uint8_t *in_mask, int64_t ld_in,
                            const uint8_t *out_mask, int64_t ld_out, int64_t batch, int64_t n_in_blocks,
                            int64_t n_in, int64_t n_out_blocks, int64_t width, const void *panels,
                            int64_t block_bytes, float *acc, int64_t bf16, int64_t *scratch,
                            int64_t threads) {
    blocks_job p = {.x = x, .in_mask = in_mask, .out_mask = out_mask, .panels = panels, .acc = acc,
                    .scratch = scratch, .ldx = ldx, .ld_in = ld_in, .ld_out = ld_out, .batch = batch,
                    .n_in_blocks = n_in_blocks, .bs_in = n_in / n_in_blocks, .n_in = n_in, .width = width,
                    .block_bytes = block_bytes, .bf16 = bf16};
    share(block_chunk, &p, n_out_blocks, threads);
}

int64_t condnet_shared_product_helped(void) { return atomic_load(&helped); }
