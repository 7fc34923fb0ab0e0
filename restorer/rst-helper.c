/*
 * The helper: the child created with the task's PID that turns itself into
 * the dumped task. It restores what normal C can (session and group, files,
 * cwd and root, umask, personality, name, rlimits), hands its userfaultfd to
 * the lazy-pages daemon in a lazy restore, prepares the restorer area and
 * jumps into the blob, which does the rest. It never logs: its
 * fds are being replaced, so errors travel to relive on the status pipe.
 */
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
	if (!r)
		r = rst_files_open_kept(c);
	if (!r)
		r = rst_lazy_handover(c);
	if (!r)
		r = rst_files_install(c);
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
