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
 * Every line is flushed at once so that the log can be followed live.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
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

int main(int argc, char **argv)
{
	uint64_t mib = 256, ws = 100, gap_us = 0, counter = 0, ops = 0;
	uint64_t rng = 88172645463325252ULL;
	uint64_t npages, wspages, next, gap_ns;
	uint64_t *mem, *gens;
	struct sigaction sa;
	int ok = 1, c;

	while ((c = getopt(argc, argv, "m:w:g:")) != -1) {
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
		default:
			fprintf(stderr, "usage: %s [-m MIB] [-w WORKING_SET_PERCENT] [-g GAP_US]\n",
				argv[0]);
			return 2;
		}
	}
	if (!mib || !ws || ws > 100) {
		fprintf(stderr, "workload: bad -m, -w or -g\n");
		return 2;
	}
	gap_ns = gap_us ? gap_us * 1000 : UINT64_MAX;
	npages = mib * 256;
	wspages = npages * ws / 100;
	if (!wspages)
		wspages = 1;
	mem = mmap(NULL, npages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gens = calloc(npages, sizeof(*gens));
	if (mem == MAP_FAILED || !gens) {
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
	printf("ready pid=%d mib=%llu ws=%llu\n", (int)getpid(), (unsigned long long)mib,
	       (unsigned long long)ws);
	fflush(stdout);
	last_ns = now_ns();
	next = last_ns / 1000 + 100000;
	for (;;) {
		for (int i = 0; i < 64; i++) {
			uint64_t p, w, t0, t1;

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			p = rng % wspages;
			w = (rng >> 32) % (WORDS_PER_PAGE / 64) * 64;
			t0 = now_ns();
			if (t0 - last_ns > gap_ns)
				gap(last_ns, t0, "loop");
			if (mem[p * WORDS_PER_PAGE + w] != expect(p, gens[p]))
				ok = 0;
			if (rng & 1) {
				gens[p]++;
				for (uint64_t k = 0; k < WORDS_PER_PAGE; k += 64)
					mem[p * WORDS_PER_PAGE + k] = expect(p, gens[p]);
			}
			t1 = now_ns();
			if (t1 - t0 > gap_ns)
				gap(t0, t1, "op");
			else
				hist[bucket(t1 - t0)]++;
			last_ns = t1;
			ops++;
		}
		if (want_hist) {
			want_hist = 0;
			print_hist();
		}
		if (last_ns / 1000 >= next) {
			counter++;
			printf("t=%llu counter=%llu ops=%llu ok=%d\n",
			       (unsigned long long)(last_ns / 1000), (unsigned long long)counter,
			       (unsigned long long)ops, ok);
			fflush(stdout);
			ops = 0;
			next += 100000;
			if (next < last_ns / 1000)
				next = last_ns / 1000 + 100000;
		}
	}
}
