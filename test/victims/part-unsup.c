/*
 * A descriptor relive cannot dump yet, at a fixed number, for the test that
 * the dump refuses it cleanly: an epoll instance at fd 50 (UNSUP_EPOLL) or a
 * unix socket pair at fds 60 and 61 (UNSUP_SOCKET). The check only requires
 * the descriptors to be still open and working after the refused dump.
 */
#include "victim.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define EPOLL_FD 50
#define SOCK_FD 60

static int unsup_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	int fds[2];

	(void)ctx;
#ifdef UNSUP_EPOLL
	fds[0] = epoll_create1(0);
	if (fds[0] < 0 || dup2(fds[0], EPOLL_FD) != EPOLL_FD)
		return victim_fail(err, len, "epoll_create1/dup2: %s", strerror(errno));
	close(fds[0]);
#else
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) || dup2(fds[0], SOCK_FD) != SOCK_FD ||
	    dup2(fds[1], SOCK_FD + 1) != SOCK_FD + 1)
		return victim_fail(err, len, "socketpair/dup2: %s", strerror(errno));
	close(fds[0]);
	close(fds[1]);
#endif
	return 0;
}

static int unsup_check(struct victim_ctx *ctx, char *err, size_t len)
{
	(void)ctx;
#ifdef UNSUP_EPOLL
	struct epoll_event ev[1];

	if (epoll_wait(EPOLL_FD, ev, 1, 0) != 0)
		return victim_fail(err, len, "epoll fd %d: %s", EPOLL_FD, strerror(errno));
#else
	char c = 0;

	if (write(SOCK_FD, "s", 1) != 1 || read(SOCK_FD + 1, &c, 1) != 1 || c != 's')
		return victim_fail(err, len, "socket pair %d/%d: %s", SOCK_FD, SOCK_FD + 1,
				   strerror(errno));
#endif
	return 0;
}

const struct victim_part victim_part_unsup = {
	.name = "unsupported",
	.setup = unsup_setup,
	.check = unsup_check,
};
