/*
 * Drain throughput: a victim with 1 GiB (or argv[2] MiB) of anonymous memory
 * is frozen and infected, and psite_drain writes the whole region into a file
 * on /dev/shm (tmpfs). One untimed warm-up run first: this VM backs memory
 * that was never touched lazily, and tmpfs pages are allocated by it. The
 * timed run rewrites the same file; its content is then spot-checked.
 *   usage: bench-parasite-drain PATH-TO-VICTIM [MIB]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "psite.h"
#include "util.h"
#include "victim-run.h"

static int spot_check(int fd, uint64_t len)
{
	uint8_t buf[4096];

	for (uint64_t off = 0; off < len; off += len / 64 + 4096 * 7) {
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)off);

		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != victim_byte(off + (uint64_t)i))
				return -1;
	}
	return 0;
}

static int drain_once(struct psite_ctl *ctl, int fd, const struct iovec *run, double *secs)
{
	uint64_t bytes, t0;
	int r;

	if (lseek(fd, 0, SEEK_SET))
		return -errno;
	t0 = util_now_us();
	r = psite_drain(ctl, run, 1, fd, &bytes);
	*secs = (double)(util_now_us() - t0) / 1e6;
	if (r)
		return r;
	return bytes == run->iov_len ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	unsigned mib = argc > 2 ? (unsigned)atoi(argv[2]) : 1024;
	char path[] = "/dev/shm/relive-psite-benchXXXXXX";
	struct psite_frozen *f = NULL;
	struct psite_ctl *ctl = NULL;
	struct victim v;
	struct iovec run;
	double warm, secs;
	int fd = -1, r, ret = 1;

	if (argc < 2)
		return 2;
	log_init();
	victim_watchdog(110);
	if (victim_start(argv[1], "plain", mib, &v) || victim_wait_running(&v))
		goto out;
	r = psite_freeze(v.pid, &f);
	if (!r)
		r = psite_infect(f, v.pid, &ctl);
	if (r)
		goto out;
	fd = mkstemp(path);
	if (fd < 0)
		goto out;
	unlink(path);
	run.iov_base = (void *)v.rep.region;
	run.iov_len = v.rep.region_len;
	r = drain_once(ctl, fd, &run, &warm);
	if (!r)
		r = drain_once(ctl, fd, &run, &secs);
	if (r) {
		fprintf(stderr, "drain failed: %s\n", strerror(-r));
		goto out;
	}
	if (spot_check(fd, run.iov_len)) {
		fprintf(stderr, "drained content differs from the victim's pattern\n");
		goto out;
	}
	printf("drain of %u MiB into /dev/shm: %.2f GiB/s (%.3f s; untimed warm-up run took %.3f s)\n",
	       mib, (double)run.iov_len / (1 << 30) / secs, secs, warm);
	ret = 0;
out:
	if (psite_cure(ctl))
		ret = 1;
	if (f) {
		psite_unfreeze(f, true);
		/* Killed; we are its parent, so we reap it. */
		while (waitpid(v.pid, NULL, 0) < 0 && errno == EINTR)
			;
		v.pid = 0;
	}
	victim_kill(&v);
	if (fd >= 0)
		close(fd);
	return ret;
}
