/*
 * The restore plan: every image of the directory read and validated before
 * any process is created, so that a bad, truncated or corrupted image fails
 * the restore with an error naming the file and the object, and nothing is
 * left behind. The plan owns the decoded messages; rst_plan_free() releases
 * them. Checks that need the live system (files, PIDs, capabilities) are
 * done by their own modules from restore-cmd.c.
 */
#include "rst.h"
#include "rst-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open, read exactly one entry and close. */
static int read_one(int dirfd, enum img_kind kind, uint32_t id, ProtobufCMessage **ret)
{
	struct img img;
	int r;

	r = img_open(&img, dirfd, kind, id, IMG_READ);
	if (!r)
		r = img_read_one(&img, ret);
	if (r)
		pr_err("%s\n", img.err);
	img_close(&img);
	return r;
}

static int load_inventory(int dirfd, const struct relive_opts *opts, struct rst_plan *p)
{
	int r = read_one(dirfd, IMG_INVENTORY, 0, (ProtobufCMessage **)&p->inv);

	if (r)
		return r;
	if (p->inv->page_size != IMG_PAGE_SIZE) {
		pr_err("inventory.img: page size %u, this machine uses %u\n", p->inv->page_size,
		       IMG_PAGE_SIZE);
		return -EINVAL;
	}
	if ((p->inv->flags & INV_FLAG_LAZY) && !opts->lazy_pages) {
		pr_err("inventory.img: lazy images need --lazy-pages\n");
		return -EINVAL;
	}
	p->lazy = opts->lazy_pages;
	if (p->inv->flags & INV_FLAG_PIDNS) {
		pr_err("inventory.img: restoring into a new pid namespace is not supported yet\n");
		return -ENOTSUP;
	}
	return 0;
}

/* The thread list of the task: distinct, valid tids, the leader first. */
static int plan_tids(const PstreeEntry *pe, struct rst_task *t)
{
	t->threads = calloc(pe->n_threads, sizeof(*t->threads));
	if (!t->threads)
		return -ENOMEM;
	t->nr_threads = pe->n_threads;
	for (size_t i = 0; i < pe->n_threads; i++) {
		uint32_t tid = pe->threads[i];

		/* Only a namespace init's leader is 1 (checked with its pid). */
		if (tid < (i || pe->pid != 1 ? 2U : 1U) || tid > (1U << 22)) {
			pr_err("pstree.img: pid %u: bad thread id %u\n", pe->pid, tid);
			return -EINVAL;
		}
		for (size_t k = 0; k < i; k++) {
			if (t->threads[k].tid == tid) {
				pr_err("pstree.img: pid %u: thread %u appears twice\n", pe->pid,
				       tid);
				return -EINVAL;
			}
		}
		t->threads[i].tid = tid;
	}
	return 0;
}

/* One pstree entry into task IDX: its parent must be an earlier entry. */
static int plan_entry(struct rst_plan *p, size_t idx, const PstreeEntry *pe)
{
	struct rst_task *t = &p->tasks[idx];

	t->pid = pe->pid;
	t->ppid = pe->ppid;
	t->pgid = pe->pgid;
	t->sid = pe->sid;
	t->parent = -1;
	/* pid 1: the root was a pid namespace's init (restore --pidns). */
	if (pe->pid < (idx ? 2U : 1U) || pe->pid > (1U << 22)) {
		pr_err("pstree.img: bad pid %u\n", pe->pid);
		return -EINVAL;
	}
	if (idx == 0 && pe->pid != p->inv->root_pid) {
		pr_err("pstree.img: process %u is not the root %u of inventory.img\n", pe->pid,
		       p->inv->root_pid);
		return -EINVAL;
	}
	for (size_t i = 0; idx && i < idx; i++)
		if (p->tasks[i].pid == pe->ppid)
			t->parent = (int)i;
	if (idx && t->parent < 0) {
		pr_err("pstree.img: the parent %u of pid %u is not an earlier process of the tree\n",
		       pe->ppid, pe->pid);
		return -EINVAL;
	}
	if (pe->has_zombie && pe->zombie) {
		if (!idx) {
			pr_err("pstree.img: the root %u is a zombie\n", pe->pid);
			return -EINVAL;
		}
		t->zombie = true;
		t->exit_status = pe->has_exit_status ? pe->exit_status : 0;
		if (t->exit_status & ~0xffff) {
			pr_err("pstree.img: zombie %u has a bad wait status 0x%x\n", pe->pid,
			       (unsigned int)t->exit_status);
			return -EINVAL;
		}
	}
	if (t->parent >= 0 && p->tasks[t->parent].zombie) {
		pr_err("pstree.img: pid %u has a zombie for parent (%u)\n", pe->pid, pe->ppid);
		return -EINVAL;
	}
	if (pe->n_threads < 1 || pe->n_threads > RST_MAX_THREADS || pe->threads[0] != pe->pid) {
		pr_err("pstree.img: pid %u has %zu threads, the first %u: need 1..%u, the "
		       "leader first\n",
		       pe->pid, pe->n_threads, pe->n_threads ? pe->threads[0] : 0,
		       RST_MAX_THREADS);
		return -EINVAL;
	}
	return plan_tids(pe, t);
}

/* No thread id twice in the whole tree (a pid is its leader's tid). */
static int check_tree_tids(const struct rst_plan *p)
{
	for (size_t i = 0; i < p->nr_tasks; i++)
		for (size_t k = 0; k < p->tasks[i].nr_threads; k++)
			for (size_t j = 0; j < i; j++)
				for (size_t m = 0; m < p->tasks[j].nr_threads; m++)
					if (p->tasks[j].threads[m].tid ==
					    p->tasks[i].threads[k].tid) {
						pr_err("pstree.img: thread id %u is in pid %u and "
						       "in pid %u\n",
						       p->tasks[i].threads[k].tid,
						       p->tasks[j].pid, p->tasks[i].pid);
						return -EINVAL;
					}
	return 0;
}

/* Creation order: depth first, the children of a process in pstree order. */
static void plan_order(struct rst_plan *p, size_t idx, uint32_t *next)
{
	p->tasks[idx].order = (*next)++;
	for (size_t i = idx + 1; i < p->nr_tasks; i++)
		if (p->tasks[i].parent == (int)idx)
			plan_order(p, i, next);
}

static int load_pstree(int dirfd, struct rst_plan *p)
{
	ProtobufCMessage *msg;
	struct img img;
	uint32_t next = 0;
	int r;

	r = img_open(&img, dirfd, IMG_PSTREE, 0, IMG_READ);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	while ((r = img_read(&img, &msg)) > 0) {
		struct rst_task *n;

		if (p->nr_tasks >= RST_MAX_TASKS) {
			pr_err("pstree.img: more than %u processes\n", RST_MAX_TASKS);
			img_msg_free(msg);
			r = -E2BIG;
			break;
		}
		n = realloc(p->tasks, (p->nr_tasks + 1) * sizeof(*n));
		if (!n) {
			img_msg_free(msg);
			r = -ENOMEM;
			break;
		}
		p->tasks = n;
		memset(&p->tasks[p->nr_tasks], 0, sizeof(*n));
		p->nr_tasks++;
		r = plan_entry(p, p->nr_tasks - 1, (const PstreeEntry *)msg);
		img_msg_free(msg);
		if (r)
			break;
	}
	if (r < 0 && img.err[0])
		pr_err("%s\n", img.err);
	img_close(&img);
	if (r < 0)
		return r;
	if (!p->nr_tasks) {
		pr_err("pstree.img: no process\n");
		return -EINVAL;
	}
	r = check_tree_tids(p);
	if (!r)
		plan_order(p, 0, &next);
	return r;
}

/*
 * Queued signals: raw siginfo of the kernel's size, a signal the restorer
 * may queue (not SIGKILL/SIGSTOP), at most RST_MAX_PENDING per queue.
 */
static int check_siginfo(SiginfoEntry *const *e, size_t n, const char *img, uint32_t id)
{
	if (n > RST_MAX_PENDING) {
		pr_err("%s-%u.img: %zu queued signals, more than %u\n", img, id, n,
		       RST_MAX_PENDING);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		int32_t signo;

		if (e[i]->raw.len != RST_SIGINFO_SIZE) {
			pr_err("%s-%u.img: queued signal %zu has a siginfo of %zu bytes, not %u\n",
			       img, id, i, e[i]->raw.len, RST_SIGINFO_SIZE);
			return -EINVAL;
		}
		memcpy(&signo, e[i]->raw.data, sizeof(signo));
		if (signo < 1 || signo > 64 || signo == 9 || signo == 19) {
			pr_err("%s-%u.img: queued signal %zu is signal %d, which cannot be queued\n",
			       img, id, i, (int)signo);
			return -EINVAL;
		}
	}
	return 0;
}

static int load_task(int dirfd, struct rst_task *t)
{
	TaskEntry *te;
	int r = read_one(dirfd, IMG_TASK, t->pid, (ProtobufCMessage **)&t->task);

	if (r)
		return r;
	te = t->task;
	if (te->pid != t->pid) {
		pr_err("task-%u.img: holds pid %u\n", t->pid, te->pid);
		return -EINVAL;
	}
	for (size_t i = 0; i < te->n_sigactions; i++) {
		uint32_t s = te->sigactions[i]->signo;

		if (s < 1 || s > 64 || s == 9 || s == 19) {
			pr_err("task-%u.img: sigaction for bad signal %u\n", t->pid, s);
			return -EINVAL;
		}
	}
	if (te->n_itimers > RST_NR_ITIMERS) {
		pr_err("task-%u.img: %zu itimers\n", t->pid, te->n_itimers);
		return -EINVAL;
	}
	for (size_t i = 0; i < te->n_itimers; i++) {
		if (te->itimers[i]->which > 2) {
			pr_err("task-%u.img: itimer of bad kind %u\n", t->pid,
			       te->itimers[i]->which);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < te->n_rlimits; i++) {
		if (te->rlimits[i]->resource >= 16 || te->rlimits[i]->cur > te->rlimits[i]->max) {
			pr_err("task-%u.img: bad rlimit %u (cur %" PRIu64 ", max %" PRIu64 ")\n",
			       t->pid, te->rlimits[i]->resource, te->rlimits[i]->cur,
			       te->rlimits[i]->max);
			return -EINVAL;
		}
	}
	r = check_siginfo(te->shared_pending, te->n_shared_pending, "task", t->pid);
	if (r)
		return r;
	r = rst_ptimers_check(t);
	if (r)
		return r;
	if (!te->cwd[0] || !te->root[0] || te->cwd[0] != '/' || te->root[0] != '/') {
		pr_err("task-%u.img: cwd '%s' / root '%s' are not absolute paths\n", t->pid,
		       te->cwd, te->root);
		return -EINVAL;
	}
	return 0;
}

static int load_core(int dirfd, struct rst_thread *th)
{
	const CoreEntry *c;
	int r = read_one(dirfd, IMG_CORE, th->tid, (ProtobufCMessage **)&th->core);

	if (r)
		return r;
	c = th->core;
	if (c->tid != th->tid) {
		pr_err("core-%u.img: holds thread %u\n", th->tid, c->tid);
		return -EINVAL;
	}
	if (!c->has_xsave || c->xsave.len < 576 || c->xsave.len % 64 || c->xsave.len > 65536) {
		pr_err("core-%u.img: xsave area of %zu bytes: need 576..65536, a multiple of 64\n",
		       th->tid, c->has_xsave ? c->xsave.len : 0);
		return -EINVAL;
	}
	return check_siginfo(c->pending, c->n_pending, "core", th->tid);
}

/* core-<tid>.img of every thread of pstree.img (the list is in t->threads). */
static int load_threads(int dirfd, struct rst_task *t)
{
	for (size_t i = 0; i < t->nr_threads; i++) {
		int r = load_core(dirfd, &t->threads[i]);

		if (r)
			return r;
	}
	return 0;
}

static int load_files(int dirfd, struct rst_plan *p)
{
	ProtobufCMessage *msg;
	struct img img;
	size_t cap = 0;
	int r;

	r = img_open(&img, dirfd, IMG_FILES, 0, IMG_READ);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	while ((r = img_read(&img, &msg)) > 0) {
		FileEntry *fe = (FileEntry *)msg;

		if (rst_plan_file(p, fe->id)) {
			pr_err("files.img: file id %u appears twice\n", fe->id);
			img_msg_free(msg);
			r = -EINVAL;
			break;
		}
		if (p->nr_files == cap) {
			FileEntry **nf = realloc(p->files, (cap ? cap * 2 : 16) * sizeof(*nf));

			if (!nf) {
				img_msg_free(msg);
				r = -ENOMEM;
				break;
			}
			p->files = nf;
			cap = cap ? cap * 2 : 16;
		}
		p->files[p->nr_files++] = fe;
	}
	if (r < 0 && img.err[0])
		pr_err("%s\n", img.err);
	img_close(&img);
	return r < 0 ? r : 0;
}

/* A file referenced by id from IMG: it must exist and be a regular file entry. */
static const FileEntry *need_file(const struct rst_plan *p, uint32_t id, const char *img,
				  const char *what)
{
	const FileEntry *f = rst_plan_file(p, id);

	if (!f) {
		pr_err("%s: %s refers to file id %u, which files.img does not have\n", img, what,
		       id);
		return NULL;
	}
	if (f->type != FILE_TYPE__FILE_REG || !f->reg) {
		pr_err("%s: %s is a file of type %d: only regular files are supported yet\n", img,
		       what, (int)f->type);
		return NULL;
	}
	return f;
}

/* The file of an fd: a regular file, or a kind rst-fdkinds.c restores. */
static const FileEntry *need_fd_file(const struct rst_plan *p, uint32_t id, const char *img,
				     const char *what)
{
	const FileEntry *f = rst_plan_file(p, id);

	if (f && f->type != FILE_TYPE__FILE_REG)
		return rst_fdkind_valid(f, img, what) ? NULL : f;
	return need_file(p, id, img, what);
}

static int load_fdinfo(int dirfd, const struct rst_plan *p, struct rst_task *t)
{
	ProtobufCMessage *msg;
	char name[64], what[64];
	struct img img;
	int r;

	r = img_open(&img, dirfd, IMG_FDINFO, t->pid, IMG_READ);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	snprintf(name, sizeof(name), "fdinfo-%u.img", t->pid);
	while ((r = img_read(&img, &msg)) > 0) {
		FdinfoEntry *fd = (FdinfoEntry *)msg;
		struct rst_fd *nf = realloc(t->fds, (t->nr_fds + 1) * sizeof(*nf));
		int bad = 0;

		if (!nf) {
			img_msg_free(msg);
			r = -ENOMEM;
			break;
		}
		t->fds = nf;
		nf += t->nr_fds;
		snprintf(what, sizeof(what), "fd %u", fd->fd);
		nf->fd = fd->fd;
		nf->cloexec = fd->cloexec;
		nf->file = need_fd_file(p, fd->file_id, name, what);
		img_msg_free(msg);
		if (!nf->file)
			bad = -EINVAL;
		for (size_t i = 0; !bad && i < t->nr_fds; i++) {
			if (t->fds[i].fd == nf->fd) {
				pr_err("%s: fd %u appears twice\n", name, nf->fd);
				bad = -EINVAL;
			}
		}
		if (!bad && nf->fd > (1U << 20)) {
			pr_err("%s: fd %u is out of range\n", name, nf->fd);
			bad = -EINVAL;
		}
		if (bad) {
			r = bad;
			break;
		}
		t->nr_fds++;
	}
	if (r < 0 && img.err[0])
		pr_err("%s\n", img.err);
	img_close(&img);
	return r < 0 ? r : 0;
}

static int load_mm(int dirfd, const struct rst_plan *p, struct rst_task *t)
{
	char name[64], what[64];
	int r = read_one(dirfd, IMG_MM, t->pid, (ProtobufCMessage **)&t->mm);

	if (r)
		return r;
	snprintf(name, sizeof(name), "mm-%u.img", t->pid);
	if (t->mm->n_auxv % 2 || t->mm->n_auxv > 512 ||
	    (t->mm->n_auxv && t->mm->auxv[t->mm->n_auxv - 2] != 0)) {
		pr_err("%s: auxv of %zu words is not AT_NULL-terminated pairs\n", name,
		       t->mm->n_auxv);
		return -EINVAL;
	}
	t->vmas = calloc(t->mm->n_vmas ? t->mm->n_vmas : 1, sizeof(*t->vmas));
	if (!t->vmas)
		return -ENOMEM;
	t->nr_vmas = t->mm->n_vmas;
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const VmaEntry *ve = t->mm->vmas[i];
		struct rst_vma *v = &t->vmas[i];

		v->start = ve->start;
		v->end = ve->end;
		v->pgoff = ve->pgoff;
		v->madv = ve->has_madv ? ve->madv : 0;
		v->prot = ve->prot;
		v->flags = ve->flags;
		v->kind = ve->kind;
		v->has_file = ve->has_file_id;
		v->shmid = ve->kind == VMA_KIND__VMA_ANON_SHARED && ve->has_shmid ? ve->shmid : 0;
		v->file_id = ve->file_id;
		if (v->has_file && (ve->kind == VMA_KIND__VMA_FILE_PRIVATE ||
				    ve->kind == VMA_KIND__VMA_FILE_SHARED)) {
			snprintf(what, sizeof(what), "vma 0x%" PRIx64 "-0x%" PRIx64, v->start,
				 v->end);
			if (!need_file(p, v->file_id, name, what))
				return -EINVAL;
		}
	}
	return 0;
}

static int load_pagemap(int dirfd, struct rst_task *t)
{
	ProtobufCMessage *msg;
	struct img img;
	size_t cap = 0;
	int r;

	r = img_open(&img, dirfd, IMG_PAGEMAP, t->pid, IMG_READ);
	if (!r)
		r = img_read_one(&img, &msg);
	if (r) {
		pr_err("%s\n", img.err);
		img_close(&img);
		return r;
	}
	t->pages_id = ((PagemapHead *)msg)->pages_id;
	img_msg_free(msg);
	while ((r = img_read(&img, &msg)) > 0) {
		PagemapEntry *pe = (PagemapEntry *)msg;

		if (t->nr_runs == cap) {
			struct rst_run *nr = realloc(t->runs, (cap ? cap * 2 : 64) * sizeof(*nr));

			if (!nr) {
				img_msg_free(msg);
				r = -ENOMEM;
				break;
			}
			t->runs = nr;
			cap = cap ? cap * 2 : 64;
		}
		t->runs[t->nr_runs].vaddr = pe->vaddr;
		t->runs[t->nr_runs].nr_pages = pe->nr_pages;
		t->runs[t->nr_runs++].flags = pe->flags;
		img_msg_free(msg);
	}
	if (r < 0 && r != -ENOMEM)
		pr_err("%s\n", img.err);
	img_close(&img);
	return r < 0 ? r : 0;
}

static int check_memory(int dirfd, const struct relive_opts *opts, struct rst_task *t)
{
	char err[512];
	uint64_t have = 0;
	struct img img;
	int r;

	r = rst_check_layout(t->vmas, t->nr_vmas, t->runs, t->nr_runs, opts->lazy_pages,
			     &t->nr_present, err, sizeof(err));
	if (r) {
		pr_err("mm-%u.img/pagemap-%u.img: %s\n", t->pid, t->pid, err);
		return r;
	}
	r = img_open(&img, dirfd, IMG_PAGES, t->pages_id, IMG_READ);
	if (!r)
		r = img_pages_count(&img, &have);
	if (r) {
		pr_err("%s\n", img.err);
		img_close(&img);
		return r;
	}
	img_close(&img);
	for (size_t i = 0; i < t->nr_runs; i++)
		if (t->runs[i].flags & PE_LAZY)
			t->nr_lazy += t->runs[i].nr_pages;
	if (have < t->nr_present) {
		pr_err("pages-%u.img: holds %" PRIu64 " pages, pagemap-%u.img needs %" PRIu64
		       " (truncated?)\n",
		       t->pages_id, have, t->pid, t->nr_present);
		return -EINVAL;
	}
	return 0;
}

static int plan_vdso(struct rst_task *t)
{
	_cleanup_free_ char *text = NULL;
	struct rst_maps m;
	char err[512];
	size_t len;
	int r;

	r = util_read_file(AT_FDCWD, "/proc/self/maps", &text, &len);
	if (r) {
		pr_err("cannot read /proc/self/maps: %s\n", strerror(-r));
		return r;
	}
	r = rst_parse_maps(text, &m);
	if (r) {
		pr_err("cannot parse /proc/self/maps\n");
		return r;
	}
	r = rst_plan_vdso(t->vmas, t->nr_vmas, &m, t->moves, &t->nr_moves, err, sizeof(err));
	rst_maps_fini(&m);
	if (r)
		pr_err("mm-%u.img: %s\n", t->pid, err);
	return r;
}

int rst_plan_load(int dirfd, const struct relive_opts *opts, struct rst_plan *ret)
{
	struct rst_plan p = { 0 };
	int r;

	r = load_inventory(dirfd, opts, &p);
	if (!r)
		r = load_pstree(dirfd, &p);
	if (!r)
		r = load_files(dirfd, &p);
	for (size_t i = 0; !r && i < p.nr_tasks; i++) {
		struct rst_task *t = &p.tasks[i];

		if (t->zombie)
			continue; /* nothing but its pstree entry */
		r = load_task(dirfd, t);
		if (!r)
			r = load_threads(dirfd, t);
		if (!r)
			r = load_fdinfo(dirfd, &p, t);
		if (!r)
			r = load_mm(dirfd, &p, t);
		if (!r)
			r = load_pagemap(dirfd, t);
		if (!r)
			r = check_memory(dirfd, opts, t);
		if (!r)
			r = plan_vdso(t);
	}
	if (!r)
		r = rst_locks_load(dirfd, &p);
	if (!r)
		r = rst_shared_plan(&p);
	if (!r)
		r = rst_shm_plan(&p);
	if (r) {
		rst_plan_free(&p);
		return r;
	}
	*ret = p;
	return 0;
}

const FileEntry *rst_plan_file(const struct rst_plan *p, uint32_t id)
{
	for (size_t i = 0; i < p->nr_files; i++)
		if (p->files[i]->id == id)
			return p->files[i];
	return NULL;
}

void rst_plan_free(struct rst_plan *p)
{
	for (size_t i = 0; i < p->nr_tasks; i++) {
		struct rst_task *t = &p->tasks[i];

		img_msg_free((ProtobufCMessage *)t->task);
		img_msg_free((ProtobufCMessage *)t->mm);
		for (size_t k = 0; k < t->nr_threads; k++)
			img_msg_free((ProtobufCMessage *)t->threads[k].core);
		free(t->threads);
		free(t->fds);
		free(t->vmas);
		free(t->runs);
	}
	free(p->tasks);
	free(p->shms);
	rst_locks_free(p);
	free(p->file_shared);
	for (size_t i = 0; i < p->nr_files; i++)
		img_msg_free((ProtobufCMessage *)p->files[i]);
	free(p->files);
	img_msg_free((ProtobufCMessage *)p->inv);
	memset(p, 0, sizeof(*p));
}
