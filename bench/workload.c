/*
 * The sample workload of the demo and the benchmarks: holds --mib MiB of
 * memory with a known pattern, does random reads and writes over a working
 * set (--ws PERCENT of it), and every 100 ms prints one line
 *
 *   t=<unix time, µs> counter=<n> ops=<ops in the last period> ok=<0|1>
 *
 * where counter keeps counting across a migration and ok says whether every
 * word read so far held what was last written there. The line is flushed at
 * once so that the log can be followed live.
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WORDS_PER_PAGE (4096 / sizeof(uint64_t))

static uint64_t now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000ULL + (uint64_t)tv.tv_usec;
}

/* Each page holds its own index and a generation that writes bump. */
static inline uint64_t expect(uint64_t page, uint64_t gen)
{
	return (page * 0x9e3779b97f4a7c15ULL) ^ gen;
}

int main(int argc, char **argv)
{
	uint64_t mib = 256, ws = 100, counter = 0, ops = 0, rng = 88172645463325252ULL;
	uint64_t npages, wspages, next;
	uint64_t *mem, *gens;
	int ok = 1, c;

	while ((c = getopt(argc, argv, "m:w:")) != -1) {
		switch (c) {
		case 'm':
			mib = strtoull(optarg, NULL, 10);
			break;
		case 'w':
			ws = strtoull(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: %s [-m MIB] [-w WORKING_SET_PERCENT]\n", argv[0]);
			return 2;
		}
	}
	if (!mib || !ws || ws > 100) {
		fprintf(stderr, "workload: bad -m or -w\n");
		return 2;
	}
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
	for (uint64_t p = 0; p < npages; p++)
		for (uint64_t w = 0; w < WORDS_PER_PAGE; w += 64)
			mem[p * WORDS_PER_PAGE + w] = expect(p, 0);
	printf("ready pid=%d mib=%llu\n", (int)getpid(), (unsigned long long)mib);
	fflush(stdout);
	next = now_us() + 100000;
	for (;;) {
		for (int i = 0; i < 256; i++) {
			uint64_t p, w;

			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			p = rng % wspages;
			w = (rng >> 32) % (WORDS_PER_PAGE / 64) * 64;
			if (mem[p * WORDS_PER_PAGE + w] != expect(p, gens[p]))
				ok = 0;
			if (rng & 1) {
				gens[p]++;
				for (uint64_t k = 0; k < WORDS_PER_PAGE; k += 64)
					mem[p * WORDS_PER_PAGE + k] = expect(p, gens[p]);
			}
			ops++;
		}
		if (now_us() >= next) {
			counter++;
			printf("t=%llu counter=%llu ops=%llu ok=%d\n", (unsigned long long)now_us(),
			       (unsigned long long)counter, (unsigned long long)ops, ok);
			fflush(stdout);
			ops = 0;
			next += 100000;
			if (next < now_us())
				next = now_us() + 100000;
		}
	}
}
