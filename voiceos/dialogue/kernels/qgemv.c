// Matrix-vector products straight from GGUF Q4_1 / Q8_0 blocks, in float32 arithmetic (voiceos/dialogue/blocks.py),
// and (qgemm, at the end) products over a few tokens from the blocks dequantized tile by tile.
// Built with -march=native on the machine that runs it: AVX-512 where the CPU has it, else AVX2 + FMA + F16C.
// Only the product of one block's 32 quants with 32 floats of x differs between the two; the loops are shared.
#include <stdint.h>
#include <string.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline float half_to_float(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return _cvtsh_ss(h); }

#if defined(__AVX512F__)
typedef __m512 vec;
#define vec_zero _mm512_setzero_ps
#define vec_set1 _mm512_set1_ps
#define vec_fmadd _mm512_fmadd_ps
#define vec_sum _mm512_reduce_add_ps
#define LANES 16
#define vec_load _mm512_loadu_ps
#define vec_mul _mm512_mul_ps
#define vec_add _mm512_add_ps
static inline vec u8_to_vec(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)); }
static inline vec i8_to_vec(__m128i q) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)); }

// sum(q * x) over a block, lanes not yet added: q as 16 low nibbles (elements 0-15) and 16 high ones (16-31)
static inline vec dot_q4(__m128i lo, __m128i hi, const float *xb) {
    vec t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), _mm512_loadu_ps(xb));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), _mm512_loadu_ps(xb + 16), t);
}

// the same for 32 signed bytes, in two halves of 16
static inline vec dot_q8(__m128i q0, __m128i q1, const float *xb) {
    vec t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(xb));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(xb + 16), t);
}
#else
typedef __m256 vec;
#define vec_zero _mm256_setzero_ps
#define vec_set1 _mm256_set1_ps
#define vec_fmadd _mm256_fmadd_ps
#define LANES 8
#define vec_load _mm256_loadu_ps
#define vec_mul _mm256_mul_ps
#define vec_add _mm256_add_ps
static inline vec u8_to_vec(__m128i q) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q)); }
static inline vec i8_to_vec(__m128i q) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)); }

static inline float vec_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// the same two products as the AVX-512 ones, 8 lanes at a time
static inline vec dot_q4(__m128i lo, __m128i hi, const float *xb) {
    vec t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(xb));
    t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8), t);
    t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(xb + 16), t);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(xb + 24), t);
}

static inline vec dot_q8(__m128i q0, __m128i q1, const float *xb) {
    vec t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q0)), _mm256_loadu_ps(xb));
    t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q0, 8))), _mm256_loadu_ps(xb + 8), t);
    t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q1)), _mm256_loadu_ps(xb + 16), t);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q1, 8))), _mm256_loadu_ps(xb + 24), t);
}
#endif

// Q4_1 block: half d, half m, 16 bytes (low nibble = element j, high nibble = element j + 16); w = d * q + m
static float row_q4_1(const uint8_t *row, const float *x, const float *xsum, int nblocks) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    vec acc = vec_zero();
    float msum = 0.0f;
    for (int b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + 20 * b;
        __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 4));
        __m128i lo = _mm_and_si128(raw, mask);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
        acc = vec_fmadd(vec_set1(half_to_float(blk)), dot_q4(lo, hi, x + 32 * b), acc);
        msum += half_to_float(blk + 2) * xsum[b];
    }
    return vec_sum(acc) + msum;
}

// Q8_0 block: half d, 32 int8; w = d * q
static float row_q8_0(const uint8_t *row, const float *x, int nblocks) {
    vec acc = vec_zero();
    for (int b = 0; b < nblocks; b++) {
        const uint8_t *blk = row + 34 * b;
        __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
        __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
        acc = vec_fmadd(vec_set1(half_to_float(blk)), dot_q8(q0, q1, x + 32 * b), acc);
    }
    return vec_sum(acc);
}

// ---- threads: a tiny pool of its own, not OpenMP. A token's ~120 products are ~50 us each, so a worker must be
// awake when the next one comes. OpenMP's idle workers stop spinning after ~100 polls once the process has more
// OpenMP threads than CPUs, which happens as soon as Whisper (CTranslate2) or a second Python thread uses OpenMP:
// every product then waits for a sleeping worker, and decoding ran 2x slower. These workers poll for SPIN_NS after
// their last job, then sleep on a condition variable (an idle process costs nothing after that).
typedef void (*range_fn)(const void *job, int start, int end);

#define MAX_WORKERS 63
#define SPIN_NS 2000000L

static struct {
    pthread_mutex_t caller;  // one caller at a time; a concurrent caller runs its job alone
    pthread_mutex_t lock;    // with `wake`: for workers that went to sleep
    pthread_cond_t wake;
    atomic_uint generation;  // one more per job
    atomic_int pending;      // workers that have not finished the current job
    int workers, parts, total;
    range_fn fn;
    const void *job;
} pool = {.caller = PTHREAD_MUTEX_INITIALIZER, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

typedef struct { int index; unsigned seen; } worker_start;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

// part `part` of `parts` contiguous ranges over [0, total), as OpenMP's static schedule cuts them
static void run_part(int part) {
    int per = (pool.total + pool.parts - 1) / pool.parts, start = part * per, end = start + per;
    if (end > pool.total) end = pool.total;
    if (start < end) pool.fn(pool.job, start, end);
}

static void *worker_main(void *arg) {
    worker_start me = *(worker_start *)arg;
    free(arg);
    long until = now_ns() + SPIN_NS;  // polls until then after its last part of a job, then sleeps
    for (;;) {
        unsigned generation;
        for (int polls = 1; (generation = atomic_load_explicit(&pool.generation, memory_order_acquire)) == me.seen;
             polls++) {
            _mm_pause();
            if (polls % 256 == 0 && now_ns() > until) {
                pthread_mutex_lock(&pool.lock);
                while ((generation = atomic_load(&pool.generation)) == me.seen) pthread_cond_wait(&pool.wake, &pool.lock);
                pthread_mutex_unlock(&pool.lock);
                break;
            }
        }
        me.seen = generation;
        run_part(me.index);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
        until = now_ns() + SPIN_NS;
    }
    return NULL;
}

// in a forked child: the workers did not come along, and a lock another thread held stays held
static void forget_workers(void) {
    pool.workers = 0;
    pthread_mutex_init(&pool.caller, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
}

// fn(job, start, end) over [0, total) cut into contiguous ranges, one for this thread and one per worker (started up
// to `threads` - 1, at most one per CPU; a later call asking for fewer still uses them all: the rows come out the same)
static void parallel_for(range_fn fn, const void *job, int total, int threads) {
    static long cpus = 0;  // read once: sysconf reads a file each time
    if (cpus == 0) cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus > 0 && threads > cpus) threads = (int)cpus;  // more would only take turns on the same cores
    if (threads > MAX_WORKERS + 1) threads = MAX_WORKERS + 1;
    if (threads <= 1 || total < 2 || pthread_mutex_trylock(&pool.caller) != 0) {
        fn(job, 0, total);
        return;
    }
    if (pool.workers == 0) pthread_atfork(NULL, NULL, forget_workers);
    while (pool.workers < threads - 1) {
        worker_start *start = malloc(sizeof *start);
        pthread_t thread;
        if (start == NULL) break;
        *start = (worker_start){pool.workers + 1, atomic_load(&pool.generation)};
        if (pthread_create(&thread, NULL, worker_main, start) != 0) {
            free(start);
            break;
        }
        pthread_detach(thread);
        pool.workers++;
    }
    pool.fn = fn, pool.job = job, pool.total = total;
    pool.parts = pool.workers + 1;  // every worker takes part: none lags behind into the next job
    atomic_store(&pool.pending, pool.workers);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_part(0);
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) _mm_pause();
    pthread_mutex_unlock(&pool.caller);
}

typedef struct {
    int kind, nblocks;
    size_t row_bytes;
    const uint8_t *w;
    const float *x, *xsum;
    float *y;
} gemv_job;

static void gemv_rows(const void *arg, int start, int end) {
    const gemv_job *j = arg;
    for (int r = start; r < end; r++) {
        const uint8_t *row = j->w + j->row_bytes * r;
        j->y[r] = j->kind == 0 ? row_q4_1(row, j->x, j->xsum, j->nblocks) : row_q8_0(row, j->x, j->nblocks);
    }
}

// y (n, rows) = x (n, cols) W^T; kind 0 = Q4_1, 1 = Q8_0; cols % 32 == 0
void qgemv(int kind, const uint8_t *w, int rows, int cols, const float *x, int n, float *y, int threads) {
    int nblocks = cols / 32;
    size_t row_bytes = (size_t)nblocks * (kind == 0 ? 20 : 34);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * cols;
        float *yi = y + (size_t)i * rows;
        float xsum[nblocks];
        for (int b = 0; b < nblocks; b++) {
            float s = 0.0f;
            for (int j = 0; j < 32; j++) s += xi[32 * b + j];
            xsum[b] = s;
        }
        gemv_job job = {kind, nblocks, row_bytes, w, xi, xsum, yi};
        parallel_for(gemv_rows, &job, rows, threads);
    }
}

// ---- several tokens at once (a short prefill): the blocks dequantized to the float32 weights, then an FMA product
// w = d * q + m (Q4_1) or d * q (Q8_0), rounded as the dequantized float32 weights were (a product, then a sum; no
// fused multiply-add), so this is the float32 product of the same weights in another summation order.
#define TILE_ROWS 4  // weight rows dequantized together
#define TILE_X 4     // x rows each dequantized block is applied to

#define PARTS (32 / LANES)  // vectors per block of 32 weights

// one block of one row as float32 weights, in PARTS vectors of LANES (element order 0..31)
__attribute__((optimize("fp-contract=off")))
static inline void dequant_block(int kind, const uint8_t *blk, vec out[PARTS]) {
    uint8_t q[32];
    if (kind == 0) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(blk + 4));
        _mm_storeu_si128((__m128i *)q, _mm_and_si128(raw, _mm_set1_epi8(0x0F)));
        _mm_storeu_si128((__m128i *)(q + 16), _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F)));
        vec d = vec_set1(half_to_float(blk)), m = vec_set1(half_to_float(blk + 2));
        for (int p = 0; p < PARTS; p++)
            out[p] = vec_add(vec_mul(d, u8_to_vec(_mm_loadu_si128((const __m128i *)(q + p * LANES)))), m);
    } else {
        vec d = vec_set1(half_to_float(blk));
        for (int p = 0; p < PARTS; p++)
            out[p] = vec_mul(d, i8_to_vec(_mm_loadu_si128((const __m128i *)(blk + 2 + p * LANES))));
    }
}

typedef struct {
    int kind, rows, cols, n, nblocks;
    size_t block_bytes, row_bytes;
    const uint8_t *w;
    const float *x;
    float *y;
} gemm_job;

static void gemm_tiles(const void *arg, int start, int end) {
    const gemm_job *j = arg;
    int nblocks = j->nblocks, cols = j->cols;
    for (int t = start; t < end; t++) {
        vec wbuf[TILE_ROWS][4096 / LANES];
        const uint8_t *wt = j->w + j->row_bytes * (size_t)t * TILE_ROWS;
        for (int r = 0; r < TILE_ROWS; r++)
            for (int b = 0; b < nblocks; b++)
                dequant_block(j->kind, wt + j->row_bytes * r + j->block_bytes * b, &wbuf[r][b * PARTS]);
        for (int i0 = 0; i0 < j->n; i0 += TILE_X) {
            vec acc[TILE_ROWS][TILE_X];
            for (int r = 0; r < TILE_ROWS; r++)
                for (int k = 0; k < TILE_X; k++) acc[r][k] = vec_zero();
            for (int v = 0; v < nblocks * PARTS; v++) {
                for (int k = 0; k < TILE_X; k++) {
                    vec xv = vec_load(j->x + (size_t)(i0 + k) * cols + v * LANES);
                    for (int r = 0; r < TILE_ROWS; r++) acc[r][k] = vec_fmadd(wbuf[r][v], xv, acc[r][k]);
                }
            }
            for (int r = 0; r < TILE_ROWS; r++)
                for (int k = 0; k < TILE_X; k++)
                    j->y[(size_t)(i0 + k) * j->rows + (size_t)t * TILE_ROWS + r] = vec_sum(acc[r][k]);
        }
    }
}

// y (n, rows) = x (n, cols) W^T with n % TILE_X == 0 and rows % TILE_ROWS == 0. Each tile of weight rows is
// dequantized once into a buffer (at most 4 x 4096 floats: cols <= 4096) and applied to all x rows from there.
void qgemm(int kind, const uint8_t *w, int rows, int cols, const float *x, int n, float *y, int threads) {
    size_t block_bytes = kind == 0 ? 20 : 34;
    gemm_job job = {kind, rows, cols, n, cols / 32, block_bytes, (size_t)(cols / 32) * block_bytes, w, x, y};
    parallel_for(gemm_tiles, &job, rows / TILE_ROWS, threads);
}

// floats per vector in this build (16: AVX-512, where qgemm beats BLAS on the float32 weights; 8: AVX2, where it
// measured slower, so blocks.py keeps BLAS for prefills there)
int qgemm_lanes(void) { return LANES; }
