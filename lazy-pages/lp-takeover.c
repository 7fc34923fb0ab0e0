/*
 * Taking over from a dead daemon (docs/failure-modes.md "Lazy migration:
 * the destination daemon dies"). When a daemon is killed, its guard keeps
 * the uffds of the processes it could re-learn and waits on
 * DIR/lazy-takeover.sock (lp-guard.c). A restarted `relive lazy-pages` on the
 * same images connects there first: it checks the guard's credentials,
 * receives {magic "RLTK", version, pid, image pid} + uffd per process and a
 * closing {magic, version, 0, count}, guards every uffd itself, re-learns
 * which lazy pages are already in from /proc/PID/pagemap (PID as the guard
 * sees it: under `restore --pidns` the image pid is the one inside the
 * restored namespace, another process or none here; a registered page that is
 * present or swapped was installed; one that is not was never installed,
 * since its faults come to us), wakes every thread that sleeps on a fault
 * the dead daemon had read (they fault again, and the fault comes to us),
 * and answers 'K'. The stream then resumes with a new session on the
 * source. Nothing here installs a page.
 */
#include "lp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_BATCH 512U

/* One record and its descriptor (-1 if none); 0 or -errno. */
static int recv_rec(int sock, uint32_t rec[4], int *ret_fd)
{
	int fds[4], nr = 0;
	ssize_t n = util_recv_fds(sock, rec, 4 * sizeof(uint32_t), 0, fds, 4, &nr);

	if (n < 0)
		return (int)n;
	if (n != 4 * sizeof(uint32_t) || nr > 1 ||
	    rec[0] != LP_TAKEOVER_MAGIC || rec[1] != LP_TAKEOVER_VERSION) {
		for (int i = 0; i < nr; i++)
			close(fds[i]);
		return -EPROTO;
	}
	*ret_fd = nr ? fds[0] : -1;
	return 0;
}

/* Installed pages are no longer missing: drop them from p's schedule. */
static int relearn(struct lp_proc *p, uint32_t pid)
{
	char path[64];
	uint64_t pm[PM_BATCH];
	_cleanup_close_ int fd = -1;

	snprintf(path, sizeof(path), "/proc/%u/pagemap", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_perror("takeover: cannot open %s", path);
		return -errno;
	}
	/* regions do not change while we drop pages inside them (no split, no merge) */
	for (size_t i = 0; i < p->mm.nr_regs; i++) {
		uint64_t start = p->mm.regs[i].start, nr = p->mm.regs[i].nr;

		for (uint64_t off = 0; off < nr; off += PM_BATCH) {
			uint64_t cnt = MIN(nr - off, PM_BATCH), va = start + off * LP_PAGE;
			ssize_t n = pread(fd, pm, cnt * 8, (off_t)(va / LP_PAGE * 8));

			if (n != (ssize_t)(cnt * 8)) {
				pr_err("takeover: %s at %#llx: %s\n", path, (unsigned long long)va,
				       n < 0 ? strerror(errno) : "short read");
				return n < 0 ? -errno : -EIO;
			}
			for (uint64_t j = 0; j < cnt; j++)
				if (pm[j] & (PM_PRESENT | PM_SWAPPED))
					lp_mm_drop(&p->mm, va + j * LP_PAGE, va + (j + 1) * LP_PAGE);
		}
	}
	return 0;
}

/* Threads asleep on a fault the dead daemon read: wake them to fault again, to us. */
static void wake_all(struct lp_proc *p)
{
	for (size_t i = 0; i < p->mm.nr_regs; i++) {
		struct uffdio_range r = { .start = p->mm.regs[i].start,
					  .len = p->mm.regs[i].nr * LP_PAGE };

		if (ioctl(p->uffd, UFFDIO_WAKE, &r) && errno != ESRCH)
			pr_warn("takeover: pid %u: UFFDIO_WAKE %#llx+%llu: %s\n", p->pid,
				(unsigned long long)r.start, (unsigned long long)r.len,
				strerror(errno));
	}
}

/* Process one {pid, image pid, uffd} from the guard: ours from here on. */
static int adopt(struct lp_ctx *ctx, uint32_t pid, uint32_t image_pid, int uffd)
{
	struct lp_proc *p = lp_proc_find(ctx, image_pid);
	uint64_t total;
	int ret;

	if (!p || !p->expected || p->handed) {
		pr_err("takeover: pid %u (%u in the images) is not a lazy process of pstree.img (or came twice)\n",
		       pid, image_pid);
		close(uffd);
		return -ESRCH;
	}
	if (fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK)) {
		pr_perror("takeover: pid %u: cannot make its uffd non-blocking", pid);
		close(uffd);
		return -errno;
	}
	ret = lp_guard_add(ctx, p, pid);
	if (ret) {
		close(uffd);
		return ret;
	}
	p->uffd = uffd;
	p->handed = p->ready = true;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	total = p->mm.nr_missing;
	ret = relearn(p, pid);
	if (ret)
		return ret;
	if (pid != image_pid)
		pr_info("takeover: pid %u is pid %u of the images\n", pid, image_pid);
	pr_info("takeover: pid %u: %llu of %llu lazy pages already in, %llu to bring\n", image_pid,
		(unsigned long long)(total - p->mm.nr_missing), (unsigned long long)total,
		(unsigned long long)p->mm.nr_missing);
	ret = lp_uffd_arm(ctx, p);
	if (!ret)
		wake_all(p);
	return ret;
}

static int takeover_recv(struct lp_ctx *ctx, int sock)
{
	uint32_t rec[4], got = 0;
	int ret, fd = -1;

	for (;;) {
		ret = recv_rec(sock, rec, &fd);
		if (ret) {
			pr_err("takeover: bad or missing record from the guard: %s\n",
			       strerror(-ret));
			return ret;
		}
		if (!rec[2])
			break;
		if (fd < 0) {
			pr_err("takeover: pid %u came without its uffd\n", rec[2]);
			return -EPROTO;
		}
		ret = adopt(ctx, rec[2], rec[3], fd);
		if (ret)
			return ret;
		got++;
	}
	if (rec[3] != got) {
		pr_err("takeover: the guard announced %u processes, sent %u\n", rec[3], got);
		return -EPROTO;
	}
	for (struct lp_proc *p = ctx->procs; p; p = p->next)
		if (p->expected && !p->handed)
			lp_proc_drop(ctx, p, false, "not offered by the guard (killed or exited)");
	if (send(sock, "K", 1, MSG_NOSIGNAL) != 1) {
		pr_perror("takeover: cannot confirm to the guard");
		return -errno;
	}
	ctx->st.t_first_ready_us = util_now_us();
	pr_warn("took over %u process(es) from a dead lazy-pages daemon\n", got);
	return 1;
}

/*
 * On failure before 'K' the guard keeps the processes and may wait for
 * another successor: let go of them without killing anything.
 */
static int takeover(struct lp_ctx *ctx, int sock)
{
	int ret = takeover_recv(ctx, sock);

	if (ret < 0)
		for (struct lp_proc *p = ctx->procs; p; p = p->next)
			if (p->handed)
				lp_proc_drop(ctx, p, false, "takeover failed; left to the guard");
	return ret;
}

int lp_takeover_try(struct lp_ctx *ctx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 10 };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	_cleanup_close_ int sock = -1;

	if (lp_takeover_path(ctx->opts, sa.sun_path, sizeof(sa.sun_path)))
		return 0;
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		pr_perror("takeover: cannot create a socket");
		return -errno;
	}
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			return 0;
		pr_perror("takeover: cannot connect to %s", sa.sun_path);
		return -errno;
	}
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
	    (cred.uid != 0 && cred.uid != getuid())) {
		pr_err("takeover: %s is held by pid %d uid %u (not root, not uid %u): refused\n",
		       sa.sun_path, cred.pid, cred.uid, getuid());
		return -EACCES;
	}
	if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return -errno;
	pr_info("takeover: the guard %d of a dead daemon waits on %s\n", cred.pid, sa.sun_path);
	return takeover(ctx, sock);
}
