/*
 * A descriptor relive cannot dump yet, at a fixed number, for the test that
 * the dump refuses it cleanly: a userfaultfd at fd 50 (UNSUP_UFFD) or a
 * netlink socket at fd 60 (UNSUP_SOCKET; unix sockets are supported now). The
 * check only requires the descriptors to be still open and working after the
 * refused dump.
 */
#include "victim.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UFFD_FD 50
#define SOCK_FD 60

#ifdef UNSUP_SOCKET
static ino_t sock_ino;
#endif

static int unsup_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	int fds[2];

	(void)ctx;
#ifdef UNSUP_UFFD
	struct uffdio_api api = { .api = UFFD_API };

	fds[0] = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fds[0] < 0 || ioctl(fds[0], UFFDIO_API, &api) || dup2(fds[0], UFFD_FD) != UFFD_FD)
		return victim_fail(err, len, "userfaultfd/UFFDIO_API/dup2: %s", strerror(errno));
	close(fds[0]);
#else
	struct stat st;

	(void)fds[1];
	fds[0] = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (fds[0] < 0 || dup2(fds[0], SOCK_FD) != SOCK_FD || fstat(SOCK_FD, &st))
		return victim_fail(err, len, "netlink socket/dup2: %s", strerror(errno));
	close(fds[0]);
	sock_ino = st.st_ino;
#endif
	return 0;
}

static int unsup_check(struct victim_ctx *ctx, char *err, size_t len)
{
	(void)ctx;
#ifdef UNSUP_UFFD
	struct pollfd p = { .fd = UFFD_FD, .events = POLLIN };

	/* Open, working and with no event queued. */
	if (poll(&p, 1, 0) != 0)
		return victim_fail(err, len, "userfaultfd %d: poll: %s", UFFD_FD, strerror(errno));
#else
	struct sockaddr_nl sa;
	socklen_t l = sizeof(sa);
	struct stat st;

	if (fstat(SOCK_FD, &st) || st.st_ino != sock_ino ||
	    getsockname(SOCK_FD, (struct sockaddr *)&sa, &l) || sa.nl_family != AF_NETLINK)
		return victim_fail(err, len, "netlink socket %d: %s", SOCK_FD, strerror(errno));
#endif
	return 0;
}

const struct victim_part victim_part_unsup = {
	.name = "unsupported",
	.setup = unsup_setup,
	.check = unsup_check,
};
