/*
 * A shell job (dumped and restored with --shell-job): started on a terminal
 * by a shell that leads the session, so stdin, stdout and stderr are the
 * controlling terminal of a session led from outside the dumped tree. The
 * check: fds 0-2 are still terminals and are the process's controlling
 * terminal now (/dev/tty is the same device), the session is still led by
 * another process, and a line written to fd 1 goes out ("shell-job: hello
 * from pid N", for the driver to find on the restore caller's terminal).
 * Plus the memory part, so a lazy migration has pages to fetch.
 */
#include "victim.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

extern const struct victim_part victim_part_mem;

static int on_ctty(const char *when, char *err, size_t len)
{
	pid_t sid = getsid(0);

	/* TIOCGSID answers only on the caller's controlling terminal. */
	for (int fd = 0; fd <= 2; fd++) {
		if (!isatty(fd) || tcgetsid(fd) != sid)
			return victim_fail(err, len, "%s: fd %d is not the controlling terminal "
					   "of session %d", when, fd, (int)sid);
	}
	if (sid == getpid())
		return victim_fail(err, len, "%s: leads its own session", when);
	return 0;
}

static int shell_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	return on_ctty("setup", err, len);
}

static int shell_check(struct victim_ctx *ctx, char *err, size_t len)
{
	char line[64];
	int n;

	if (on_ctty("after restore", err, len))
		return -1;
	n = snprintf(line, sizeof(line), "shell-job: hello from pid %d\n", (int)getpid());
	if (write(1, line, (size_t)n) != n)
		return victim_fail(err, len, "write to the terminal: %s", strerror(errno));
	return 0;
}

static const struct victim_part part_shell = {
	.name = "shell",
	.setup = shell_setup,
	.check = shell_check,
};

const struct victim_part *const victim_parts[] = { &victim_part_mem, &part_shell, NULL };
