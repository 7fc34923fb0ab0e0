/*
 * `relive restore -D DIR [-d] [--pidfile F] [--lazy-pages]`: eager
 * (stop-and-copy) or lazy (post-copy) restore. Reads and validates every
 * image and checks the live system (files, caps, session, PID and, when lazy,
 * userfaultfd and the daemon's socket) before anything is created; then
 * clones the helper with the dumped PID and waits on the status pipe for the
 * blob's verdict. A lazy restore reads only the PRESENT pages: the helper
 * hands the uffd to the lazy-pages daemon (rst-lazy.c), which serves the rest. On failure
 * the helper is killed and reaped: the task is restored fully or not at all.
 * With -d, prints the PID and returns; otherwise waits for the task and
 * exits with its exit code, as criu restore does.
 */
#include "commands.h"
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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

static int plan_session(const struct relive_opts *opts, struct rst_task *t)
{
	pid_t sid = getsid(0), pgrp = getpgrp();

	if (t->sid == t->pid) {
		t->do_setsid = true;
	} else if ((pid_t)t->sid != sid) {
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
	} else if ((pid_t)t->pgid != pgrp) {
		if ((pid_t)t->sid == sid && kill(-(pid_t)t->pgid, 0) == 0) {
			t->do_setpgid = true;
		} else if (!opts->shell_job) {
			pr_err("pid %u was in process group %u, which is not in relive's session: "
			       "use --shell-job to restore it in relive's group\n",
			       t->pid, t->pgid);
			return -EINVAL;
		}
	}
	return 0;
}

static int preflight(const struct relive_opts *opts, int dirfd, struct rst_plan *p)
{
	int r = rst_files_check(p);

	if (!r)
		r = rst_lazy_preflight(p, dirfd, opts->images_dir);

	for (size_t i = 0; !r && i < p->nr_tasks; i++) {
		r = rst_creds_check(&p->tasks[i]);
		if (!r)
			r = plan_session(opts, &p->tasks[i]);
		if (!r)
			clamp_rlimits(&p->tasks[i]);
	}
	/* Last, as it may wait for a zombie of the dumped process to be reaped. */
	for (size_t i = 0; !r && i < p->nr_tasks; i++)
		for (size_t k = 0; !r && k < p->tasks[i].nr_threads; k++)
			r = rst_pid_wait_free((pid_t)p->tasks[i].threads[k].tid,
					      RST_ZOMBIE_WAIT_MS);
	return r;
}

static __attribute__((noreturn)) void run_child(const struct rst_plan *p,
						 const struct rst_task *t, pid_t parent,
						 const char *dir, int dirfd, int status_fd)
{
	struct rst_child c = {
		.plan = p,
		.task = t,
		.parent = parent,
		.images_dir = dir,
		.dirfd = dirfd,
		.status_fd = status_fd,
		.pages_fd = -1,
		.exe_fd = -1,
		.uffd = -1,
		.lazy_sock = -1,
	};
	char msg[sizeof(c.err) + 2];
	int n;

	rst_helper_run(&c);
	/* The daemon sees the handover end without 'R' and forgets this pid. */
	rst_lazy_close(&c);
	n = snprintf(msg, sizeof(msg), "%c%s", RST_STATUS_ERR, c.err[0] ? c.err : "failed");
	(void)!util_write_full(c.status_fd, msg, (size_t)MIN(n, (int)sizeof(msg) - 1));
	_exit(1);
}

/* Read the verdict; true when the blob said it is done. */
static bool read_status(int fd, pid_t pid)
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
	} else {
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

static void kill_helper(pid_t pid)
{
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int cmd_restore(const struct relive_opts *opts)
{
	uint64_t t0 = util_now_us(), t_clone, t_done, resume_rt;
	_cleanup_close_ int dirfd = -1;
	struct rst_plan plan;
	const struct rst_task *t;
	int pfd[2], r;
	pid_t pid;

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
	if (preflight(opts, dirfd, &plan)) {
		rst_plan_free(&plan);
		return 1;
	}
	t = &plan.tasks[0];
	if (pipe2(pfd, O_CLOEXEC)) {
		pr_perror("pipe2");
		rst_plan_free(&plan);
		return 1;
	}
	t_clone = util_now_us();
	pid = rst_clone_with_pid((pid_t)t->pid);
	if (pid == 0) {
		close(pfd[0]);
		run_child(&plan, t, getppid(), opts->images_dir, dirfd, pfd[1]);
	}
	close(pfd[1]);
	if (pid < 0) {
		if (pid == -EEXIST)
			pr_err("pid %u was taken by another process meanwhile\n", t->pid);
		else
			pr_err("clone3 with pid %u: %s\n", t->pid, strerror(-pid));
		close(pfd[0]);
		rst_plan_free(&plan);
		return 1;
	}
	r = read_status(pfd[0], pid) ? 0 : -1;
	close(pfd[0]);
	if (r) {
		kill_helper(pid);
		rst_plan_free(&plan);
		return 1;
	}
	t_done = util_now_us();
	resume_rt = realtime_us();
	pr_info("pid %d restored in %llu us (images and checks %llu us, process %llu us), "
		"%llu pages read, %llu left to the lazy-pages daemon\n",
		(int)pid, (unsigned long long)(t_done - t0), (unsigned long long)(t_clone - t0),
		(unsigned long long)(t_done - t_clone), (unsigned long long)t->nr_present,
		(unsigned long long)t->nr_lazy);
	r = write_stats(dirfd, t_done - t0, t->nr_present, resume_rt);
	if (!r && opts->pidfile)
		r = write_pidfile(dirfd, opts->pidfile, pid);
	rst_plan_free(&plan);
	if (r) {
		/* Not fully done: the restored task does not survive a failed restore. */
		kill_helper(pid);
		return 1;
	}
	if (opts->restore_detached) {
		printf("%d\n", (int)pid);
		fflush(stdout);
		return 0;
	}
	return wait_task(pid);
}
