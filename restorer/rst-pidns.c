/*
 * `restore --pidns`: the tree goes into a fresh pid namespace (and a mount
 * namespace of its own, with a /proc of that pid namespace), so its PIDs
 * are namespace-local and cannot collide with the host's. A tree whose root
 * was pid 1 (dumped as a namespace init) gets its root as the namespace's
 * init. Otherwise a small init, a fork of relive, is pid 1: it creates the
 * root helper with its dumped PID, closes every fd relive gave it, reaps
 * orphans, and exits with the root's status when the root exits (the
 * kernel then kills what is left in the namespace). Until relive restore
 * has released the tree the init dies with it (PDEATHSIG); relive then tells
 * it over a pipe and waits for its answer before it may exit. Owns nothing
 * of the helpers: they run unchanged inside the namespace.
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define RST_PIDNS_ACK_MS 5000

/* The init's failure, as a helper's: on the root task's status pipe, then exit. */
static __attribute__((noreturn)) void init_fail(int status_fd, const char *what, int err)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%cpid namespace init: %s: %s", RST_STATUS_ERR, what,
			 strerror(err));

	(void)!util_write_full(status_fd, msg, (size_t)MIN(n, (int)sizeof(msg) - 1));
	_exit(1);
}

/* Private mounts, and a /proc that shows this pid namespace. */
static int mount_proc(void)
{
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	return 0;
}

/*
 * pid 1 of the namespace, parent of the root: wait for relive's release
 * (end of file: relive failed or died, so the namespace goes), then reap
 * until the root exits and exit as it did.
 */
static __attribute__((noreturn)) void init_main(struct rst_pidns *ns, pid_t root)
{
	char b = 0;
	ssize_t n;
	int st;
	pid_t w;

	prctl(PR_SET_NAME, "relive-init", 0, 0, 0);
	/* Only the release pipes: relive must see the end of every status pipe. */
	for (int fd = 0; fd < 3; fd++)
		if (fd != ns->ctl_rd && fd != ns->ack_wr)
			close(fd);
	syscall(SYS_close_range, 3, (unsigned int)MIN(ns->ctl_rd, ns->ack_wr) - 1, 0);
	syscall(SYS_close_range, (unsigned int)MIN(ns->ctl_rd, ns->ack_wr) + 1,
		(unsigned int)MAX(ns->ctl_rd, ns->ack_wr) - 1, 0);
	syscall(SYS_close_range, (unsigned int)MAX(ns->ctl_rd, ns->ack_wr) + 1, ~0U, 0);
	do
		n = read(ns->ctl_rd, &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1 || b != RST_GO)
		_exit(1);
	if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0 || write(ns->ack_wr, &b, 1) != 1)
		_exit(1);
	close(ns->ctl_rd);
	close(ns->ack_wr);
	for (;;) {
		w = waitpid(-1, &st, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			_exit(1);
		if (w == root)
			_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
}

pid_t rst_pidns_clone(const struct rst_plan *p, struct rst_pidns *ns, int status_fd)
{
	pid_t root = (pid_t)p->tasks[0].pid, one = 1, pid;
	struct clone_args args = {
		.flags = CLONE_NEWPID | CLONE_NEWNS,
		.exit_signal = SIGCHLD,
	};
	int ctl[2], ack[2];

	ns->init = -1;
	ns->root_is_init = root == 1;
	if (pipe2(ctl, O_CLOEXEC) < 0) {
		pr_perror("pid namespace: cannot create the release pipe");
		return -errno;
	}
	if (pipe2(ack, O_CLOEXEC) < 0) {
		pr_perror("pid namespace: cannot create the release pipe");
		close(ctl[0]);
		close(ctl[1]);
		return -errno;
	}
	if (ns->root_is_init) {
		args.set_tid = (uint64_t)(uintptr_t)&one;
		args.set_tid_size = 1;
	}
	pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		int r = -errno;

		pr_perror("clone3 into a new pid namespace");
		close(ctl[0]);
		close(ctl[1]);
		close(ack[0]);
		close(ack[1]);
		return r;
	}
	if (pid > 0) {
		close(ctl[0]);
		close(ack[1]);
		ns->init = pid;
		ns->ctl_wr = ctl[1];
		ns->ack_rd = ack[0];
		return pid;
	}
	/* pid 1 of the new namespace */
	close(ctl[1]);
	close(ack[0]);
	ns->ctl_rd = ctl[0];
	ns->ack_wr = ack[1];
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		init_fail(status_fd, "PR_SET_PDEATHSIG", errno);
	if (mount_proc())
		init_fail(status_fd, "cannot mount a /proc of its own", errno);
	if (ns->root_is_init) {
		close(ns->ctl_rd);
		close(ns->ack_wr);
		return 0; /* the root itself: the blob clears PDEATHSIG */
	}
	pid = rst_clone_with_pid(root);
	if (pid == 0)
		return 0;
	if (pid < 0)
		init_fail(status_fd, "clone3 of the root with its pid", -pid);
	init_main(ns, pid);
}

int rst_pidns_release(struct rst_pidns *ns)
{
	struct pollfd pfd = { .fd = ns->ack_rd, .events = POLLIN };
	char b = RST_GO;
	int n;

	if (ns->root_is_init)
		return 0;
	if (write(ns->ctl_wr, &b, 1) != 1) {
		pr_perror("cannot release the pid namespace init %d", (int)ns->init);
		return -EIO;
	}
	do
		n = poll(&pfd, 1, RST_PIDNS_ACK_MS);
	while (n < 0 && errno == EINTR);
	if (n <= 0 || read(ns->ack_rd, &b, 1) != 1) {
		pr_err("the pid namespace init %d did not answer the release\n", (int)ns->init);
		return -ETIMEDOUT;
	}
	return 0;
}

void rst_pidns_close(struct rst_pidns *ns)
{
	if (ns->init <= 0 || ns->root_is_init)
		return;
	close(ns->ctl_wr);
	close(ns->ack_rd);
	ns->ctl_wr = ns->ack_rd = -1;
}

pid_t rst_pidns_root(const struct rst_pidns *ns)
{
	_cleanup_free_ char *buf = NULL;
	char path[80];
	int pid;

	if (ns->root_is_init)
		return ns->init;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)ns->init, (int)ns->init);
	if (util_read_file(AT_FDCWD, path, &buf, NULL) || sscanf(buf, "%d", &pid) != 1) {
		pr_err("cannot find the root under the pid namespace init %d (%s)\n",
		       (int)ns->init, path);
		return -ESRCH;
	}
	return (pid_t)pid;
}
