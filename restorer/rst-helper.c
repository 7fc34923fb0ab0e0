/*
 * The helper: the child created with the task's PID that turns itself into
 * the dumped task. It first creates its children (each a helper of its own
 * task, so the tree is rebuilt with its PIDs, sessions and groups), then restores what normal C can (session and group, files,
 * cwd and root, umask, personality, name, rlimits), hands its userfaultfd to
 * the lazy-pages daemon in a lazy restore, prepares the restorer area and
 * jumps into the blob, which does the rest. It never logs: its
 * fds are being replaced, so errors travel to relive on the status pipe.
 */
#include "fault.h"
#include "rst.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void rst_child_fail(struct rst_child *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0]) /* the first error is the cause */
		return;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

static int set_session(struct rst_child *c)
{
	const struct rst_task *t = c->task;

	if (t->do_setsid && setsid() < 0) {
		rst_child_fail(c, "setsid: %s", strerror(errno));
		return -errno;
	}
	if (t->do_setpgid && setpgid(0, t->pgid == t->pid ? 0 : (pid_t)t->pgid) < 0) {
		rst_child_fail(c, "setpgid to %u: %s", t->pgid, strerror(errno));
		return -errno;
	}
	return 0;
}

static int set_root_cwd(struct rst_child *c)
{
	const TaskEntry *te = c->task->task;
	_cleanup_close_ int cwd = open(te->cwd, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (cwd < 0) {
		rst_child_fail(c, "cannot open the cwd %s: %s", te->cwd, strerror(errno));
		return -errno;
	}
	if (strcmp(te->root, "/") && chroot(te->root) < 0) {
		rst_child_fail(c, "chroot to %s: %s", te->root, strerror(errno));
		return -errno;
	}
	if (fchdir(cwd) < 0) {
		rst_child_fail(c, "chdir to %s: %s", te->cwd, strerror(errno));
		return -errno;
	}
	return 0;
}

static int set_misc(struct rst_child *c)
{
	const TaskEntry *te = c->task->task;
	const CoreEntry *core = c->task->threads[0].core;
	const char *name = core->name && core->name[0] ? core->name : te->comm;

	umask((mode_t)te->umask);
	if (personality(te->personality) < 0) {
		rst_child_fail(c, "personality 0x%x: %s", te->personality, strerror(errno));
		return -errno;
	}
	if (prctl(PR_SET_NAME, name, 0, 0, 0) < 0) {
		rst_child_fail(c, "PR_SET_NAME %s: %s", name, strerror(errno));
		return -errno;
	}
	return 0;
}

static int set_rlimits(struct rst_child *c)
{
	const TaskEntry *te = c->task->task;

	for (size_t i = 0; i < te->n_rlimits; i++) {
		const RlimitEntry *rl = te->rlimits[i];
		struct rlimit v = { .rlim_cur = rl->cur, .rlim_max = rl->max };

		if (prlimit(0, (__rlimit_resource_t)rl->resource, &v, NULL) < 0) {
			rst_child_fail(c, "setrlimit %u to %llu/%llu: %s", rl->resource,
				       (unsigned long long)rl->cur, (unsigned long long)rl->max,
				       strerror(errno));
			return -errno;
		}
	}
	return 0;
}

/*
 * A zombie child: it has exited by now or is about to; wait for that without
 * reaping it (the restored process does), and check its status. Its
 * SIGCHLD stays pending, blocked, until the blob discards it: the dumped
 * process had been told already.
 */
static int wait_zombie(struct rst_child *c, const struct rst_task *t)
{
	siginfo_t si = { 0 };
	int want = t->exit_status;

	while (waitid(P_PID, (id_t)t->pid, &si, WEXITED | WNOWAIT) < 0) {
		if (errno != EINTR) {
			rst_child_fail(c, "waitid for zombie %u: %s", t->pid, strerror(errno));
			return -errno;
		}
	}
	if (WIFSIGNALED(want) ? si.si_code == CLD_EXITED || si.si_status != WTERMSIG(want)
			      : si.si_code != CLD_EXITED || si.si_status != WEXITSTATUS(want)) {
		rst_child_fail(c, "zombie %u ended with code %d status %d, not wait status 0x%x",
			       t->pid, si.si_code, si.si_status, (unsigned int)want);
		return -ECHILD;
	}
	return 0;
}

/*
 * The helper of a zombie: it joins its session and group, reports, then
 * ends as the dumped process ended: with its exit code, or killed by the
 * same signal.
 */
static __attribute__((noreturn)) void become_zombie(struct rst_child *c)
{
	int st = c->task->exit_status;
	char k = RST_STATUS_OK;
	sigset_t set;

	(void)!util_write_full(c->status_fd, &k, 1);
	if (WIFSIGNALED(st)) {
		signal(WTERMSIG(st), SIG_DFL);
		sigemptyset(&set);
		sigaddset(&set, WTERMSIG(st));
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core file for a replayed death */
		kill(getpid(), WTERMSIG(st));
	}
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

/*
 * Create the children of this task with their PIDs, one at a time: each
 * sets its session and group and creates its own subtree before the next
 * sibling is created, so a group leader exists before its members join
 * (restore-cmd.c checks that order). Each child tells through a pipe that
 * it got there; end of file means it failed (its error is on its own
 * status pipe).
 */
static int fork_children(struct rst_child *c)
{
	const struct rst_plan *p = c->plan;
	size_t self = (size_t)(c->task - p->tasks);
	pid_t me = getpid();

	for (size_t i = self + 1; i < p->nr_tasks; i++) {
		const struct rst_task *t = &p->tasks[i];
		int bp[2];
		ssize_t n;
		pid_t pid;
		char b;

		if (t->parent != (int)self)
			continue;
		if (pipe2(bp, O_CLOEXEC) < 0) {
			rst_child_fail(c, "pipe2 for child %u: %s", t->pid, strerror(errno));
			return -errno;
		}
		pid = rst_clone_with_pid((pid_t)t->pid);
		if (pid == 0) {
			struct rst_child cc = *c;

			close(bp[0]);
			/* Only the parent itself may tell its own parent it got there. */
			if (c->built_fd >= 0)
				close(c->built_fd);
			cc.task = t;
			cc.parent = me;
			cc.status_fd = c->status_fds[i];
			cc.built_fd = bp[1];
			cc.err[0] = 0;
			rst_helper_main(&cc);
		}
		close(bp[1]);
		if (pid < 0) {
			close(bp[0]);
			if (pid == -EEXIST)
				rst_child_fail(c, "child pid %u was taken by another process", t->pid);
			else
				rst_child_fail(c, "clone3 of child pid %u: %s", t->pid,
					       strerror(-pid));
			return pid;
		}
		do
			n = read(bp[0], &b, 1);
		while (n < 0 && errno == EINTR);
		close(bp[0]);
		if (n != 1) {
			rst_child_fail(c, "child pid %u failed", t->pid);
			return -ECHILD;
		}
		if (t->zombie && wait_zombie(c, t))
			return -ECHILD;
	}
	return 0;
}

__attribute__((noreturn)) void rst_helper_main(struct rst_child *c)
{
	char msg[sizeof(c->err) + 2];
	int n;

	rst_helper_run(c);
	/* The daemon sees the handover end without 'R' and forgets this pid. */
	rst_lazy_close(c);
	n = snprintf(msg, sizeof(msg), "%c%s", RST_STATUS_ERR, c->err[0] ? c->err : "failed");
	(void)!util_write_full(c->status_fd, msg, (size_t)MIN(n, (int)sizeof(msg) - 1));
	_exit(1);
}

/* RELIVE_FAULT (common/fault.h): fail this step as a real failure would. */
static int inject(struct rst_child *c, const char *site)
{
	if (!fault_armed(site))
		return 0;
	rst_child_fail(c, "fault injected at %s (RELIVE_FAULT)", site);
	return -EIO;
}

int rst_helper_run(struct rst_child *c)
{
	sigset_t all;
	int r;

	/* Nothing may be delivered until the dumped mask comes back with sigreturn. */
	sigfillset(&all);
	if (sigprocmask(SIG_BLOCK, &all, NULL) < 0) {
		rst_child_fail(c, "sigprocmask: %s", strerror(errno));
		return -errno;
	}
	/* Until the blob is done, the helper must not outlive relive restore. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
		rst_child_fail(c, "PR_SET_PDEATHSIG: %s", strerror(errno));
		return -errno;
	}
	if (getppid() != c->parent) {
		rst_child_fail(c, "relive restore went away");
		return -ESRCH;
	}
	r = set_session(c);
	/* Before any fork: every process of the tree inherits the shared objects. */
	if (!r && c->task == &c->plan->tasks[0])
		r = rst_shm_create(c);
	if (!r && c->task == &c->plan->tasks[0])
		r = rst_shared_create(c);
	if (!r)
		r = fork_children(c);
	if (!r && c->task == &c->plan->tasks[0])
		r = inject(c, "restore-after-fork");
	if (!r && c->built_fd >= 0) {
		char b = 1;

		if (write(c->built_fd, &b, 1) != 1) {
			rst_child_fail(c, "cannot tell the parent helper: %s", strerror(errno));
			r = -errno;
		}
		close(c->built_fd);
		c->built_fd = -1;
	}
	if (!r && c->task->zombie)
		become_zombie(c);
	if (!r)
		r = rst_files_open_kept(c);
	if (!r)
		r = rst_lazy_handover(c);
	if (!r && c->task->nr_lazy)
		r = inject(c, "restore-lazy-handover");
	if (!r)
		r = rst_files_install(c);
	if (!r)
		r = rst_locks_take(c);
	if (!r)
		r = inject(c, "restore-after-files");
	if (!r)
		r = rst_blob_prepare(c);
	if (!r)
		r = set_root_cwd(c);
	if (!r)
		r = set_misc(c);
	if (!r)
		r = set_rlimits(c);
	if (!r)
		r = rst_blob_enter(c);
	return r;
}
