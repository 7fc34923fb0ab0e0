/*
 * The restorer's side of the lazy handover (docs/protocol.md, "Handover").
 * In relive restore, before any process exists: the daemon's socket must be
 * in the images directory and userfaultfd must work, else the restore fails
 * there. In the helper, which already has the final pid and mm: open the
 * userfaultfd with the event features the daemon needs, connect to
 * DIR/lazy-pages.sock, check who listens (root or our uid), send the hello
 * with the uffd attached and wait (bounded) for the daemon's 'A'. The two fds
 * are then kept for the blob, which registers the lazy VMAs, writes 'R' and
 * closes them. The helper never logs: errors go to c->err.
 */
#include "rst.h"

#include "compat.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

/* A new userfaultfd of the calling process: the syscall, else /dev/userfaultfd. */
static int uffd_new(char *why, size_t len)
{
	int fd, dev, e_sys;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	e_sys = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		snprintf(why, len, "userfaultfd(): %s; open /dev/userfaultfd: %s", strerror(e_sys),
			 strerror(errno));
		return -e_sys;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		snprintf(why, len, "userfaultfd(): %s; USERFAULTFD_IOC_NEW on /dev/userfaultfd: %s",
			 strerror(e_sys), strerror(errno));
	close(dev);
	return fd < 0 ? -e_sys : fd;
}

/* The features this kernel supports: UFFDIO_API may be asked once per uffd. */
static int uffd_supported(uint64_t *ret, char *why, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = uffd_new(why, len), r = 0;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		r = -errno;
		snprintf(why, len, "UFFDIO_API: %s", strerror(errno));
	}
	close(fd);
	if (!r)
		*ret = api.features;
	return r;
}

int rst_lazy_preflight(const struct rst_plan *p, int dirfd, const char *dir)
{
	uint64_t features;
	char why[256] = "";
	struct stat st;
	int r;

	if (!p->lazy)
		return 0;
	if (fstatat(dirfd, RST_LAZY_SOCK, &st, 0) < 0) {
		pr_err("no lazy-pages daemon at %s/%s: %s (start relive lazy-pages first)\n", dir,
		       RST_LAZY_SOCK, strerror(errno));
		return -ENOENT;
	}
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("no lazy-pages daemon at %s/%s: not a socket\n", dir, RST_LAZY_SOCK);
		return -ENOTSOCK;
	}
	r = uffd_supported(&features, why, sizeof(why));
	if (r) {
		pr_err("restore --lazy-pages needs userfaultfd: %s\n", why);
		return r;
	}
	pr_info("userfaultfd features 0x%" PRIx64 ", asking for 0x%" PRIx64 "\n", features,
		rst_lazy_features(features));
	for (size_t i = 0; i < p->nr_tasks; i++)
		pr_info("pid %u: %" PRIu64 " pages read now, %" PRIu64 " left to the daemon\n",
			p->tasks[i].pid, p->tasks[i].nr_present, p->tasks[i].nr_lazy);
	return 0;
}

void rst_lazy_close(struct rst_child *c)
{
	if (c->lazy_sock >= 0)
		close(TAKE_FD(c->lazy_sock));
	if (c->uffd >= 0)
		close(TAKE_FD(c->uffd));
}

static int open_uffd(struct rst_child *c)
{
	uint64_t supported;
	struct uffdio_api api = { .api = UFFD_API };
	char why[256] = "";
	int r;

	r = uffd_supported(&supported, why, sizeof(why));
	if (!r) {
		c->uffd = uffd_new(why, sizeof(why));
		r = c->uffd < 0 ? c->uffd : 0;
	}
	if (r) {
		rst_child_fail(c, "cannot open a userfaultfd: %s", why);
		return r;
	}
	api.features = rst_lazy_features(supported);
	if (ioctl(c->uffd, UFFDIO_API, &api) < 0) {
		rst_child_fail(c, "UFFDIO_API with features 0x%llx: %s",
			       (unsigned long long)api.features, strerror(errno));
		return -errno;
	}
	return 0;
}

static int connect_daemon(struct rst_child *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const int types[] = { SOCK_STREAM, SOCK_SEQPACKET };
	int r = 0;

	/* Through the directory fd: the images path may be longer than sun_path. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", c->dirfd,
		 RST_LAZY_SOCK);
	for (size_t i = 0; i < ARRAY_SIZE(types); i++) {
		c->lazy_sock = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (c->lazy_sock < 0) {
			r = -errno;
			rst_child_fail(c, "cannot create a unix socket: %s", strerror(errno));
			return r;
		}
		if (connect(c->lazy_sock, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return 0;
		r = -errno;
		close(TAKE_FD(c->lazy_sock));
		/* The daemon may listen on a SOCK_SEQPACKET socket: same messages. */
		if (r != -EPROTOTYPE)
			break;
	}
	rst_child_fail(c, "no lazy-pages daemon at %s/%s: %s", c->images_dir, RST_LAZY_SOCK,
		       strerror(-r));
	return r;
}

static int check_peer(struct rst_child *c)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(c->lazy_sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		rst_child_fail(c, "SO_PEERCRED on %s/%s: %s", c->images_dir, RST_LAZY_SOCK,
			       strerror(errno));
		return -errno;
	}
	if (cr.uid != 0 && cr.uid != getuid()) {
		rst_child_fail(c,
			       "the lazy-pages daemon at %s/%s (pid %d) runs as uid %u: only root "
			       "or uid %u may get the memory of pid %u",
			       c->images_dir, RST_LAZY_SOCK, (int)cr.pid, (unsigned)cr.uid,
			       (unsigned)getuid(), c->task->pid);
		return -EPERM;
	}
	return 0;
}

static int send_hello(struct rst_child *c)
{
	struct rst_lazy_hello h = {
		.magic = RST_LAZY_MAGIC,
		.version = RST_LAZY_VERSION,
		.pid = c->task->pid,
	};
	int r = util_send_fd(c->lazy_sock, &h, sizeof(h), c->uffd);

	if (r) {
		rst_child_fail(c, "sending the userfaultfd of pid %u to the lazy-pages daemon: %s",
			       c->task->pid, r == -EIO ? "short write" : strerror(-r));
		return r;
	}
	return 0;
}

static int wait_ack(struct rst_child *c)
{
	struct pollfd pfd = { .fd = c->lazy_sock, .events = POLLIN };
	uint64_t deadline = util_now_us() + RST_LAZY_ACK_TIMEOUT_MS * 1000ULL;
	char b;
	ssize_t n;

	for (;;) {
		uint64_t now = util_now_us();
		int r;

		if (now >= deadline) {
			rst_child_fail(c, "the lazy-pages daemon at %s/%s did not accept pid %u "
				       "within %u ms",
				       c->images_dir, RST_LAZY_SOCK, c->task->pid,
				       RST_LAZY_ACK_TIMEOUT_MS);
			return -ETIMEDOUT;
		}
		r = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (r > 0)
			break;
		if (r < 0 && errno != EINTR) {
			rst_child_fail(c, "poll on the handover socket: %s", strerror(errno));
			return -errno;
		}
	}
	do
		n = recv(c->lazy_sock, &b, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n == 1 && b == RST_LAZY_ACK)
		return 0;
	if (n == 1)
		rst_child_fail(c, "the lazy-pages daemon answered 0x%02x instead of 'A' for pid %u",
			       (unsigned char)b, c->task->pid);
	else if (n == 0)
		rst_child_fail(c, "the lazy-pages daemon closed the handover without accepting "
			       "pid %u (see its log)",
			       c->task->pid);
	else
		rst_child_fail(c, "reading the lazy-pages daemon's answer for pid %u: %s",
			       c->task->pid, strerror(errno));
	return n < 0 ? -errno : -ECONNREFUSED;
}

/* Keep both fds above the task's numbers: rst_files_install fills those. */
static int move_up(struct rst_child *c, int *fd)
{
	int nfd;

	if (*fd >= c->fd_base)
		return 0;
	nfd = fcntl(*fd, F_DUPFD_CLOEXEC, c->fd_base);
	if (nfd < 0) {
		rst_child_fail(c, "cannot move fd %d above %d: %s", *fd, c->fd_base,
			       strerror(errno));
		return -errno;
	}
	close(*fd);
	*fd = nfd;
	return 0;
}

int rst_lazy_handover(struct rst_child *c)
{
	int r;

	if (!c->plan->lazy)
		return 0;
	r = open_uffd(c);
	if (!r)
		r = connect_daemon(c);
	if (!r)
		r = check_peer(c);
	if (!r)
		r = send_hello(c);
	if (!r)
		r = wait_ack(c);
	if (!r)
		r = move_up(c, &c->uffd);
	if (!r)
		r = move_up(c, &c->lazy_sock);
	if (r)
		rst_lazy_close(c);
	return r;
}
