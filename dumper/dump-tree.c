/*
 * The process tree of a dump: the root and every descendant, found through
 * /proc/PID/task/TID/children and frozen top-down. A process's children are
 * read after it is frozen, so none can be added behind the scan (a frozen
 * process forks nothing); each child's VMA flags are read before its own
 * freeze, as for the root. A zombie child is recorded with its wait
 * status (its frozen parent cannot reap it meanwhile), nothing else. The
 * processes are kept in discovery order, parents before children: the
 * order of pstree.img. Also writes pstree.img.
 */
#include "dump.h"

#include "log.h"
#include "psite.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tree_add(struct dump_tree *t, const struct relive_opts *opts, int dirfd, pid_t pid)
{
	struct dump_ctx *c;

	for (size_t i = 0; i < t->nr; i++) {
		if (t->procs[i].pid == pid) {
			pr_err("pid %d appears twice in the process tree\n", (int)pid);
			return -EINVAL;
		}
	}
	if (t->nr == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct dump_ctx *n = realloc(t->procs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->procs = n;
		t->cap = cap;
	}
	c = &t->procs[t->nr++];
	memset(c, 0, sizeof(*c));
	c->opts = opts;
	c->dirfd = dirfd;
	c->pid = pid;
	return 0;
}

/* Append the children of frozen process IDX (every thread's) to the tree. */
static int add_children(struct dump_tree *t, size_t idx)
{
	const struct relive_opts *opts = t->procs[idx].opts;
	int dirfd = t->procs[idx].dirfd;
	pid_t pid = t->procs[idx].pid;
	const pid_t *tids;
	size_t nr;

	tids = psite_frozen_tids(t->procs[idx].frozen, &nr);
	for (size_t i = 0; i < nr; i++) {
		_cleanup_free_ char *buf = NULL;
		char path[80], *p, *end;
		int r;

		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)tids[i]);
		r = util_read_file(AT_FDCWD, path, &buf, NULL);
		if (r) {
			pr_err("pid %d: cannot read %s: %s\n", (int)pid, path, strerror(-r));
			return r;
		}
		for (p = buf; *p;) {
			long child = strtol(p, &end, 10);

			if (end == p)
				break;
			p = end;
			if (child < 2 || child > (1L << 22)) {
				pr_err("pid %d: bad child pid in %s\n", (int)pid, path);
				return -EINVAL;
			}
			r = tree_add(t, opts, dirfd, (pid_t)child);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * A child that exited between the read of its state and its freeze: its
 * parent is frozen, so it is (or within moments will be) a zombie that
 * nobody reaps before the dump ends. Recorded as one; anything else fails.
 */
static int exited_during_freeze(struct dump_ctx *c)
{
	for (int i = 0; i < 1000; i++) {
		if (proc_read_stat(c->pid, &c->stat) == 0 && c->stat.state == 'Z') {
			c->zombie = true;
			pr_info("pid %d (%s), child of %d, exited during the freeze: a zombie "
				"(wait status 0x%x)\n", (int)c->pid, c->stat.comm,
				(int)c->stat.ppid, (unsigned int)c->stat.exit_code);
			return 0;
		}
		usleep(1000);
	}
	pr_err("pid %d (a child of the tree) could not be frozen and is not a zombie\n",
	       (int)c->pid);
	return -ESRCH;
}

static int freeze_one(struct dump_tree *t, size_t idx)
{
	struct dump_ctx *c = &t->procs[idx];
	int r;

	r = proc_read_stat(c->pid, &c->stat);
	if (r) {
		pr_err("pid %d (a child of the tree) went away before the freeze\n", (int)c->pid);
		return r;
	}
	/* Its parent is frozen: it stays a zombie, unreaped, until the end of the dump. */
	if (c->stat.state == 'Z') {
		c->zombie = true;
		pr_info("pid %d (%s), child of %d, is a zombie (wait status 0x%x)\n", (int)c->pid,
			c->stat.comm, (int)c->stat.ppid, (unsigned int)c->stat.exit_code);
		return 0;
	}
	/* Costs in proportion to memory: before this process's freeze. */
	r = dmp_mm_prefreeze(c);
	if (r)
		return r;
	r = psite_freeze(c->pid, &c->frozen);
	if (r == -ESRCH && idx > 0)
		return exited_during_freeze(c);
	if (r == -ESRCH)
		pr_err("pid %d: exited before it could be frozen\n", (int)c->pid);
	return r;
}

int dmp_tree_freeze(struct dump_tree *t, const struct relive_opts *opts, int dirfd, pid_t root)
{
	int r = tree_add(t, opts, dirfd, root);

	for (size_t i = 0; !r && i < t->nr; i++) {
		r = freeze_one(t, i);
		if (!r && !t->procs[i].zombie)
			r = add_children(t, i);
	}
	if (!r && t->nr > 1)
		pr_info("pid %d: a tree of %zu processes frozen\n", (int)root, t->nr);
	return r;
}

void dmp_tree_unfreeze(struct dump_tree *t, bool kill)
{
	/* Children first: a killed parent leaves none of them running meanwhile. */
	for (size_t i = t->nr; i-- > 0;) {
		psite_unfreeze(t->procs[i].frozen, kill);
		t->procs[i].frozen = NULL;
	}
}

void dmp_tree_fini(struct dump_tree *t)
{
	for (size_t i = 0; i < t->nr; i++) {
		struct dump_ctx *c = &t->procs[i];

		free(c->thread_states);
		dmp_pending_free(c);
		dmp_posix_timers_free(c);
		free(c->runs.runs);
		free(c->pre_vmas);
	}
	free(t->procs);
	memset(t, 0, sizeof(*t));
}

static int write_entry(struct img *img, const struct dump_ctx *c)
{
	PstreeEntry pe = PSTREE_ENTRY__INIT;
	_cleanup_free_ uint32_t *threads = NULL;
	const pid_t *tids;
	size_t nr;

	if (c->zombie) {
		nr = 0;
		tids = NULL;
		pe.has_zombie = pe.zombie = true;
		pe.has_exit_status = true;
		pe.exit_status = c->stat.exit_code;
	} else {
		tids = psite_frozen_tids(c->frozen, &nr);
	}
	threads = calloc(nr + 1, sizeof(*threads));
	if (!threads)
		return -ENOMEM;
	pe.pid = (uint32_t)c->pid;
	pe.ppid = (uint32_t)c->stat.ppid;
	pe.pgid = (uint32_t)c->stat.pgid;
	pe.sid = (uint32_t)c->stat.sid;
	/* The leader first, then the other threads in freeze order. */
	threads[pe.n_threads++] = (uint32_t)c->pid;
	for (size_t i = 0; i < nr; i++)
		if (tids[i] != c->pid)
			threads[pe.n_threads++] = (uint32_t)tids[i];
	pe.threads = threads;
	return img_write(img, &pe.base);
}

int dmp_tree_write_pstree(struct dump_tree *t)
{
	struct img img;
	int r;

	r = img_open(&img, t->procs[0].dirfd, IMG_PSTREE, 0, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	for (size_t i = 0; !r && i < t->nr; i++) {
		r = write_entry(&img, &t->procs[i]);
		if (r)
			pr_err("%s\n", img.err);
	}
	if (img_close(&img) && !r) {
		pr_err("%s\n", img.err);
		r = -EIO;
	}
	return r;
}
