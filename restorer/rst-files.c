/*
 * Files of a restored task. In the parent, before anything is created: every
 * regular file of files.img must still exist with its dumped size. In the
 * helper: open what the blob needs (pages image, mapped files, exe) and move
 * those fds above the task's own numbers (the lazy handover puts its uffd and
 * socket there too), reopen each dumped fd at its number
 * with its flags and offset (other kinds: rst-fdkinds.c), and close
 * everything else inherited from relive.
 * Helper errors go to c->err (the helper's log fd may already be replaced).
 */
#include "rst.h"
#include "rst-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/close_range.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int rst_files_check(const struct rst_plan *p)
{
	for (size_t i = 0; i < p->nr_files; i++) {
		const FileEntry *f = p->files[i];
		struct stat st;

		if (f->type != FILE_TYPE__FILE_REG || !f->reg)
			continue;
		if (stat(f->reg->path, &st)) {
			if (errno == ENOENT) {
				pr_err("file %s (files.img id %u) vanished since the dump\n",
				       f->reg->path, f->id);
				return -ENOENT;
			}
			pr_perror("cannot stat %s (files.img id %u)", f->reg->path, f->id);
			return -errno;
		}
		if (S_ISREG(st.st_mode) && (uint64_t)st.st_size != f->reg->size) {
			pr_err("file %s (files.img id %u) changed size since the dump: %" PRIu64
			       " bytes, %" PRIu64 " at dump time\n",
			       f->reg->path, f->id, (uint64_t)st.st_size, f->reg->size);
			return -ESTALE;
		}
	}
	return 0;
}

static int open_mapped(struct rst_child *c, size_t i)
{
	const struct rst_vma *v = &c->task->vmas[i];
	const FileEntry *f = rst_plan_file(c->plan, v->file_id);
	int flags = (v->kind == VMA_KIND__VMA_FILE_SHARED && (v->prot & PROT_WRITE)) ? O_RDWR
										      : O_RDONLY;

	/* One fd per file and access mode. */
	for (size_t k = 0; k < i; k++) {
		const struct rst_vma *o = &c->task->vmas[k];

		if (c->map_fds[k] >= 0 && o->file_id == v->file_id &&
		    ((o->kind == VMA_KIND__VMA_FILE_SHARED && (o->prot & PROT_WRITE)) ? O_RDWR
										   : O_RDONLY) ==
			    flags) {
			c->map_fds[i] = c->map_fds[k];
			return 0;
		}
	}
	c->map_fds[i] = open(f->reg->path, flags | O_CLOEXEC);
	if (c->map_fds[i] < 0) {
		rst_child_fail(c, "cannot open %s, mapped at 0x%" PRIx64 ": %s", f->reg->path,
			       v->start, strerror(errno));
		return -errno;
	}
	return 0;
}

static int open_exe(struct rst_child *c)
{
	const MmEntry *mm = c->task->mm;
	const TaskEntry *te = c->task->task;
	const char *path = te->exe_path;

	if (mm->has_exe_file_id) {
		const FileEntry *f = rst_plan_file(c->plan, mm->exe_file_id);

		if (f && f->reg)
			path = f->reg->path;
	}
	if (!path || !path[0])
		return 0;
	c->exe_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c->exe_fd < 0) {
		rst_child_fail(c, "cannot open the executable %s: %s", path, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Move every fd the helper keeps to BASE or above, where no task fd will go. */
static int relocate(struct rst_child *c, int base)
{
	int *slots[4 + 1];
	size_t ns = 0;

	slots[ns++] = &c->status_fd;
	slots[ns++] = &c->go_fd;
	slots[ns++] = &c->pages_fd;
	slots[ns++] = &c->exe_fd;
	for (size_t s = 0; s < ns + c->task->nr_vmas; s++) {
		int *p = s < ns ? slots[s] : &c->map_fds[s - ns];
		int old = *p, nfd;

		if (old < 0 || old >= base)
			continue;
		nfd = fcntl(old, F_DUPFD_CLOEXEC, base);
		if (nfd < 0) {
			rst_child_fail(c, "cannot move fd %d above %d: %s", old, base,
				       strerror(errno));
			return -errno;
		}
		/* Every holder of the old number (shared map fds) gets the new one. */
		for (size_t k = 0; k < ns + c->task->nr_vmas; k++) {
			int *q = k < ns ? slots[k] : &c->map_fds[k - ns];

			if (*q == old)
				*q = nfd;
		}
		close(old);
	}
	return 0;
}

int rst_files_open_kept(struct rst_child *c)
{
	const struct rst_task *t = c->task;
	struct img img;
	int base = 3, r;

	c->exe_fd = -1;
	c->pages_fd = -1;
	c->map_fds = malloc((t->nr_vmas ? t->nr_vmas : 1) * sizeof(int));
	if (!c->map_fds) {
		rst_child_fail(c, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->nr_vmas; i++)
		c->map_fds[i] = -1;
	r = img_open(&img, c->dirfd, IMG_PAGES, t->pages_id, IMG_READ);
	if (r) {
		rst_child_fail(c, "%s", img.err);
		return r;
	}
	c->pages_fd = img.fd; /* the blob preads at absolute offsets */
	for (size_t i = 0; i < t->nr_vmas; i++) {
		uint32_t k = t->vmas[i].kind;

		/* Shared with other processes of the tree: the object the root helper made. */
		if (k == VMA_KIND__VMA_ANON_SHARED)
			c->map_fds[i] = rst_shm_fd(c, &t->vmas[i]);
		if (k != VMA_KIND__VMA_FILE_PRIVATE && k != VMA_KIND__VMA_FILE_SHARED)
			continue;
		r = open_mapped(c, i);
		if (r)
			return r;
	}
	r = open_exe(c);
	if (r)
		return r;
	for (size_t i = 0; i < t->nr_fds; i++)
		if ((int)t->fds[i].fd >= base)
			base = (int)t->fds[i].fd + 1;
	c->fd_base = base;
	return relocate(c, base);
}

static int reg_open(struct rst_child *c, const struct rst_fd *fd)
{
	const RegFileEntry *reg = fd->file->reg;
	int flags = (int)reg->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
	struct stat st;
	int tmp;

	tmp = open(reg->path, flags | O_NOCTTY | O_CLOEXEC);
	if (tmp < 0) {
		rst_child_fail(c, "fd %u: cannot open %s: %s", fd->fd, reg->path, strerror(errno));
		return -errno;
	}
	if (fstat(tmp, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size != reg->size) {
		rst_child_fail(c, "fd %u: file %s changed size since the dump (%" PRIu64
			       " bytes, was %" PRIu64 ")",
			       fd->fd, reg->path, (uint64_t)st.st_size, reg->size);
		close(tmp);
		return -ESTALE;
	}
	if (lseek(tmp, (off_t)reg->pos, SEEK_SET) < 0 && !(errno == ESPIPE && reg->pos == 0)) {
		rst_child_fail(c, "fd %u: cannot seek %s to %" PRIu64 ": %s", fd->fd, reg->path,
			       reg->pos, strerror(errno));
		close(tmp);
		return -errno;
	}
	return tmp;
}

int rst_file_open(struct rst_child *c, const struct rst_fd *fd)
{
	if (fd->file->type == FILE_TYPE__FILE_REG)
		return reg_open(c, fd);
	return rst_fdkind_open(c, fd);
}

/* Put NFD at FD's number (NFD is consumed unless it is that number). */
static int place(struct rst_child *c, const struct rst_fd *fd, int nfd)
{
	if (nfd == (int)fd->fd) {
		if (!fd->cloexec && fcntl(nfd, F_SETFD, 0) < 0) {
			rst_child_fail(c, "fd %u: F_SETFD: %s", fd->fd, strerror(errno));
			return -errno;
		}
		return 0;
	}
	if (dup3(nfd, (int)fd->fd, fd->cloexec ? O_CLOEXEC : 0) < 0) {
		rst_child_fail(c, "fd %u: dup3: %s", fd->fd, strerror(errno));
		close(nfd);
		return -errno;
	}
	close(nfd);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close every fd that is neither the task's nor kept for the blob. */
static int close_others(struct rst_child *c)
{
	size_t n = 0, max = c->task->nr_fds + c->task->nr_vmas + 6;
	_cleanup_free_ int *keep = malloc(max * sizeof(int));
	unsigned int next = 0;

	if (!keep) {
		rst_child_fail(c, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->task->nr_fds; i++)
		keep[n++] = (int)c->task->fds[i].fd;
	for (size_t i = 0; i < c->task->nr_vmas; i++)
		if (c->map_fds[i] >= 0)
			keep[n++] = c->map_fds[i];
	keep[n++] = c->status_fd;
	if (c->go_fd >= 0)
		keep[n++] = c->go_fd;
	if (c->pages_fd >= 0)
		keep[n++] = c->pages_fd;
	if (c->exe_fd >= 0)
		keep[n++] = c->exe_fd;
	if (c->uffd >= 0)
		keep[n++] = c->uffd;
	if (c->lazy_sock >= 0)
		keep[n++] = c->lazy_sock;
	qsort(keep, n, sizeof(int), cmp_int);
	for (size_t i = 0; i < n; i++) {
		if ((unsigned int)keep[i] > next &&
		    syscall(SYS_close_range, next, (unsigned int)keep[i] - 1, 0) < 0) {
			rst_child_fail(c, "close_range %u-%d: %s", next, keep[i] - 1,
				       strerror(errno));
			return -errno;
		}
		next = (unsigned int)keep[i] + 1;
	}
	if (syscall(SYS_close_range, next, ~0U, 0) < 0) {
		rst_child_fail(c, "close_range from %u: %s", next, strerror(errno));
		return -errno;
	}
	return 0;
}

int rst_files_install(struct rst_child *c)
{
	int r;

	for (size_t i = 0; i < c->task->nr_fds; i++) {
		const struct rst_fd *fd = &c->task->fds[i];
		size_t j;

		/* fds of one file entry share one open file description (offset, flags). */
		for (j = 0; j < i && c->task->fds[j].file != fd->file; j++)
			;
		if (j < i) {
			if (dup3((int)c->task->fds[j].fd, (int)fd->fd, fd->cloexec ? O_CLOEXEC : 0) <
			    0) {
				rst_child_fail(c, "fd %u: dup3 from fd %u: %s", fd->fd,
					       c->task->fds[j].fd, strerror(errno));
				return -errno;
			}
			continue;
		}
		/* One description for several processes: the root helper's, inherited. */
		r = rst_shared_fd(c, fd->file);
		if (r >= 0) {
			if (dup3(r, (int)fd->fd, fd->cloexec ? O_CLOEXEC : 0) < 0) {
				rst_child_fail(c, "fd %u: dup3 of the shared description (files.img "
					       "id %u): %s",
					       fd->fd, fd->file->id, strerror(errno));
				return -errno;
			}
			continue;
		}
		r = rst_file_open(c, fd);
		if (r >= 0)
			r = place(c, fd, r);
		if (r)
			return r;
	}
	r = rst_epoll_watch_all(c);
	if (!r)
		r = rst_tty_ctty(c);
	if (r)
		return r;
	return close_others(c);
}
