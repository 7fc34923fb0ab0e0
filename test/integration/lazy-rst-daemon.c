/*
 * lazy-rst-daemon MODE LAZY_DIR EAGER_DIR READY_FILE: a stand-in for
 * `relive lazy-pages` that tests the restorer's side of the handover
 * (docs/protocol.md) on its own. It listens on LAZY_DIR/lazy-pages.sock
 * (mode 0600), writes READY_FILE, takes one handover and checks it: the
 * magic, version and pid of LAZY_DIR's inventory, a peer that is that very
 * pid (SO_PEERCRED), exactly one fd and that it is a userfaultfd. Modes:
 *
 *   serve: answer 'A', wait for 'R' then EOF, then serve every fault from
 *          EAGER_DIR's pages (UFFDIO_COPY, 64 pages at most, clipped to the
 *          LAZY run) or with UFFDIO_ZEROPAGE outside LAZY runs and in ranges
 *          an UNMAP or REMOVE event dropped (a REMAP event is not handled:
 *          the daemon fails), and exit 0 when the process has exited,
 *          printing what it served.
 *   nack:  close the handover without 'A' (a daemon refusing the pid).
 *   silent: take the handover and never answer (a hung daemon): the
 *          restorer must give up on its own and hang up.
 *   stale: bind the socket and exit without listening (a dead daemon).
 *   foreign: become uid/gid 65534 before listening (LAZY_DIR must let it
 *          create the socket); the restorer must hang up without sending
 *          the uffd to a daemon that is neither root nor its own uid.
 */
#include "lazy-rst-img.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PG IMG_PAGE_SIZE
#define MAX_COPY 64U
#define MAX_PENDING 4096
#define SERVE_TIMEOUT_S 110
#define MAX_DROPPED 1024

struct hello {
	uint32_t magic, version, pid, reserved;
};

struct daemon {
	struct lr_task lazy, eager;
	int eager_pages;
	int uffd;
	uint8_t buf[MAX_COPY * PG];
	uint64_t pending[MAX_PENDING];
	size_t nr_pending;
	uint64_t faults, copied, zeroed, exists, events[4];
	/* ranges the process unmapped or MADV_DONTNEEDed: zero from now on */
	uint64_t dropped[MAX_DROPPED][2];
	size_t nr_dropped;
};

static bool dropped(const struct daemon *d, uint64_t addr)
{
	for (size_t i = 0; i < d->nr_dropped; i++)
		if (addr >= d->dropped[i][0] && addr < d->dropped[i][1])
			return true;
	return false;
}

static int die(const char *what)
{
	fprintf(stderr, "lazy-rst-daemon: %s\n", what);
	exit(1);
}

static int listen_sock(int dirfd, bool do_listen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	/* through the fd: only the directory's own permissions matter */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/lazy-pages.sock", dirfd);
	unlink(sa.sun_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	umask(077);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (chmod(sa.sun_path, 0600) < 0 || stat(sa.sun_path, &st) < 0 ||
	    (st.st_mode & 0777) != 0600)
		die("socket mode is not 0600");
	if (do_listen && listen(fd, 4) < 0)
		die("listen");
	return fd;
}

/* Receive and check the hello; returns the uffd. */
static int take_handover(int c, uint32_t want_pid)
{
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} cm;
	struct hello h;
	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	struct cmsghdr *cmsg;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char link[64], target[64] = "";
	int fd;
	ssize_t n;

	if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		die("SO_PEERCRED");
	n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	if (n != (ssize_t)sizeof(h))
		die("short hello");
	if (h.magic != 0x504c4c52 || h.version != 1 || h.reserved)
		die("bad hello magic/version/reserved");
	if (h.pid != want_pid || (uint32_t)cr.pid != want_pid) {
		fprintf(stderr, "hello pid %u, peer pid %d, image pid %u\n", h.pid, (int)cr.pid,
			want_pid);
		die("pid mismatch");
	}
	cmsg = CMSG_FIRSTHDR(&mh);
	if (!cmsg || cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len != CMSG_LEN(sizeof(int)) ||
	    (mh.msg_flags & MSG_CTRUNC))
		die("not exactly one fd in the hello");
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (readlink(link, target, sizeof(target) - 1) < 0 || !strstr(target, "userfaultfd"))
		die("the fd is not a userfaultfd");
	return fd;
}

static bool wait_byte(int c, char want, int ms)
{
	struct pollfd p = { .fd = c, .events = POLLIN };
	char b;

	return poll(&p, 1, ms) == 1 && read(c, &b, 1) == 1 && b == want;
}

/* 0 when done, 1 to retry after reading events (EAGAIN), -1 when the mm is gone. */
static int serve_one(struct daemon *d, uint64_t addr)
{
	const struct lr_run *lr = lr_find(&d->lazy, addr), *er;

	if (!lr || !(lr->flags & PE_LAZY) || dropped(d, addr)) {
		struct uffdio_zeropage z = { .range = { addr, PG } };

		if (ioctl(d->uffd, UFFDIO_ZEROPAGE, &z) == 0) {
			d->zeroed++;
			return 0;
		}
		if (errno == EAGAIN)
			return 1;
		if (errno == EEXIST) {
			struct uffdio_range w = { addr, PG };

			d->exists++;
			ioctl(d->uffd, UFFDIO_WAKE, &w);
			return 0;
		}
		return errno == ESRCH ? -1 : 0;
	}
	uint64_t end = lr->vaddr + lr->nr_pages * PG, n = (end - addr) / PG;

	if (n > MAX_COPY)
		n = MAX_COPY;
	for (uint64_t k = 1; k < n; k++) /* stop before a dropped page */
		if (dropped(d, addr + k * PG))
			n = k;
	er = lr_find(&d->eager, addr);
	if (!er || !(er->flags & PE_PRESENT) ||
	    er->vaddr + er->nr_pages * PG < addr + n * PG) {
		fprintf(stderr, "lazy page 0x%" PRIx64 " is not in the eager dump\n", addr);
		exit(1);
	}
	if (pread(d->eager_pages, d->buf, n * PG,
		  (off_t)img_pages_offset(er->page + (addr - er->vaddr) / PG)) != (ssize_t)(n * PG))
		die("short read of the eager pages");
	struct uffdio_copy cp = { .dst = addr, .src = (uint64_t)(uintptr_t)d->buf, .len = n * PG };

	if (ioctl(d->uffd, UFFDIO_COPY, &cp) == 0) {
		d->copied += n;
		return 0;
	}
	if (cp.copy > 0) { /* EEXIST further on: the faulting page is in */
		d->copied += (uint64_t)cp.copy / PG;
		return 0;
	}
	if (errno == EAGAIN)
		return 1;
	if (errno == EEXIST) {
		struct uffdio_range w = { addr, PG };

		d->exists++;
		ioctl(d->uffd, UFFDIO_WAKE, &w);
		return 0;
	}
	if (errno == ESRCH)
		return -1;
	if (errno == ENOENT) /* unmapped meanwhile */
		return 0;
	fprintf(stderr, "UFFDIO_COPY at 0x%" PRIx64 ": %s\n", addr, strerror(errno));
	exit(1);
}

/* Read every queued message; faults go to the pending list. */
static void read_msgs(struct daemon *d)
{
	struct uffd_msg m[64];
	ssize_t n;

	while ((n = read(d->uffd, m, sizeof(m))) > 0) {
		for (size_t i = 0; i < (size_t)n / sizeof(m[0]); i++) {
			switch (m[i].event) {
			case UFFD_EVENT_PAGEFAULT:
				if (d->nr_pending == MAX_PENDING)
					die("too many pending faults");
				d->pending[d->nr_pending++] =
					m[i].arg.pagefault.address & ~(uint64_t)(PG - 1);
				d->faults++;
				break;
			case UFFD_EVENT_FORK:
				close((int)m[i].arg.fork.ufd); /* children are not served here */
				d->events[0]++;
				break;
			case UFFD_EVENT_REMAP:
				die("REMAP event: not handled by this test daemon");
				break;
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				if (d->nr_dropped == MAX_DROPPED)
					die("too many dropped ranges");
				d->dropped[d->nr_dropped][0] = m[i].arg.remove.start;
				d->dropped[d->nr_dropped++][1] = m[i].arg.remove.end;
				d->events[m[i].event == UFFD_EVENT_REMOVE ? 2 : 3]++;
				break;
			default:
				die("unknown uffd event");
			}
		}
	}
	if (n < 0 && errno != EAGAIN)
		die("read of the uffd");
}

static int serve(struct daemon *d, uint32_t pid)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	time_t deadline = time(NULL) + SERVE_TIMEOUT_S;

	if (pidfd < 0)
		die("pidfd_open of the restored process");
	while (time(NULL) < deadline) {
		struct pollfd p[2] = { { .fd = d->uffd, .events = POLLIN },
				       { .fd = pidfd, .events = POLLIN } };

		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			die("poll");
		read_msgs(d);
		for (size_t i = 0; i < d->nr_pending;) {
			int r = serve_one(d, d->pending[i]);

			if (r < 0)
				return 0;
			if (r > 0) { /* events first */
				read_msgs(d);
				continue;
			}
			d->pending[i] = d->pending[--d->nr_pending];
		}
		if (p[1].revents & POLLIN)
			return 0;
	}
	die("the restored process did not exit in time");
	return 1;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	int edir, ldir, s, c, fd;
	FILE *f;

	if (argc != 5) {
		fprintf(stderr, "usage: %s serve|nack|silent|stale|foreign LAZY_DIR EAGER_DIR READY_FILE\n",
			argv[0]);
		return 2;
	}
	ldir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	edir = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ldir < 0 || edir < 0)
		die("open the image directories");
	if (lr_load(ldir, argv[2], &d.lazy) || lr_load(edir, argv[3], &d.eager))
		return 1;
	struct img ep;
	if (img_open(&ep, edir, IMG_PAGES, d.eager.pages_id, IMG_READ))
		die(ep.err);
	d.eager_pages = img_pages_fd(&ep);
	f = fopen(argv[4], "w"); /* before giving up root */
	if (!f)
		die("cannot create the ready file");
	if (!strcmp(argv[1], "foreign") &&
	    (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
		die("cannot become uid 65534");
	s = listen_sock(ldir, strcmp(argv[1], "stale") != 0);
	if (fprintf(f, "ready\n") < 0 || fclose(f))
		die("cannot write the ready file");
	if (!strcmp(argv[1], "stale"))
		return 0; /* the socket file stays, nobody listens */
	struct pollfd p = { .fd = s, .events = POLLIN };
	if (poll(&p, 1, 60000) != 1)
		die("no handover within 60 s");
	c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		die("accept");
	if (!strcmp(argv[1], "foreign")) {
		char b;

		if (recv(c, &b, 1, 0) != 0)
			die("the restorer sent something to a daemon of another uid");
		printf("the restorer hung up on uid 65534\n");
		return 0;
	}
	fd = take_handover(c, d.lazy.pid);
	if (!strcmp(argv[1], "silent")) {
		struct pollfd hp = { .fd = c, .events = POLLIN };
		char b;

		if (poll(&hp, 1, 60000) != 1 || recv(c, &b, 1, 0) != 0)
			die("the restorer did not hang up within 60 s");
		printf("the restorer gave up on pid %u\n", d.lazy.pid);
		return 0;
	}
	if (!strcmp(argv[1], "nack")) {
		printf("refused pid %u\n", d.lazy.pid);
		return 0;
	}
	d.uffd = fd;
	if (write(c, "A", 1) != 1)
		die("write 'A'");
	if (!wait_byte(c, 'R', 30000))
		die("no 'R' from the restorer within 30 s");
	/* the blob closes its end right after 'R' */
	char b;
	if (read(c, &b, 1) != 0)
		die("the handover socket stayed open after 'R'");
	close(c);
	serve(&d, d.lazy.pid);
	printf("served pid %u: %" PRIu64 " faults, %" PRIu64 " pages copied, %" PRIu64
	       " zero pages, %" PRIu64 " already there; events fork %" PRIu64 " remap %" PRIu64
	       " remove %" PRIu64 " unmap %" PRIu64 "\n",
	       d.lazy.pid, d.faults, d.copied, d.zeroed, d.exists, d.events[0], d.events[1],
	       d.events[2], d.events[3]);
	return 0;
}
