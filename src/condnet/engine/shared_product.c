/* microkernel.c's product shared between threads by its outputs, without waiting for a sleeping thread
 * to wake: condnet_shared_product takes the arguments of condnet_gathered_product and the number of
 * threads. The engine calls it for a dense layer read by a few examples, whose time is its weights'
 * bytes over the bandwidth: each thread reads the panels of its own chunks of outputs.
 *
 * Why not an OpenMP region (numba's prange): it ends only when every thread of its team has arrived,
 * and a thread asleep between calls (OMP_WAIT_POLICY=PASSIVE, which `condnet bench` sets so that idle
 * threads do not spin) took 20-45 us to wake on an AMD EPYC VM and about 100 us on a Xeon VM, where a
 * 3072 x 640 layer then took as long on two threads as on one (RESULTS 10.17). Here the calling thread
 * starts on the chunks at once; helpers that wake in time take chunks from the same counter; the caller
 * waits for the chunks a helper has taken, never for a helper to wake.
 *
 * One job at a time: a call that finds the helpers busy (another thread of the process is in this
 * function) computes its product alone. Helpers are started at the first call that needs them and sleep
 * on a condition variable between jobs; a child process after fork() starts its own.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

void condnet_gathered_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                              int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in,
                              int64_t width, float *acc, int64_t ldacc, int64_t bf16);

#define CHUNK 32         /* outputs per chunk: two 16-wide panels (the kernel's two-panel step) */
#define MAX_CHUNKS 65535 /* chunks fit 16 bits of the ticket */
#define MAX_HELPERS 63
#if defined(__x86_64__) || defined(__i386__)
#define PAUSE() __builtin_ia32_pause()
#else
#define PAUSE() ((void)0)
#endif

/* The job's arguments: written by the caller before it publishes the job's ticket, read by helpers only
 * after they took one of its chunks, and unchanged until every taken chunk is done. */
static struct {
    const float *x;
    const int64_t *xrows, *accrows;
    const char *panels;
    float *acc;
    int64_t ldx, m, col0, k, n_in, width, ldacc, bf16, chunk;
} job;

/* generation (32 bits) | chunks (16 bits) | next chunk to take (16 bits) */
static _Atomic uint64_t ticket;
static _Atomic int64_t done; /* chunks of the current job computed */
static _Atomic int64_t helped; /* chunks helpers computed since the library was loaded (for tests) */
static atomic_flag busy = ATOMIC_FLAG_INIT;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static uint32_t published;     /* under lock: the generation of the latest job */
static int64_t wanted;         /* under lock: helpers that take part in it (threads - 1) */
static int64_t started;        /* under lock: helpers running */
static uint32_t generation;    /* the caller's (under busy) */
static int fork_handler_set;   /* under lock */

static void compute(int64_t chunk) {
    int64_t lo = chunk * job.chunk, width = job.width - lo < job.chunk ? job.width - lo : job.chunk;
    int64_t bytes_per_output = job.n_in * (job.bf16 ? 2 : 4); /* panels of outputs lo.. start here */
    condnet_gathered_product(job.x, job.ldx, job.xrows, job.accrows, job.m, job.col0, job.k,
                             job.panels + lo * bytes_per_output, job.n_in, width, job.acc + lo, job.ldacc,
                             job.bf16);
}

/* The next chunk of job `gen` nobody has taken, or -1. */
static int64_t take(uint32_t gen) {
    uint64_t t = atomic_load(&ticket);
    for (;;) {
        if ((uint32_t)(t >> 32) != gen || (t & 0xffff) >= ((t >> 16) & 0xffff)) return -1;
        if (atomic_compare_exchange_weak(&ticket, &t, t + 1)) return (int64_t)(t & 0xffff);
    }
}

static void take_part(uint32_t gen, int is_helper) {
    for (int64_t chunk = take(gen); chunk >= 0; chunk = take(gen)) {
        compute(chunk);
        if (is_helper) atomic_fetch_add(&helped, 1);
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
        if (takes_part) take_part(seen, 1);
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

void condnet_shared_product(const float *x, int64_t ldx, const int64_t *xrows, const int64_t *accrows,
                            int64_t m, int64_t col0, int64_t k, const void *panels, int64_t n_in,
                            int64_t width, float *acc, int64_t ldacc, int64_t bf16, int64_t threads) {
    int64_t chunk = CHUNK;
    while ((width + chunk - 1) / chunk > MAX_CHUNKS) chunk *= 2;
    int64_t chunks = (width + chunk - 1) / chunk;
    if (threads < 2 || chunks < 2 || atomic_flag_test_and_set(&busy)) {
        condnet_gathered_product(x, ldx, xrows, accrows, m, col0, k, panels, n_in, width, acc, ldacc, bf16);
        return;
    }
    int64_t helpers = threads - 1 < MAX_HELPERS ? threads - 1 : MAX_HELPERS;
    job.x = x, job.ldx = ldx, job.xrows = xrows, job.accrows = accrows, job.m = m, job.col0 = col0;
    job.k = k, job.panels = panels, job.n_in = n_in, job.width = width, job.acc = acc, job.ldacc = ldacc;
    job.bf16 = bf16, job.chunk = chunk;
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

int64_t condnet_shared_product_helped(void) { return atomic_load(&helped); }
