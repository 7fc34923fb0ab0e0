/*
 * The victims of the lazy-migration tests (test/integration/lazy-e2e.sh):
 * the memory part plus a "lazy" part that owns an anonymous area of --mib
 * MiB whose every page carries a generation number. Its main loop keeps
 * reading a random page, checking it against its generation, and rewriting
 * it with the next one, so that right after a lazy restore it faults on
 * pages the daemon has not brought yet (mincore() tells, and the count is
 * kept). Built three times: lazy-touch does only that; on SIGUSR1 (sent
 * right after the restore) lazy-fork forks a child that checks the whole
 * memory itself and writes its own verdict (DIR/child-verdict), and
 * lazy-remap moves a chunk of the area with mremap(), drops one with
 * MADV_DONTNEED and unmaps one, then maps fresh memory there, each right
 * after a fault on the page before it (so it is likely being streamed).
 * The check verifies every page (moved pages keep their contents, dropped
 * and fresh ones read zero), waits for the child, and writes the counts to
 * DIR/lazy-stats for the driver.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)
#define SEED 0x1a2bULL
#define CHUNK 256		/* pages moved, dropped or unmapped by lazy-remap */
#define TOUCH_PER_ROUND 8

enum pstate { P_HERE, P_MOVED, P_ZERO };
enum mode { MODE_TOUCH, MODE_FORK, MODE_REMAP };

#ifndef LAZY_MODE
#define LAZY_MODE MODE_TOUCH
#endif
static const enum mode mode = LAZY_MODE;

static uint8_t *area;		/* the lazy area */
static size_t npages;
static uint32_t *gen;		/* generation of each page */
static uint8_t *state;		/* enum pstate of each page */
static uint8_t *moved_to;	/* where the moved chunk went */
static size_t moved_first;	/* its first page index */
static uint64_t rng = 0x853c49e6748cea9bULL;
static const char *workdir;
static volatile int act;	/* SIGUSR1: do the mode's action */
static int acted;
static uint64_t touches, touches_missing, action_missing;
static pid_t child = -1;

static void on_usr1(int sig)
{
	(void)sig;
	act = 1;
}

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t word(uintptr_t addr, uint32_t g)
{
	return victim_mix(addr, SEED ^ ((uint64_t)g * 0x9e3779b97f4a7c15ULL));
}

/* Page i was dumped at area + i * PAGE; its words are mixes of that address. */
static void fill_page(size_t i)
{
	uint64_t *p = (uint64_t *)(area + i * PAGE);

	for (size_t w = 0; w < WORDS; w++)
		p[w] = word((uintptr_t)&p[w], gen[i]);
}

/* Check page i, now at "at" (its dump address for a page still in place). */
static int check_page(size_t i, const uint8_t *at, char *err, size_t len)
{
	const uint64_t *p = (const uint64_t *)at;
	uintptr_t orig = (uintptr_t)(area + i * PAGE);

	for (size_t w = 0; w < WORDS; w++) {
		uint64_t want = state[i] == P_ZERO ? 0 : word(orig + w * 8, gen[i]);

		if (p[w] != want)
			return victim_fail(err, len, "page %zu (dumped at %p, now at %p, "
					   "%s, gen %u): word %zu is 0x%016" PRIx64 ", expected 0x%016"
					   PRIx64, i, (void *)orig, (const void *)at,
					   state[i] == P_ZERO ? "dropped" : state[i] == P_MOVED ?
					   "moved" : "in place", gen[i], w, p[w], want);
	}
	return 0;
}

static const uint8_t *page_at(size_t i)
{
	if (state[i] == P_MOVED)
		return moved_to + (i - moved_first) * PAGE;
	return area + i * PAGE;
}

/* Pages of [p, p + n pages) not in memory yet (a lazy page the daemon has not brought). */
static uint64_t missing(const void *p, size_t n)
{
	unsigned char vec[CHUNK];
	uint64_t m = 0;

	for (size_t off = 0; off < n; off += CHUNK) {
		size_t k = n - off < CHUNK ? n - off : CHUNK;

		if (mincore((uint8_t *)p + off * PAGE, k * PAGE, vec))
			return 0;
		for (size_t j = 0; j < k; j++)
			m += !(vec[j] & 1);
	}
	return m;
}

static int verify_all(char *err, size_t len)
{
	for (size_t i = 0; i < npages; i++)
		if (check_page(i, page_at(i), err, len))
			return -1;
	return 0;
}

static int write_file(const char *name, const char *text)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	size_t n = strlen(text);
	int fd;

	snprintf(path, sizeof(path), "%s/%s", workdir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write(fd, text, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	close(fd);
	return rename(tmp, path);
}

extern const struct victim_part victim_part_mem;

/*
 * The child of lazy-fork: its memory is what the parent's was at the fork,
 * much of it still missing; it checks all of it (faulting through its own
 * userfaultfd), rewrites some pages, checks again, and reports.
 */
static void child_main(struct victim_ctx *ctx)
{
	uint64_t miss = missing(area, npages);
	char err[512] = "", text[700];
	int r;

	r = verify_all(err, sizeof(err));
	if (!r)
		r = victim_part_mem.check(ctx, err, sizeof(err));
	for (int k = 0; !r && k < 256; k++) {
		size_t i = next_rand() % npages;

		gen[i] += 7;
		fill_page(i);
	}
	if (!r)
		r = verify_all(err, sizeof(err));
	if (r)
		snprintf(text, sizeof(text), "FAIL: child %d: %s\n", (int)getpid(), err);
	else
		snprintf(text, sizeof(text), "PASS child=%d missing_at_start=%" PRIu64 "\n",
			 (int)getpid(), miss);
	write_file("child-verdict", text);
	_exit(r ? 1 : 0);
}

static int do_fork(struct victim_ctx *ctx, char *err, size_t len)
{
	action_missing = missing(area, npages);
	child = fork();
	if (child < 0)
		return victim_fail(err, len, "fork: %s", strerror(errno));
	if (!child)
		child_main(ctx);
	return 0;
}

/*
 * Each chunk is hit right after a fault on the page before it: the daemon
 * streams from the latest fault on, so the chunk is then likely on the wire.
 */
static int do_remap(char *err, size_t len)
{
	size_t m = npages - 6 * CHUNK, d = npages - 4 * CHUNK, u = npages - 2 * CHUNK;
	void *target, *fresh;

	action_missing = missing(area + m * PAGE, CHUNK) + missing(area + d * PAGE, CHUNK) +
			 missing(area + u * PAGE, CHUNK);
	/* A reserved hole elsewhere for the move. */
	target = mmap(NULL, CHUNK * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (target == MAP_FAILED)
		return victim_fail(err, len, "mmap of the mremap target: %s", strerror(errno));
	if (check_page(m - 1, area + (m - 1) * PAGE, err, len))
		return -1;
	moved_to = mremap(area + m * PAGE, CHUNK * PAGE, CHUNK * PAGE,
			  MREMAP_MAYMOVE | MREMAP_FIXED, target);
	if (moved_to == MAP_FAILED)
		return victim_fail(err, len, "mremap %p -> %p: %s", (void *)(area + m * PAGE),
				   target, strerror(errno));
	moved_first = m;
	memset(state + m, P_MOVED, CHUNK);
	if (check_page(d - 1, area + (d - 1) * PAGE, err, len))
		return -1;
	if (madvise(area + d * PAGE, CHUNK * PAGE, MADV_DONTNEED))
		return victim_fail(err, len, "madvise(MADV_DONTNEED) at %p: %s",
				   (void *)(area + d * PAGE), strerror(errno));
	memset(state + d, P_ZERO, CHUNK);
	if (check_page(u - 1, area + (u - 1) * PAGE, err, len))
		return -1;
	if (munmap(area + u * PAGE, CHUNK * PAGE))
		return victim_fail(err, len, "munmap at %p: %s", (void *)(area + u * PAGE),
				   strerror(errno));
	fresh = mmap(area + u * PAGE, CHUNK * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (fresh != area + u * PAGE)
		return victim_fail(err, len, "mmap over the unmapped %p: %s",
				   (void *)(area + u * PAGE), fresh == MAP_FAILED ?
				   strerror(errno) : "another address");
	memset(state + u, P_ZERO, CHUNK);
	return 0;
}

static int lazy_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	struct sigaction sa = { .sa_handler = on_usr1 };

	workdir = ctx->workdir;
	npages = (ctx->mib << 20) / PAGE;
	if (npages < 8 * CHUNK)
		return victim_fail(err, len, "--mib %lu is too small for the lazy area",
				   ctx->mib);
	area = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	gen = calloc(npages, sizeof(*gen));
	state = calloc(npages, 1);
	if (area == MAP_FAILED || !gen || !state)
		return victim_fail(err, len, "lazy area of %zu pages: %s", npages,
				   strerror(errno));
	for (size_t i = 0; i < npages; i++)
		fill_page(i);
	if (sigaction(SIGUSR1, &sa, NULL))
		return victim_fail(err, len, "sigaction(SIGUSR1): %s", strerror(errno));
	printf("lazy: %zu pages at %p\n", npages, (void *)area);
	return 0;
}

static int lazy_run(struct victim_ctx *ctx, char *err, size_t len)
{
	struct timespec ts = { 0, 1000 * 1000 };

	while (!victim_stop) {
		if (act && !acted) {
			acted = 1;
			if (mode == MODE_FORK && do_fork(ctx, err, len))
				return -1;
			if (mode == MODE_REMAP && do_remap(err, len))
				return -1;
		}
		for (int k = 0; k < TOUCH_PER_ROUND; k++) {
			size_t i = next_rand() % npages;

			if (state[i] != P_HERE)
				continue;
			touches_missing += missing(area + i * PAGE, 1);
			touches++;
			if (check_page(i, area + i * PAGE, err, len))
				return -1;
			gen[i]++;
			fill_page(i);
		}
		victim_counter++;
		if (nanosleep(&ts, NULL) && errno != EINTR)
			return victim_fail(err, len, "nanosleep: %s", strerror(errno));
	}
	return 0;
}

static int wait_child(char *err, size_t len)
{
	int status;

	for (int i = 0; i < 600; i++) {
		pid_t r = waitpid(child, &status, WNOHANG);

		if (r == child) {
			if (WIFEXITED(status) && !WEXITSTATUS(status))
				return 0;
			return victim_fail(err, len, "fork: child %d %s %d", (int)child,
					   WIFEXITED(status) ? "exited with" : "killed by signal",
					   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		}
		if (r < 0)
			return victim_fail(err, len, "waitpid(%d): %s", (int)child, strerror(errno));
		usleep(50000);
	}
	return victim_fail(err, len, "fork: child %d did not finish in 30 s", (int)child);
}

static int lazy_check(struct victim_ctx *ctx, char *err, size_t len)
{
	char text[256];

	(void)ctx;
	if (mode != MODE_TOUCH && !acted)
		return victim_fail(err, len, "SIGUSR1 never came, nothing was done");
	if (child > 0 && wait_child(err, len))
		return -1;
	if (verify_all(err, len))
		return -1;
	snprintf(text, sizeof(text), "touches=%" PRIu64 " touches_missing=%" PRIu64
		 " action_missing=%" PRIu64 " child=%d\n", touches, touches_missing,
		 action_missing, (int)child);
	if (write_file("lazy-stats", text))
		return victim_fail(err, len, "cannot write %s/lazy-stats: %s", workdir,
				   strerror(errno));
	return 0;
}

static const struct victim_part victim_part_lazy = {
	.name = "lazy",
	.setup = lazy_setup,
	.check = lazy_check,
	.run = lazy_run,
};

const struct victim_part *const victim_parts[] = {
	&victim_part_mem,
	&victim_part_lazy,
	NULL,
};
