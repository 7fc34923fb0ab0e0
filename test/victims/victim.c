/*
 * The protocol of every test victim with its driver:
 *
 *   victim-x [--mib N] --workdir DIR --ready FILE --verdict FILE
 *
 * The parts set up their state, then "READY <pid> <nonce> <&counter>" is
 * written to FILE atomically (tmp + rename); "SKIP <reason>" instead, exit
 * 77, when the machine lacks a feature. The main loop advances a counter in
 * memory and in a register until SIGUSR2 arrives; then every part checks
 * itself and "PASS nonce=<nonce> counter=<n>" or "FAIL: <part>: <reason>" is
 * written to the verdict file (atomically too), exit 0 or 1. The nonce,
 * drawn at start, lets the driver tell a restored process from a restarted
 * one; the counter lets it check continuation from the value at the dump.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define STACK_AREA (256 * 1024)

volatile int victim_stop;
volatile uint64_t victim_counter;

int victim_fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -1;
}

int victim_find_vma(const void *addr, size_t len, char ret_perms[5], char *ret_path,
		    size_t path_len)
{
	uintptr_t a = (uintptr_t)addr;
	char line[4096];
	FILE *f;
	int r = -1;

	f = fopen("/proc/self/maps", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		char perms[5], path[PATH_MAX] = "";

		if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %4095[^\n]", &start, &end, perms,
			   path) < 3)
			continue;
		if (a < start || a >= end)
			continue;
		if (a + len > end)
			break;
		memcpy(ret_perms, perms, 5);
		snprintf(ret_path, path_len, "%s", path);
		r = 0;
		break;
	}
	fclose(f);
	return r;
}

static void on_sigusr2(int sig)
{
	(void)sig;
	victim_stop = 1;
}

/* Write "text" to path through path.tmp and rename(), so a reader never sees half of it. */
static int write_atomic(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	size_t n = strlen(text);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, n) != (ssize_t)n || fsync(fd) || close(fd)) {
		fprintf(stderr, "victim: cannot write %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	if (rename(tmp, path)) {
		fprintf(stderr, "victim: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * The default main loop: a little work, then a 1 ms sleep, so that a freeze
 * lands both in user code and inside a restartable syscall. The counter is
 * kept in a local too: a register that comes back wrong shows as a mismatch.
 */
static int default_run(char *err, size_t len)
{
	uint64_t local = victim_counter;
	struct timespec ts = { 0, 1000 * 1000 };
	volatile uint64_t sink __attribute__((unused)) = 0;

	for (;;) {
		if (local != victim_counter)
			return victim_fail(err, len, "counter: register copy %" PRIu64
					   " != memory copy %" PRIu64, local, victim_counter);
		if (victim_stop)
			break;
		local++;
		victim_counter = local;
		for (int i = 0; i < 20000; i++)
			sink += (uint64_t)i * local;
		if (nanosleep(&ts, NULL) && errno != EINTR)
			return victim_fail(err, len, "nanosleep: %s", strerror(errno));
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct victim_ctx *ctx, const char **ready,
		      const char **verdict)
{
	static const struct option lo[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "ready", required_argument, NULL, 'r' },
		{ "verdict", required_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			errno = 0;
			ctx->mib = strtoul(optarg, &end, 10);
			if (errno || *end || !ctx->mib || ctx->mib > 65536) {
				fprintf(stderr, "victim: bad --mib '%s'\n", optarg);
				return -1;
			}
			break;
		case 'w':
			ctx->workdir = optarg;
			break;
		case 'r':
			*ready = optarg;
			break;
		case 'v':
			*verdict = optarg;
			break;
		default:
			return -1;
		}
	}
	if (!ctx->workdir || ctx->workdir[0] != '/' || !*ready || !*verdict || optind != argc) {
		fprintf(stderr, "usage: %s [--mib N] --workdir /ABS/DIR --ready FILE "
			"--verdict FILE\n", argv[0]);
		return -1;
	}
	return 0;
}

static int setup_all(struct victim_ctx *ctx, const char *ready, uint64_t nonce)
{
	char err[512] = "", text[256];
	struct sigaction sa = { .sa_handler = on_sigusr2 };

	if (sigaction(SIGUSR2, &sa, NULL)) {
		fprintf(stderr, "victim: sigaction(SIGUSR2): %s\n", strerror(errno));
		return -1;
	}
	for (int i = 0; victim_parts[i]; i++) {
		int r = victim_parts[i]->setup(ctx, err, sizeof(err));

		if (r == VICTIM_UNSUPPORTED) {
			snprintf(text, sizeof(text), "SKIP %s: %s\n", victim_parts[i]->name, err);
			write_atomic(ready, text);
			return VICTIM_UNSUPPORTED;
		}
		if (r) {
			fprintf(stderr, "victim: setup of %s failed: %s\n", victim_parts[i]->name,
				err);
			return -1;
		}
	}
	/* Whatever setup printed must be in the log before the freeze. */
	fflush(stdout);
	fflush(stderr);
	snprintf(text, sizeof(text), "READY %d %016" PRIx64 " %p\n", (int)getpid(), nonce,
		 (void *)&victim_counter);
	return write_atomic(ready, text);
}

int main(int argc, char **argv)
{
	struct victim_ctx ctx = { .mib = 16 };
	const char *ready = NULL, *verdict = NULL, *run_part = "main";
	char err[512] = "", text[1024];
	uint64_t nonce;
	int r = 0;

	if (parse_args(argc, argv, &ctx, &ready, &verdict))
		return 2;
	if (getrandom(&nonce, sizeof(nonce), 0) != sizeof(nonce)) {
		fprintf(stderr, "victim: getrandom: %s\n", strerror(errno));
		return 2;
	}
	/* main()'s frame lives until exit: the stack pages the memory part fills. */
	ctx.stack_area = alloca(STACK_AREA);
	ctx.stack_size = STACK_AREA;

	r = setup_all(&ctx, ready, nonce);
	if (r == VICTIM_UNSUPPORTED)
		return 77;
	if (r)
		return 2;

	r = 1;
	for (int i = 0; victim_parts[i]; i++) {
		if (victim_parts[i]->run) {
			run_part = victim_parts[i]->name;
			r = victim_parts[i]->run(&ctx, err, sizeof(err));
			break;
		}
	}
	if (r == 1)
		r = default_run(err, sizeof(err));
	if (r) {
		snprintf(text, sizeof(text), "FAIL: %s: %s\n", run_part, err);
	} else {
		snprintf(text, sizeof(text), "PASS nonce=%016" PRIx64 " counter=%" PRIu64 "\n",
			 nonce, victim_counter);
		for (int i = 0; victim_parts[i]; i++) {
			if (victim_parts[i]->check(&ctx, err, sizeof(err))) {
				snprintf(text, sizeof(text), "FAIL: %s: %s\n",
					 victim_parts[i]->name, err);
				r = -1;
				break;
			}
		}
	}
	printf("%s", text);
	fflush(stdout);
	if (write_atomic(verdict, text))
		return 2;
	return r ? 1 : 0;
}
