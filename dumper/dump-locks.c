/*
 * File locks of a frozen process (--file-locks): flock, POSIX (fcntl
 * F_SETLK) and OFD locks, read from the "lock:" lines of
 * /proc/PID/fdinfo/N. Those lines are exact where /proc/locks is not: the
 * kernel prints a lock under an fd only if the lock was taken through that
 * open file description and belongs to it (flock, OFD) or to this process's
 * descriptor table (POSIX). flock and OFD locks of a description seen
 * through several fds are kept once. Leases and anything else fail the
 * dump, as does any lock without --file-locks (the victim runs on).
 * dump-files.c writes ctx->files.locks to file-locks.img.
 */
#include "dump.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lock_line {
	char kind[16], type[16];
	long long pid;
	unsigned long long start;
	char end[32];
};

/* "1: POSIX  ADVISORY  READ 1894 fe:00:10954580 10 29" */
static int parse_line(const char *p, struct lock_line *l)
{
	char adv[16], dev[64];

	if (sscanf(p, " %*[0-9]: %15s %15s %15s %lld %63s %llu %31s", l->kind, adv, l->type,
		   &l->pid, dev, &l->start, l->end) != 7)
		return -EINVAL;
	return 0;
}

static int lock_from_line(const struct lock_line *l, FileLockEntry *e)
{
	uint64_t end;

	if (!strcmp(l->kind, "FLOCK"))
		e->kind = FILE_LOCK_KIND__LOCK_FLOCK;
	else if (!strcmp(l->kind, "POSIX"))
		e->kind = FILE_LOCK_KIND__LOCK_POSIX;
	else if (!strcmp(l->kind, "OFDLCK"))
		e->kind = FILE_LOCK_KIND__LOCK_OFD;
	else
		return -ENOTSUP;
	if (!strcmp(l->type, "READ"))
		e->type = F_RDLCK;
	else if (!strcmp(l->type, "WRITE"))
		e->type = F_WRLCK;
	else
		return -ENOTSUP;
	if (e->kind == FILE_LOCK_KIND__LOCK_FLOCK)
		return 0;
	e->start = l->start;
	if (!strcmp(l->end, "EOF"))
		return 0;
	if (util_parse_u64(l->end, 0, INT64_MAX, &end) || end < l->start)
		return -EINVAL;
	e->len = end - l->start + 1;
	return 0;
}

/* Already recorded: the same description's flock/OFD lock, or a POSIX lock seen twice. */
static bool known(const struct dump_files *files, const FileLockEntry *e)
{
	for (size_t i = 0; i < files->nr_locks; i++) {
		const FileLockEntry *o = files->locks[i];

		if (o->file_id != e->file_id || o->kind != e->kind || o->type != e->type ||
		    o->start != e->start || o->len != e->len)
			continue;
		if (e->kind != FILE_LOCK_KIND__LOCK_POSIX || o->pid == e->pid)
			return true;
	}
	return false;
}

static int add_lock(struct dump_files *files, const FileLockEntry *e)
{
	FileLockEntry **n, *c;

	if (known(files, e))
		return 0;
	n = realloc(files->locks, (files->nr_locks + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	files->locks = n;
	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	*c = *e;
	files->locks[files->nr_locks++] = c;
	return 0;
}

int dmp_locks_fd(struct dump_ctx *ctx, int fd, const char *link, uint32_t file_id)
{
	_cleanup_free_ char *text = NULL;
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)ctx->pid, fd);
	r = util_read_file(AT_FDCWD, path, &text, NULL);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	for (char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		FileLockEntry e = FILE_LOCK_ENTRY__INIT;
		struct lock_line l;
		char *nl = strchr(p, '\n');

		if (strncmp(p, "lock:", 5))
			continue;
		if (nl)
			*nl = '\0';
		if (parse_line(p + 5, &l)) {
			pr_err("pid %d: fd %d (%s): cannot parse its fdinfo line '%s'\n",
			       (int)ctx->pid, fd, link, p);
			return -EINVAL;
		}
		if (!ctx->opts->file_locks) {
			pr_err("pid %d: fd %d (%s) holds a file lock (%s %s): dump with "
			       "--file-locks\n",
			       (int)ctx->pid, fd, link, l.kind, l.type);
			return -EBUSY;
		}
		e.pid = (uint32_t)ctx->pid;
		e.fd = (uint32_t)fd;
		e.file_id = file_id;
		r = lock_from_line(&l, &e);
		if (r) {
			pr_err("pid %d: fd %d (%s): lock '%s' is not supported (only flock, "
			       "POSIX and OFD read/write locks are)\n",
			       (int)ctx->pid, fd, link, p + 5);
			return r;
		}
		pr_debug("pid %d: fd %d: %s %s lock at %" PRIu64 " + %" PRIu64 "\n", (int)ctx->pid,
			 fd, l.kind, l.type, e.start, e.len);
		r = add_lock(&ctx->files, &e);
		if (r)
			return r;
		if (nl)
			*nl = '\n';
	}
	return 0;
}

void dmp_locks_free(struct dump_files *files)
{
	for (size_t i = 0; i < files->nr_locks; i++)
		free(files->locks[i]);
	free(files->locks);
	files->locks = NULL;
	files->nr_locks = 0;
}
