/*
 * Freezing and releasing a process: PTRACE_SEIZE + PTRACE_INTERRUPT on every
 * thread until the task list is stable, and the way back (detach with held
 * signals re-sent, or SIGKILL). Remote code execution lives in rsys.c and
 * infect.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "psite-internal.h"
#include "util.h"

#define FREEZE_MAX_PASSES 64

struct psite_thread *psite_thread_find(struct psite_frozen *f, pid_t tid)
{
	for (size_t i = 0; i < f->nr; i++)
		if (f->threads[i].tid == tid)
			return &f->threads[i];
	return NULL;
}

void psite_hold_signal(struct psite_thread *th, int sig)
{
	siginfo_t si;

	if (ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &si)) {
		memset(&si, 0, sizeof(si));
		si.si_signo = sig;
		si.si_code = SI_USER;
	}
	if (th->nr_held == PSITE_MAX_HELD_SIGS) {
		pr_warn("tid %d: too many signals while frozen, signal %d dropped\n", (int)th->tid,
			sig);
		return;
	}
	pr_debug("tid %d: holding signal %d (code %d) until detach\n", (int)th->tid, sig,
		 si.si_code);
	th->held[th->nr_held++] = si;
}

/* 'Z' or 'X' in /proc/PID/task/TID/stat: cannot be seized, nothing to freeze. */
static bool tid_is_dead(pid_t pid, pid_t tid)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *p;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	if (util_read_file(AT_FDCWD, path, &buf, NULL))
		return true;
	p = strrchr(buf, ')');
	return !p || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X';
}

static int add_thread(struct psite_frozen *f, pid_t tid)
{
	if (f->nr == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct psite_thread *t = realloc(f->threads, cap * sizeof(*t));
		pid_t *tids;

		if (!t)
			return -ENOMEM;
		f->threads = t;
		tids = realloc(f->tids, cap * sizeof(*tids));
		if (!tids)
			return -ENOMEM;
		f->tids = tids;
		f->cap = cap;
	}
	memset(&f->threads[f->nr], 0, sizeof(f->threads[0]));
	f->threads[f->nr].tid = tid;
	f->tids[f->nr] = tid;
	f->nr++;
	return 0;
}

static void drop_last_thread(struct psite_frozen *f)
{
	f->nr--;
}

/* Wait until freshly seized TH reports its interrupt (or group-) stop. 1: it exited. */
static int wait_interrupt_stop(struct psite_thread *th)
{
	for (;;) {
		int status;

		if (waitpid(th->tid, &status, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			pr_perror("tid %d: waitpid after PTRACE_INTERRUPT", (int)th->tid);
			return -errno;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return 1;
		if (!WIFSTOPPED(status))
			continue;
		if (status >> 16 == PTRACE_EVENT_STOP) {
			th->group_stop = WSTOPSIG(status) != SIGTRAP;
			return 0;
		}
		if (status >> 16 == 0) {
			/* A signal-delivery-stop came first: hold it, let the interrupt trap. */
			psite_hold_signal(th, WSTOPSIG(status));
			if (ptrace(PTRACE_CONT, th->tid, NULL, NULL) && errno != ESRCH) {
				pr_perror("tid %d: PTRACE_CONT while freezing", (int)th->tid);
				return -errno;
			}
			continue;
		}
		pr_err("tid %d: unexpected stop 0x%x while freezing\n", (int)th->tid, status);
		return -EPROTO;
	}
}

static int seize_one(struct psite_frozen *f, pid_t tid)
{
	int r;

	if (ptrace(PTRACE_SEIZE, tid, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD)) {
		r = -errno;
		if (r == -ESRCH || (r == -EPERM && tid_is_dead(f->pid, tid)))
			return 0; /* exited meanwhile: not ours to freeze */
		pr_perror("pid %d: cannot seize thread %d", (int)f->pid, (int)tid);
		return r;
	}
	r = add_thread(f, tid);
	if (r) {
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
		return r;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) && errno != ESRCH) {
		r = -errno;
		pr_perror("pid %d: cannot interrupt thread %d", (int)f->pid, (int)tid);
		return r;
	}
	r = wait_interrupt_stop(&f->threads[f->nr - 1]);
	if (r == 1) {
		pr_debug("pid %d: thread %d exited while seized\n", (int)f->pid, (int)tid);
		drop_last_thread(f);
		return 0;
	}
	return r ? r : 1;
}

/* One pass over /proc/PID/task: returns the number of newly frozen threads. */
static int freeze_pass(struct psite_frozen *f)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int r = 0, nr_new = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)f->pid);
	d = opendir(path);
	if (!d) {
		r = errno == ENOENT ? -ESRCH : -errno;
		pr_perror("pid %d: cannot open %s", (int)f->pid, path);
		return r;
	}
	while ((de = readdir(d))) {
		uint64_t tid;

		if (de->d_name[0] == '.' || util_parse_u64(de->d_name, 1, INT32_MAX, &tid))
			continue;
		if (psite_thread_find(f, (pid_t)tid))
			continue;
		r = seize_one(f, (pid_t)tid);
		if (r < 0)
			break;
		nr_new += r;
	}
	closedir(d);
	return r < 0 ? r : nr_new;
}

int psite_freeze(pid_t pid, struct psite_frozen **ret)
{
	struct psite_frozen *f;
	int r = 0, pass;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->pid = pid;
	for (pass = 0; pass < FREEZE_MAX_PASSES; pass++) {
		r = freeze_pass(f);
		if (r <= 0)
			break;
	}
	if (r == 0 && f->nr == 0) {
		/* The caller decides whether an exited process is an error. */
		pr_info("pid %d: no live thread to freeze\n", (int)pid);
		r = -ESRCH;
	} else if (r > 0) {
		pr_err("pid %d: task list still growing after %d passes\n", (int)pid, pass);
		r = -EAGAIN;
	}
	if (r < 0) {
		psite_unfreeze(f, false);
		return r;
	}
	pr_info("pid %d: froze %zu thread(s)%s\n", (int)pid, f->nr,
		psite_frozen_group_stopped(f) ? " (group-stopped)" : "");
	*ret = f;
	return 0;
}

pid_t psite_frozen_pid(const struct psite_frozen *f)
{
	return f->pid;
}

const pid_t *psite_frozen_tids(const struct psite_frozen *f, size_t *ret_nr)
{
	*ret_nr = f->nr;
	return f->tids;
}

bool psite_frozen_group_stopped(const struct psite_frozen *f)
{
	for (size_t i = 0; i < f->nr; i++)
		if (f->threads[i].group_stop)
			return true;
	return false;
}

/* Queue the held signals again; they are delivered once the thread is detached. */
static void resend_held(pid_t pid, struct psite_thread *th)
{
	for (int i = 0; i < th->nr_held; i++) {
		siginfo_t *si = &th->held[i];
		long r = -1;

		/* Only "queued" codes can be forged for another task; else a plain tgkill. */
		if (si->si_code < 0 && si->si_code != SI_TKILL)
			r = syscall(SYS_rt_tgsigqueueinfo, pid, th->tid, si->si_signo, si);
		if (r)
			r = syscall(SYS_tgkill, pid, th->tid, si->si_signo);
		if (r)
			pr_perror("tid %d: cannot re-send held signal %d", (int)th->tid,
				  si->si_signo);
	}
	th->nr_held = 0;
}

static pid_t read_ppid(pid_t pid)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *p;
	int ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(AT_FDCWD, path, &buf, NULL))
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		return -1;
	return ppid;
}

static int kill_frozen(struct psite_frozen *f)
{
	bool our_child = read_ppid(f->pid) == getpid();
	int r = 0;

	if (kill(f->pid, SIGKILL)) {
		r = -errno;
		pr_perror("pid %d: cannot kill", (int)f->pid);
		return r;
	}
	/*
	 * Collect the tracer's exit notifications so the real parent can reap:
	 * the other threads first, as the leader's is only reported once they
	 * are all reaped.
	 */
	for (size_t i = 0; i < f->nr; i++) {
		int status;

		if (f->threads[i].tid == f->pid)
			continue;
		while (waitpid(f->threads[i].tid, &status, __WALL) < 0 && errno == EINTR)
			;
	}
	if (!our_child && psite_thread_find(f, f->pid)) {
		int status;

		while (waitpid(f->pid, &status, __WALL) < 0 && errno == EINTR)
			;
	}
	return 0;
}

int psite_unfreeze(struct psite_frozen *f, bool kill)
{
	int r = 0;

	if (!f)
		return 0;
	if (kill && f->nr) {
		r = kill_frozen(f);
	} else {
		for (size_t i = 0; i < f->nr; i++) {
			struct psite_thread *th = &f->threads[i];

			resend_held(f->pid, th);
			if (ptrace(PTRACE_DETACH, th->tid, NULL, NULL) && errno != ESRCH) {
				if (!r)
					r = -errno;
				pr_perror("pid %d: cannot detach from thread %d", (int)f->pid,
					  (int)th->tid);
			}
		}
	}
	free(f->threads);
	free(f->tids);
	free(f);
	return r;
}
