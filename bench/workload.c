/*
 * The sample workload of the demo and the benchmarks: holds -m MiB of memory
 * with a known pattern and does a fixed memory-bound loop of random reads and
 * writes over a working set (-w PERCENT of it). It measures itself, so the
 * benchmark sees a migration the way the application does:
 *
 *   t=<unix µs> counter=<n> ops=<ops in the last 100 ms> ok=<0|1>
 *       every 100 ms; counter keeps counting across a migration, ok says
 *       whether every word read so far held what was last written there.
 *   gap start=<unix ns> end=<unix ns> len=<ns> in=<op|loop>
 *       only with -g US (the benchmark uses -g 1000; the demo's log stays
 *       plain): the realtime clock jumped more than US µs between two
 *       consecutive readings: the process was frozen, descheduled, or waited
 *       for a page. start is its last reading before (the last timestamp it
 *       kept in memory), end its first after; in=op if the jump was inside
 *       one memory access, loop if between two.
 *   hist n=<samples> <bucket ns>:<count> ...
 *       on SIGUSR1 (and then reset): the latency of every memory access
 *       since the previous hist line, in log-linear buckets (8 per power of
 *       two; the bucket's lower bound in ns). Accesses reported as gaps are
 *       not in it.
 *
 * With -t N (--threads N), N threads do the loop at once, each over its own
 * share of the pages (page p belongs to thread p % N, so every thread touches
 * random pages all over the memory and the check stays exact); ops= counts
 * all of them, gap and hist lines are the first thread's.
 *
 * Every line is flushed at once so that the log can be followed live.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define WORDS_PER_PAGE (4096 / sizeof(uint64_t))
#define SUB_BITS 3
#define NR_BUCKETS ((64 - SUB_BITS + 1) << SUB_BITS)

static volatile sig_atomic_t want_hist;
static uint64_t hist[NR_BUCKETS];
/* The last clock reading, kept in memory: the "last instruction" before a freeze. */
static volatile uint64_t last_ns;

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Log-linear bucket of V: values below 8 exactly, then 8 buckets per power of two. */
static inline unsigned int bucket(uint64_t v)
{
	unsigned int msb;

	if (v < (1U << SUB_BITS))
		return (unsigned int)v;
	msb = 63 - (unsigned int)__builtin_clzll(v);
	return ((msb - SUB_BITS + 1) << SUB_BITS) + (unsigned int)((v >> (msb - SUB_BITS)) & 7);
}

static uint64_t bucket_low(unsigned int b)
{
	unsigned int e = b >> SUB_BITS;

	if (!e)
		return b;
	return (uint64_t)(8 + (b & 7)) << (e - 1);
}

static void print_hist(void)
{
	uint64_t n = 0;

	for (unsigned int b = 0; b < NR_BUCKETS; b++)
		n += hist[b];
	printf("hist n=%llu", (unsigned long long)n);
	for (unsigned int b = 0; b < NR_BUCKETS; b++)
		if (hist[b])
			printf(" %llu:%llu", (unsigned long long)bucket_low(b),
			       (unsigned long long)hist[b]);
	printf("\n");
	fflush(stdout);
	memset(hist, 0, sizeof(hist));
}

static void on_sigusr1(int sig)
{
	(void)sig;
	want_hist = 1;
}

static void gap(uint64_t start, uint64_t end, const char *where)
{
	printf("gap start=%llu end=%llu len=%llu in=%s\n", (unsigned long long)start,
	       (unsigned long long)end, (unsigned long long)(end - start), where);
	fflush(stdout);
}

/* Each page holds its own index and a generation that writes bump. */
static inline uint64_t expect(uint64_t page, uint64_t gen)
{
	return (page * 0x9e3779b97f4a7c15ULL) ^ gen;
}

static uint64_t *mem, *gens;
static uint64_t wspages, gap_ns, nthreads = 1;
static atomic_int ok = 1;

struct worker {
	unsigned int idx;
	uint64_t rng;
	_Atomic uint64_t ops;
};

/* 64 random accesses over the worker's share of the working set. */
static void accesses(struct worker *wk)
{
	uint64_t share = wspages / nthreads, rng = wk->rng;
	bool first = wk->idx == 0;

	for (int i = 0; i < 64; i++) {
		uint64_t p, w, t0, t1;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		p = rng % share * nthreads + wk->idx;
		w = (rng >> 32) % (WORDS_PER_PAGE / 64) * 64;
		t0 = now_ns();
		if (first && t0 - last_ns > gap_ns)
			gap(last_ns, t0, "loop");
		if (mem[p * WORDS_PER_PAGE + w] != expect(p, gens[p]))
			atomic_store_explicit(&ok, 0, memory_order_relaxed);
		if (rng & 1) {
			gens[p]++;
			for (uint64_t k = 0; k < WORDS_PER_PAGE; k += 64)
				mem[p * WORDS_PER_PAGE + k] = expect(p, gens[p]);
		}
		if (first) {
			t1 = now_ns();
			if (t1 - t0 > gap_ns)
				gap(t0, t1, "op");
			else
				hist[bucket(t1 - t0)]++;
			last_ns = t1;
		}
	}
	wk->rng = rng;
	atomic_fetch_add_explicit(&wk->ops, 64, memory_order_relaxed);
}

static void *worker_main(void *arg)
{
	for (;;)
		accesses(arg);
	return NULL;
}

/* Worker 0 is the main thread; the others start with SIGUSR1 blocked, so only it takes it. */
static int start_workers(struct worker *wks)
{
	sigset_t usr1, old;
	int r = 0;

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, &old);
	for (uint64_t i = 0; i < nthreads && !r; i++) {
		pthread_t th;

		wks[i].idx = (unsigned int)i;
		wks[i].rng = 88172645463325252ULL + i * 0x9e3779b97f4a7c15ULL;
		if (!i)
			continue;
		r = pthread_create(&th, NULL, worker_main, &wks[i]);
		if (r)
			fprintf(stderr, "workload: cannot start thread %llu: %s\n",
				(unsigned long long)i, strerror(r));
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ 0 },
	};
	uint64_t mib = 256, ws = 100, gap_us = 0, counter = 0, ops_seen = 0;
	uint64_t npages, next;
	struct worker *wks;
	struct sigaction sa;
	int c;

	while ((c = getopt_long(argc, argv, "m:w:g:t:", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mib = strtoull(optarg, NULL, 10);
			break;
		case 'w':
			ws = strtoull(optarg, NULL, 10);
			break;
		case 'g':
			gap_us = strtoull(optarg, NULL, 10);
			break;
		case 't':
			nthreads = strtoull(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: %s [-m MIB] [-w WORKING_SET_PERCENT] [-g GAP_US] "
				"[-t|--threads N]\n", argv[0]);
			return 2;
		}
	}
	if (!mib || !ws || ws > 100 || !nthreads || nthreads > 1024) {
		fprintf(stderr, "workload: bad -m, -w, -g or -t\n");
		return 2;
	}
	gap_ns = gap_us ? gap_us * 1000 : UINT64_MAX;
	npages = mib * 256;
	wspages = npages * ws / 100;
	if (wspages < nthreads)
		wspages = nthreads;
	if (wspages > npages) {
		fprintf(stderr, "workload: fewer pages than threads\n");
		return 2;
	}
	mem = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gens = calloc(npages, sizeof(*gens));
	wks = calloc(nthreads, sizeof(*wks));
	if (mem == MAP_FAILED || !gens || !wks) {
		fprintf(stderr, "workload: cannot allocate %llu MiB: %s\n", (unsigned long long)mib,
			strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL)) {
		fprintf(stderr, "workload: cannot set the SIGUSR1 handler: %s\n", strerror(errno));
		return 1;
	}
	for (uint64_t p = 0; p < npages; p++)
		for (uint64_t w = 0; w < WORDS_PER_PAGE; w += 64)
			mem[p * WORDS_PER_PAGE + w] = expect(p, 0);
	if (start_workers(wks))
		return 1;
	printf("ready pid=%d mib=%llu ws=%llu threads=%llu\n", (int)getpid(),
	       (unsigned long long)mib, (unsigned long long)ws, (unsigned long long)nthreads);
	fflush(stdout);
	last_ns = now_ns();
	next = last_ns / 1000 + 100000;
	for (;;) {
		accesses(&wks[0]);
		if (want_hist) {
			want_hist = 0;
			print_hist();
		}
		if (last_ns / 1000 >= next) {
			uint64_t all = 0;

			for (uint64_t i = 0; i < nthreads; i++)
				all += atomic_load_explicit(&wks[i].ops, memory_order_relaxed);
			counter++;
			printf("t=%llu counter=%llu ops=%llu ok=%d\n",
			       (unsigned long long)(last_ns / 1000), (unsigned long long)counter,
			       (unsigned long long)(all - ops_seen), atomic_load(&ok));
			fflush(stdout);
			ops_seen = all;
			next += 100000;
			if (next < last_ns / 1000)
				next = last_ns / 1000 + 100000;
		}
	}
}
