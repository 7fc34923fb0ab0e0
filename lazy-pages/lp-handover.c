/*
 * The handover socket of the lazy-pages daemon (docs/protocol.md
 * "Handover"): DIR/lazy-pages.sock, mode 0600. Each restored process
 * connects, proves it runs as our uid or root (SO_PEERCRED), and sends
 * {magic "RLLP", version 1, pid, reserved} with its userfaultfd attached.
 * The daemon checks the pid against pstree.img, keeps the uffd and answers
 * 'A'; it installs nothing for that pid until the restorer writes 'R' (its
 * VMAs are mapped and registered). Every step is driven by io_uring polls;
 * the descriptors are non-blocking, so a silent peer never blocks the loop.
 */
#include "lp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LP_HANDOVER_MAGIC 0x504c4c52U /* "RLLP" */
#define LP_HANDOVER_VERSION 1U
#define LP_HANDOVER_SOCK "lazy-pages.sock"

struct lp_hand {
	int fd;
	uint32_t peer_pid;
	uint32_t peer_uid;
	struct lp_proc *proc; /* after a good hello */
};

static int poll_hand(struct lp_ctx *ctx, struct lp_hand *h)
{
	struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, h->fd, POLLIN);
	io_uring_sqe_set_data64(sqe, lp_ud(h, LP_UD_HANDOVER));
	return 0;
}

static void hand_close(struct lp_hand *h)
{
	close(h->fd);
	free(h);
}

int lp_handover_listen(struct lp_ctx *ctx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct io_uring_sqe *sqe;
	mode_t old;
	int fd, n;

	n = snprintf(ctx->sock_path, sizeof(ctx->sock_path), "%s/%s", ctx->opts->images_dir,
		     LP_HANDOVER_SOCK);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		pr_err("handover socket path %s/%s is longer than %zu bytes\n",
		       ctx->opts->images_dir, LP_HANDOVER_SOCK, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, ctx->sock_path, (size_t)n + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		pr_perror("cannot create the handover socket");
		return -errno;
	}
	if (unlink(ctx->sock_path) && errno != ENOENT)
		pr_warn("cannot remove a stale %s: %s\n", ctx->sock_path, strerror(errno));
	/* nobody but us may connect in the window between bind and chmod */
	old = umask(0077);
	n = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (n || chmod(ctx->sock_path, 0600) || listen(fd, 64)) {
		pr_perror("cannot listen on %s", ctx->sock_path);
		n = -errno;
		close(fd);
		return n;
	}
	ctx->listen_fd = fd;
	sqe = lp_sqe(&ctx->ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, lp_ud(ctx, LP_UD_LISTEN));
	pr_info("handover socket %s listening\n", ctx->sock_path);
	return 0;
}

void lp_handover_fini(struct lp_ctx *ctx)
{
	if (ctx->listen_fd >= 0) {
		close(ctx->listen_fd);
		unlink(ctx->sock_path);
	}
	ctx->listen_fd = -1;
}

static void accept_all(struct lp_ctx *ctx)
{
	for (;;) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct lp_hand *h;
		int fd = accept4(ctx->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				pr_perror("accept on %s", ctx->sock_path);
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
			pr_perror("handover: SO_PEERCRED");
			close(fd);
			continue;
		}
		if (cred.uid != 0 && cred.uid != getuid()) {
			pr_err("handover: refused a connection from pid %d uid %u (not root, not uid %u)\n",
			       cred.pid, cred.uid, getuid());
			close(fd);
			continue;
		}
		h = calloc(1, sizeof(*h));
		if (!h) {
			close(fd);
			continue;
		}
		h->fd = fd;
		h->peer_pid = (uint32_t)cred.pid;
		h->peer_uid = cred.uid;
		if (poll_hand(ctx, h))
			hand_close(h);
	}
}

static bool is_uffd(int fd)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = '\0';
	return strstr(link, "userfaultfd") != NULL;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The hello with its uffd. 0: answered 'A'; -errno: close. */
static int recv_hello(struct lp_ctx *ctx, struct lp_hand *h)
{
	uint8_t msg[16];
	int fds[8], nr_fds = 0, uffd = -1, ret = 0;
	uint32_t magic, version, pid, reserved;
	struct lp_proc *p = NULL;
	ssize_t n;

	n = util_recv_fds(h->fd, msg, sizeof(msg), MSG_DONTWAIT, fds, 8, &nr_fds);
	if (n == -EPROTO) {
		pr_err("handover from pid %u: hello or its descriptors cut short\n", h->peer_pid);
		return -EPROTO;
	}
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(msg)) {
		pr_err("handover from pid %u: %zd-byte hello (expected 16)\n", h->peer_pid, n);
		ret = -EPROTO;
		goto out;
	}
	magic = get32(msg);
	version = get32(msg + 4);
	pid = get32(msg + 8);
	reserved = get32(msg + 12);
	if (magic != LP_HANDOVER_MAGIC || reserved) {
		pr_err("handover from pid %u: bad magic %#x\n", h->peer_pid, magic);
		ret = -EPROTO;
	} else if (version != LP_HANDOVER_VERSION) {
		pr_err("handover from pid %u: version %u, expected %u\n", h->peer_pid, version,
		       LP_HANDOVER_VERSION);
		ret = -EPROTONOSUPPORT;
	} else if (!(p = lp_proc_find(ctx, pid)) || !p->pid) {
		pr_err("handover from pid %u: pid %u is not in pstree.img\n", h->peer_pid, pid);
		ret = -ESRCH;
	} else if (p->handed || p->gone) {
		pr_err("handover from pid %u: pid %u was already handed over\n", h->peer_pid, pid);
		ret = -EEXIST;
	} else if (nr_fds != 1 || !is_uffd(fds[0])) {
		pr_err("handover for pid %u: expected one userfaultfd, got %d descriptors\n", pid,
		       nr_fds);
		ret = -EBADF;
	}
	if (ret)
		goto out;
	uffd = fds[0];
	nr_fds = 0;
	if (fcntl(uffd, F_SETFL, fcntl(uffd, F_GETFL) | O_NONBLOCK)) {
		ret = -errno;
		pr_perror("pid %u: cannot make its uffd non-blocking", pid);
		goto out;
	}
	/* guarded before 'A': from then on the process may run on this uffd */
	ret = lp_guard_add(ctx, p, h->peer_pid);
	if (ret)
		goto out;
	if (send(h->fd, "A", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
		ret = -errno;
		pr_perror("handover for pid %u: cannot answer", pid);
		goto out;
	}
	p->uffd = TAKE_FD(uffd);
	p->handed = true;
	p->pidfd = (int)syscall(SYS_pidfd_open, h->peer_pid, 0);
	h->proc = p;
	pr_info("pid %u handed over its uffd (fd %d, peer pid %u)\n", pid, p->uffd, h->peer_pid);
out:
	for (int i = 0; i < nr_fds; i++)
		close(fds[i]);
	if (uffd >= 0)
		close(uffd);
	return ret;
}

/* 'R': the VMAs are registered. 0 when ready, -EAGAIN to wait, -errno on failure. */
static int recv_ready(struct lp_ctx *ctx, struct lp_hand *h)
{
	struct lp_proc *p = h->proc;
	char c;
	ssize_t n = recv(h->fd, &c, 1, MSG_DONTWAIT);

	if (n < 0 && errno == EAGAIN)
		return -EAGAIN;
	if (n != 1 || c != 'R') {
		pr_err("pid %u: the restore %s before its memory was registered ('R')\n", p->pid,
		       n == 0 ? "closed the handover" : "sent something else");
		ctx->nr_failed++;
		lp_proc_drop(ctx, p, false, "restore failed before resuming it");
		return -EPROTO;
	}
	p->ready = true;
	if (!ctx->st.t_first_ready_us)
		ctx->st.t_first_ready_us = util_now_us();
	pr_info("pid %u ready: %llu lazy pages to bring\n", p->pid,
		(unsigned long long)p->mm.nr_missing);
	return lp_uffd_arm(ctx, p);
}

void lp_handover_event(struct lp_ctx *ctx, void *obj, const struct io_uring_cqe *cqe)
{
	struct lp_hand *h = obj;
	int ret;

	if (obj == (void *)ctx) {
		if (cqe->res < 0) {
			pr_err("poll on %s failed: %s\n", ctx->sock_path, strerror(-cqe->res));
			return;
		}
		accept_all(ctx);
		if (!(cqe->flags & IORING_CQE_F_MORE)) {
			struct io_uring_sqe *sqe = lp_sqe(&ctx->ring);

			if (sqe) {
				io_uring_prep_poll_multishot(sqe, ctx->listen_fd, POLLIN);
				io_uring_sqe_set_data64(sqe, lp_ud(ctx, LP_UD_LISTEN));
			}
		}
		return;
	}
	if (cqe->res < 0) {
		pr_err("handover from pid %u: poll failed: %s\n", h->peer_pid, strerror(-cqe->res));
		hand_close(h);
		return;
	}
	ret = h->proc ? recv_ready(ctx, h) : recv_hello(ctx, h);
	if (ret == -EAGAIN || (ret == 0 && !h->proc->ready)) {
		if (!poll_hand(ctx, h))
			return;
		ret = -EBUSY;
	}
	if (ret && ret != -EPROTO && h->proc && !h->proc->ready)
		lp_proc_drop(ctx, h->proc, false, "handover failed");
	hand_close(h);
}
