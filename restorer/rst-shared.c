/*
 * Open file descriptions shared by several processes of a restored tree.
 * At dump time a description used by two processes (inherited across fork,
 * or passed) is one file entry; an object behind several descriptions (the
 * two ends of a pipe, a memfd opened twice) may also span processes. Such a
 * description must come back as ONE description in every process (one
 * offset, one pipe, one pty), so the root helper creates all of them before
 * it forks anything, holds them above every fd number of the tree, and every helper
 * inherits them and dup3()s its own fds from the holders; close_others()
 * (rst-files.c) drops the holders. The creation is the kind's own
 * (rst_file_open): nothing here depends on the kind but the object key.
 */
#include "rst.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The object behind F when several descriptions can share one: its kind,
 * id and name (rst_fdobj_find's key). False for kinds where a description
 * is its own object. A kind whose descriptions can share an object across
 * processes (the two ends of a socketpair) adds its case here.
 */
static bool object_key(const FileEntry *f, uint32_t *type, uint64_t *id, const char **name)
{
	switch (f->type) {
	case FILE_TYPE__FILE_PIPE:
	case FILE_TYPE__FILE_FIFO:
		if (!f->pipe)
			return false;
		*type = FILE_TYPE__FILE_PIPE; /* a FIFO's id is its inode too */
		*id = f->pipe->pipe_id;
		*name = NULL;
		return true;
	case FILE_TYPE__FILE_MEMFD:
	case FILE_TYPE__FILE_UNLINKED:
		if (!f->anon)
			return false;
		*type = f->type;
		*id = f->anon->ino;
		*name = f->anon->name;
		return true;
	case FILE_TYPE__FILE_UNIX_SK:
		/* Two connected sockets are made together (rst-unix.c): one key for the
		 * connection (sock_diag inodes are 32-bit). */
		if (!f->unix_sk || !f->unix_sk->has_peer_ino || !f->unix_sk->peer_ino)
			return false;
		*type = f->type;
		*id = MIN(f->unix_sk->ino, f->unix_sk->peer_ino) << 32 |
		      MAX(f->unix_sk->ino, f->unix_sk->peer_ino);
		*name = NULL;
		return true;
	case FILE_TYPE__FILE_TTY:
		/* The two ends of a pty pair are made together (rst-tty.c): the pty's key. */
		if (!f->tty || f->tty->kind == TTY_KIND__TTY_SHELL)
			return false;
		*type = f->type;
		*id = f->tty->index;
		*name = NULL;
		return true;
	default:
		return false;
	}
}

static bool same_object(const FileEntry *a, const FileEntry *b)
{
	uint32_t ta, tb;
	uint64_t ia, ib;
	const char *na, *nb;

	if (a == b)
		return true;
	if (!object_key(a, &ta, &ia, &na) || !object_key(b, &tb, &ib, &nb))
		return false;
	return ta == tb && ia == ib && (!na || !nb || !strcmp(na, nb));
}

/* Index in the plan of the first task with an fd on F, and whether another task has one. */
static int users(const struct rst_plan *p, const FileEntry *f, bool *ret_multi)
{
	int first = -1;

	*ret_multi = false;
	for (size_t i = 0; i < p->nr_tasks; i++) {
		for (size_t k = 0; k < p->tasks[i].nr_fds; k++) {
			if (p->tasks[i].fds[k].file != f)
				continue;
			if (first < 0)
				first = (int)i;
			else if (first != (int)i)
				*ret_multi = true;
			break;
		}
	}
	return first;
}

int rst_shared_plan(struct rst_plan *p)
{
	_cleanup_free_ int *first = NULL;
	_cleanup_free_ bool *multi = NULL;
	size_t n = p->nr_files;

	p->shared_base = 3;
	for (size_t i = 0; i < p->nr_tasks; i++)
		for (size_t k = 0; k < p->tasks[i].nr_fds; k++)
			p->shared_base = MAX(p->shared_base, (int)p->tasks[i].fds[k].fd + 1);
	if (!n)
		return 0;
	first = malloc(n * sizeof(*first));
	multi = calloc(n, sizeof(*multi));
	p->file_shared = calloc(n, sizeof(*p->file_shared));
	if (!first || !multi || !p->file_shared)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		first[i] = users(p, p->files[i], &multi[i]);
	/* Shared: used by two tasks, or one object with descriptions in two tasks. */
	for (size_t i = 0; i < n; i++) {
		if (first[i] < 0)
			continue;
		for (size_t j = 0; j < n && !p->file_shared[i]; j++)
			if (first[j] >= 0 && (multi[j] || first[j] != first[i]) &&
			    same_object(p->files[i], p->files[j]))
				p->file_shared[i] = true;
		p->nr_shared += p->file_shared[i];
	}
	if (p->nr_shared)
		pr_info("%zu open file description(s) shared by several processes of the tree\n",
			p->nr_shared);
	return 0;
}

/* An fd of the plan on F (the first), for the kind's messages and flags. */
static const struct rst_fd *some_fd(const struct rst_plan *p, const FileEntry *f)
{
	for (size_t i = 0; i < p->nr_tasks; i++)
		for (size_t k = 0; k < p->tasks[i].nr_fds; k++)
			if (p->tasks[i].fds[k].file == f)
				return &p->tasks[i].fds[k];
	return NULL;
}

int rst_shared_create(struct rst_child *c)
{
	const struct rst_plan *p = c->plan;

	if (!p->nr_shared)
		return 0;
	c->shared_fds = malloc(p->nr_files * sizeof(int));
	if (!c->shared_fds) {
		rst_child_fail(c, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->nr_files; i++)
		c->shared_fds[i] = -1;
	/* Objects the kinds make (pipes, memfds) are held there too, inherited as well. */
	c->fd_base = p->shared_base;
	for (size_t i = 0; i < p->nr_files; i++) {
		const struct rst_fd *fd = some_fd(p, p->files[i]);
		int nfd, h;

		if (!p->file_shared[i] || !fd)
			continue;
		nfd = rst_file_open(c, fd);
		if (nfd < 0)
			return nfd;
		h = fcntl(nfd, F_DUPFD_CLOEXEC, p->shared_base);
		if (h < 0) {
			rst_child_fail(c, "files.img id %u: cannot hold it above fd %d: %s",
				       p->files[i]->id, p->shared_base, strerror(errno));
			close(nfd);
			return -errno;
		}
		close(nfd);
		c->shared_fds[i] = h;
	}
	return 0;
}

int rst_shared_fd(const struct rst_child *c, const FileEntry *f)
{
	const struct rst_plan *p = c->plan;

	if (!c->shared_fds)
		return -1;
	for (size_t i = 0; i < p->nr_files; i++)
		if (p->files[i] == f)
			return c->shared_fds[i];
	return -1;
}
