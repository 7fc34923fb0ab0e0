/*
 * `relive restore -D DIR [-d] [--pidfile F] [--lazy-pages]`: eager
 * (stop-and-copy) or lazy (post-copy) restore. Reads and validates every
 * image and checks the live system (files, caps, session, PID and, when lazy,
 * userfaultfd and the daemon's socket) before anything is created; then
 * clones the root helper with the dumped PID (it creates the rest of the
 * tree, rst-helper.c) and waits on each process's status pipe for its
 * blob's verdict. Every blob then waits on the go pipe: the tree resumes
 * together once all are ready, or is killed whole. A lazy restore reads only the PRESENT pages: the helper
 * hands the uffd to the lazy-pages daemon (rst-lazy.c), which serves the rest. On failure
 * the helper is killed and reaped: the task is restored fully or not at all.
 * With --pidns the tree goes into a new pid namespace (rst-pidns.c).
 * With -d, prints the PID (the host's) and returns; otherwise waits for the
 * task and exits with its exit code, as criu restore does.
 */
#include "commands.h"
#include "rst.h"
#include "rst-inet.h"

#include "fault.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void clamp_rlimits(struct rst_task *t)
{
	for (size_t i = 0; i < t->task->n_rlimits; i++) {
		RlimitEntry *rl = t->task->rlimits[i];
		struct rlimit cur;

		if (getrlimit((__rlimit_resource_t)rl->resource, &cur) || rl->max <= cur.rlim_max)
			continue;
		/* Without CAP_SYS_RESOURCE a hard limit can only be lowered. */
		pr_warn("pid %u: rlimit %u: hard limit %llu lowered to relive's %llu\n", t->pid,
			rl->resource, (unsigned long long)rl->max,
			(unsigned long long)cur.rlim_max);
		rl->max = cur.rlim_max;
		if (rl->cur > rl->max)
			rl->cur = rl->max;
	}
}

/* The task of the plan with this PID, or NULL. */
static const struct rst_task *find_task(const struct rst_plan *p, uint32_t pid)
{
	for (size_t i = 0; i < p->nr_tasks; i++)
		if (p->tasks[i].pid == pid)
			return &p->tasks[i];
	return NULL;
}

/*
 * Session and group of task T. A child inherits both from its parent (which
 * sets its own before creating children); a session leader calls setsid(),
 * a group leader setpgid(0, 0); a member of another group of the tree joins
 * it when its leader was created before it in the same session. The root
 * starts from relive's session and group.
 */
static int plan_session(const struct relive_opts *opts, const struct rst_plan *p,
			struct rst_task *t)
{
	const struct rst_task *par = t->parent >= 0 ? &p->tasks[t->parent] : NULL;
	const struct rst_task *leader;
	pid_t sid = getsid(0), pgrp = getpgrp();

	if (t->sid == t->pid) {
		t->do_setsid = true;
	} else if (par && t->sid != par->sid) {
		pr_err("pid %u is in session %u, its parent %u in session %u: a session that is "
		       "not inherited is not supported\n",
		       t->pid, t->sid, par->pid, par->sid);
		return -ENOTSUP;
	} else if (!par && (pid_t)t->sid != sid) {
		if (!opts->shell_job) {
			pr_err("pid %u was in session %u, relive runs in session %d: restore from "
			       "that session or use --shell-job\n",
			       t->pid, t->sid, (int)sid);
			return -EINVAL;
		}
		pr_warn("pid %u: joining session %d instead of %u (--shell-job)\n", t->pid,
			(int)sid, t->sid);
	}
	if (t->pgid == t->pid) {
		t->do_setpgid = !t->do_setsid;
		return 0;
	}
	if (t->do_setsid) {
		pr_err("pid %u leads session %u but is in group %u: not possible\n", t->pid, t->sid,
		       t->pgid);
		return -EINVAL;
	}
	if (par && t->pgid == par->pgid)
		return 0; /* inherited */
	leader = find_task(p, t->pgid);
	if (leader) {
		if (leader->order > t->order || leader->sid != t->sid) {
			pr_err("pid %u is in the group of pid %u, which is created after it or in "
			       "another session: not supported\n",
			       t->pid, leader->pid);
			return -ENOTSUP;
		}
		t->do_setpgid = true;
		return 0;
	}
	if (!par && (pid_t)t->pgid == pgrp)
		return 0;
	if ((pid_t)t->sid == sid && kill(-(pid_t)t->pgid, 0) == 0) {
		t->do_setpgid = true;
	} else if (par) {
		pr_err("pid %u was in process group %u, which has no leader in the tree nor in "
		       "relive's session\n",
		       t->pid, t->pgid);
		return -EINVAL;
	} else if (!opts->shell_job) {
		pr_err("pid %u was in process group %u, which is not in relive's session: "
		       "use --shell-job to restore it in relive's group\n",
		       t->pid, t->pgid);
		return -EINVAL;
	}
	return 0;
}

static int preflight(const struct relive_opts *opts, int dirfd, struct rst_plan *p)
{
	int r = rst_files_check(p);

	if (!r && p->tasks[0].pid == 1 && !opts->pidns) {
		pr_err("pid 1 was the init of a pid namespace when dumped: restore it with "
		       "--pidns\n");
		r = -EINVAL;
	}

	if (!r)
		r = rst_lazy_preflight(p, dirfd, opts->images_dir);

	for (size_t i = 0; !r && i < p->nr_tasks; i++) {
		if (!p->tasks[i].zombie)
			r = rst_creds_check(&p->tasks[i]);
		if (!r)
			r = plan_session(opts, p, &p->tasks[i]);
		if (!r && !p->tasks[i].zombie)
			clamp_rlimits(&p->tasks[i]);
	}
	/* Last, as it may wait for a zombie of the dumped process to be reaped. */
	for (size_t i = 0; !r && !opts->pidns && i < p->nr_tasks; i++)
		for (size_t k = 0; !r && k < p->tasks[i].nr_threads; k++)
			r = rst_pid_wait_free((pid_t)p->tasks[i].threads[k].tid,
					      RST_ZOMBIE_WAIT_MS);
	return r;
}

static __attribute__((noreturn)) void run_child(const struct rst_plan *p, pid_t parent,
						 const char *dir, int dirfd, const int *status_fds,
						 int go_fd)
{
	struct rst_child c = {
		.plan = p,
		.task = &p->tasks[0],
		.parent = parent,
		.images_dir = dir,
		.dirfd = dirfd,
		.status_fd = status_fds[0],
		.status_fds = status_fds,
		.go_fd = go_fd,
		.built_fd = -1,
		.pages_fd = -1,
		.exe_fd = -1,
		.uffd = -1,
		.lazy_sock = -1,
	};

	rst_helper_main(&c);
}

/* Parent pid of PID from /proc, 0 if it is gone. */
static pid_t stat_ppid(pid_t pid)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *rp;
	int ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(AT_FDCWD, path, &buf, NULL))
		return 0;
	rp = strrchr(buf, ')');
	if (!rp || sscanf(rp + 1, " %*c %d", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

/*
 * Kill whatever of the tree exists: the root, whose death takes every helper
 * still armed with PR_SET_PDEATHSIG down with it (and so on down the tree),
 * then anything the kernel hands to relive, the subreaper, until it has no
 * child left. Only processes that are relive's children are ever killed.
 */
static void kill_tree(const struct rst_plan *p, pid_t root)
{
	pid_t me = getpid();

	kill(root, SIGKILL);
	for (;;) {
		pid_t w;

		for (size_t i = 1; i < p->nr_tasks; i++)
			if (stat_ppid((pid_t)p->tasks[i].pid) == me)
				kill((pid_t)p->tasks[i].pid, SIGKILL);
		w = waitpid(-1, NULL, 0);
		if (w < 0 && errno != EINTR)
			break;
	}
}

/* Read the verdict; true when the blob said it is done. */
static bool read_status(int fd, pid_t pid, bool quiet)
{
	char buf[1200];
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	buf[len] = 0;
	if (len && buf[0] == RST_STATUS_OK)
		return true;
	if (len && buf[0] == RST_STATUS_ERR) {
		size_t l = strlen(buf);

		if (l > 1 && buf[l - 1] == '\n')
			buf[l - 1] = 0;
		pr_err("pid %d: %s\n", (int)pid, buf + 1);
	} else if (!quiet) {
		pr_err("pid %d: the restore helper died without a report\n", (int)pid);
	}
	return false;
}

static uint64_t realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* When the dump froze the task, from stats-dump.img if the directory has one. */
static bool freeze_start(int dirfd, uint64_t *ret)
{
	ProtobufCMessage *msg = NULL;
	struct img img;
	bool ok = false;

	if (faccessat(dirfd, "stats-dump.img", F_OK, 0))
		return false;
	if (!img_open(&img, dirfd, IMG_STATS_DUMP, 0, IMG_READ) && !img_read_one(&img, &msg)) {
		const StatsEntry *se = (const StatsEntry *)msg;

		if (se->dump && se->dump->has_freeze_start_realtime_us) {
			*ret = se->dump->freeze_start_realtime_us;
			ok = true;
		}
	}
	img_close(&img);
	img_msg_free(msg);
	return ok;
}

static int write_stats(int dirfd, uint64_t time_us, uint64_t pages, uint64_t resume_rt)
{
	StatsEntry se = STATS_ENTRY__INIT;
	RestoreStatsEntry rs = RESTORE_STATS_ENTRY__INIT;
	uint64_t freeze;
	struct img img;
	int r;

	rs.restore_time_us = time_us;
	rs.pages_read = pages;
	rs.has_resume_realtime_us = true;
	rs.resume_realtime_us = resume_rt;
	if (freeze_start(dirfd, &freeze) && freeze <= resume_rt) {
		rs.has_frozen_window_us = true;
		rs.frozen_window_us = resume_rt - freeze;
	}
	se.restore = &rs;
	r = img_open(&img, dirfd, IMG_STATS_RESTORE, 0, IMG_WRITE);
	if (!r)
		r = img_write(&img, &se.base);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

static int write_pidfile(int dirfd, const char *path, pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	/* As for the log file, a relative path lands in the images directory. */
	_cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || util_write_full(fd, buf, (size_t)n)) {
		pr_perror("cannot write the pidfile %s", path);
		return -EIO;
	}
	return 0;
}

static int wait_task(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR) {
			pr_perror("waitpid %d", (int)pid);
			return 1;
		}
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	pr_msg("restored pid %d was killed by signal %d\n", (int)pid, WTERMSIG(st));
	return 128 + WTERMSIG(st);
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/*
 * Every task's verdict, in plan order; the first failure stops the wait,
 * the rest of the tree is killed and the other helpers' own errors shown.
 */
static int collect(const struct rst_plan *p, pid_t root, int *rd, int *go_wr)
{
	size_t i;

	for (i = 0; i < p->nr_tasks; i++)
		if (!read_status(rd[i], (pid_t)p->tasks[i].pid, false))
			break;
	if (i == p->nr_tasks)
		return 0;
	/* The blobs already waiting see the end of the go pipe and exit. */
	close(*go_wr);
	*go_wr = -1;
	kill_tree(p, root);
	for (size_t k = i + 1; k < p->nr_tasks; k++)
		read_status(rd[k], (pid_t)p->tasks[k].pid, true);
	if (p->nr_tasks > 1)
		pr_err("restore of the tree of pid %d failed: every process created was killed\n",
		       (int)root);
	return -1;
}

/* Let every blob go: one byte each. */
static int release(const struct rst_plan *p, int go_wr)
{
	size_t n = p->nr_tasks;
	char buf[64];

	memset(buf, RST_GO, sizeof(buf));
	while (n) {
		size_t k = MIN(n, sizeof(buf));

		if (util_write_full(go_wr, buf, k)) {
			pr_perror("cannot release the restored processes");
			return -1;
		}
		n -= k;
	}
	return 0;
}

int cmd_restore(const struct relive_opts *opts)
{
	uint64_t t0 = util_now_us(), t_clone, t_done, resume_rt, pages = 0, lazy = 0;
	_cleanup_close_ int dirfd = -1;
	_cleanup_free_ int *rd = NULL, *wr = NULL;
	struct rst_plan plan;
	struct rst_pidns ns = { .init = -1 };
	const struct rst_task *t;
	int go[2] = { -1, -1 };
	size_t n;
	int r = 0;
	pid_t pid, shown;

	if (!opts->images_dir) {
		pr_err("restore needs -D DIR\n");
		return 2;
	}
	dirfd = open(opts->images_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		pr_perror("cannot open the images directory %s", opts->images_dir);
		return 1;
	}
	if (rst_plan_load(dirfd, opts, &plan))
		return 1;
	if (fault_at("restore-plan")) {
		rst_plan_free(&plan);
		return 1;
	}
	if (preflight(opts, dirfd, &plan)) {
		rst_inet_unlock(&plan);
		rst_plan_free(&plan);
		return 1;
	}
	t = &plan.tasks[0];
	n = plan.nr_tasks;
	rd = malloc(n * sizeof(int));
	wr = malloc(n * sizeof(int));
	if (!rd || !wr) {
		rst_plan_free(&plan);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		rd[i] = wr[i] = -1;
	for (size_t i = 0; !r && i < n; i++) {
		int pfd[2];

		r = pipe2(pfd, O_CLOEXEC);
		if (!r) {
			rd[i] = pfd[0];
			wr[i] = pfd[1];
		}
	}
	if (!r)
		r = pipe2(go, O_CLOEXEC);
	/* Orphans of a failed tree come back to relive, which kills them. */
	if (!r && n > 1)
		r = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	if (r) {
		pr_perror("cannot set up the status pipes");
		close_all(rd, n);
		close_all(wr, n);
		close_all(go, 2);
		rst_plan_free(&plan);
		return 1;
	}
	t_clone = util_now_us();
	if (opts->pidns)
		pid = rst_pidns_clone(&plan, &ns, wr[0]);
	else
		pid = rst_clone_with_pid((pid_t)t->pid);
	if (pid == 0)
		run_child(&plan, getppid(), opts->images_dir, dirfd, wr, go[0]);
	close_all(wr, n);
	if (pid < 0) {
		if (pid == -EEXIST)
			pr_err("pid %u was taken by another process meanwhile\n", t->pid);
		else if (!opts->pidns)
			pr_err("clone3 with pid %u: %s\n", t->pid, strerror(-pid));
		rst_inet_unlock(&plan);
		close_all(rd, n);
		close_all(go, 2);
		rst_plan_free(&plan);
		return 1;
	}
	r = collect(&plan, pid, rd, &go[1]);
	/* Every socket is back (or the restore failed): the peers may talk again. */
	rst_inet_unlock(&plan);
	close_all(rd, n);
	/* In a pid namespace the tree's numbers are its own: show the host's. */
	shown = pid;
	if (!r && opts->pidns) {
		shown = rst_pidns_root(&ns);
		if (shown < 0) {
			r = -1;
			close(go[1]);
			go[1] = -1;
			kill_tree(&plan, pid);
		}
	}
	if (!r && opts->pidfile) {
		r = write_pidfile(dirfd, opts->pidfile, shown);
		if (r) {
			close(go[1]);
			go[1] = -1;
			kill_tree(&plan, pid);
		}
	}
	if (!r)
		r = release(&plan, go[1]);
	if (!r && opts->pidns && rst_pidns_release(&ns)) {
		r = -1;
		kill_tree(&plan, pid);
	}
	rst_pidns_close(&ns);
	close_all(go, 2);
	if (n > 1)
		prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
	if (r) {
		rst_plan_free(&plan);
		return 1;
	}
	t_done = util_now_us();
	resume_rt = realtime_us();
	for (size_t i = 0; i < n; i++) {
		pages += plan.tasks[i].nr_present;
		lazy += plan.tasks[i].nr_lazy;
	}
	if (opts->pidns)
		pr_info("pid %u restored in a new pid namespace as host pid %d (its init: %d)\n",
			t->pid, (int)shown, (int)pid);
	pr_info("pid %d restored (%zu processes) in %llu us (images and checks %llu us, "
		"processes %llu us), %llu pages read, %llu left to the lazy-pages daemon\n",
		(int)pid, n, (unsigned long long)(t_done - t0), (unsigned long long)(t_clone - t0),
		(unsigned long long)(t_done - t_clone), (unsigned long long)pages,
		(unsigned long long)lazy);
	r = write_stats(dirfd, t_done - t0, pages, resume_rt);
	rst_plan_free(&plan);
	if (r) {
		/* Not fully done: the restored task does not survive a failed restore. */
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return 1;
	}
	if (opts->restore_detached) {
		printf("%d\n", (int)shown);
		fflush(stdout);
		return 0;
	}
	return wait_task(pid);
}
