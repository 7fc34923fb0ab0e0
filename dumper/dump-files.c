/*
 * The descriptor table of a process: every open fd becomes an fdinfo entry
 * pointing at a file entry; descriptors that share one open file description
 * (dup, inherited stdout/stderr) share one file entry, found with kcmp.
 * Mapped files get file entries too. Regular files and character devices
 * are handled here, pipes, FIFOs, eventfd, timerfd, signalfd, memfd and
 * unlinked files by dump-fdkinds.c; anything else fails the dump naming the fd.
 */
#include "dump.h"
#include "dump-fdkinds.h"

#include "log.h"
#include "util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fd_seen {
	int fd;
	uint32_t file_id;
	dev_t dev;
	ino_t ino;
};

static int files_append(struct dump_files *files, FileEntry *fe)
{
	if (files->nr == files->cap) {
		size_t cap = files->cap ? files->cap * 2 : 32;
		FileEntry **n = realloc(files->entries, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		files->entries = n;
		files->cap = cap;
	}
	files->entries[files->nr++] = fe;
	return 0;
}

static void file_entry_free(FileEntry *fe)
{
	if (!fe)
		return;
	if (fe->type != FILE_TYPE__FILE_REG) {
		/* Built with malloc throughout (dump-fdkinds.c, dump-pipes.c). */
		protobuf_c_message_free_unpacked(&fe->base, NULL);
		return;
	}
	if (fe->reg)
		free(fe->reg->path);
	free(fe->reg);
	free(fe);
}

void dmp_files_fini(struct dump_files *files)
{
	for (size_t i = 0; i < files->nr; i++)
		file_entry_free(files->entries[i]);
	free(files->entries);
	free(files->refs);
	dmp_locks_free(files);
	memset(files, 0, sizeof(*files));
}

static int new_reg_entry(struct dump_files *files, const char *path, const struct stat *st,
			 uint32_t flags, uint64_t pos, uint32_t *ret_id)
{
	FileEntry *fe = calloc(1, sizeof(*fe));
	RegFileEntry *reg = calloc(1, sizeof(*reg));
	int r;

	if (!fe || !reg) {
		free(fe);
		free(reg);
		return -ENOMEM;
	}
	file_entry__init(fe);
	reg_file_entry__init(reg);
	reg->path = strdup(path);
	if (!reg->path) {
		free(fe);
		free(reg);
		return -ENOMEM;
	}
	reg->flags = flags;
	reg->pos = pos;
	reg->mode = st->st_mode;
	reg->size = (uint64_t)st->st_size;
	reg->dev = st->st_dev;
	reg->ino = st->st_ino;
	reg->has_mtime_ns = true;
	reg->mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000ULL + st->st_mtim.tv_nsec;
	fe->id = ++files->next_id;
	fe->type = FILE_TYPE__FILE_REG;
	fe->reg = reg;
	r = files_append(files, fe);
	if (r) {
		file_entry_free(fe);
		return r;
	}
	*ret_id = fe->id;
	return 0;
}

int dmp_files_add_mapped(struct dump_ctx *ctx, const char *path, uint32_t *ret_id)
{
	struct stat st;

	if (stat(path, &st)) {
		int r = -errno;

		pr_perror("pid %d: cannot stat mapped file %s", (int)ctx->pid, path);
		return r;
	}
	/* Reuse an entry of the same mapped file. */
	for (size_t i = 0; i < ctx->files.nr; i++) {
		RegFileEntry *reg = ctx->files.entries[i]->reg;

		if (reg && reg->dev == st.st_dev && reg->ino == st.st_ino &&
		    (reg->flags & O_ACCMODE) == O_RDONLY && reg->pos == 0 &&
		    !strcmp(reg->path, path)) {
			*ret_id = ctx->files.entries[i]->id;
			return 0;
		}
	}
	return new_reg_entry(&ctx->files, path, &st, O_RDONLY, 0, ret_id);
}

static int new_kind_entry(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
			  const struct proc_fdinfo *info, uint32_t *ret_id)
{
	FileEntry *fe = calloc(1, sizeof(*fe));
	int r;

	if (!fe)
		return -ENOMEM;
	file_entry__init(fe);
	fe->id = ctx->files.next_id + 1;
	r = dmp_fdkind_fill(ctx, fd, link, st, info, fe);
	if (!r)
		r = files_append(&ctx->files, fe);
	if (r) {
		/* Half filled, malloc'ed throughout: the generic free is right. */
		protobuf_c_message_free_unpacked(&fe->base, NULL);
		return r;
	}
	ctx->files.next_id++;
	*ret_id = fe->id;
	return 0;
}

static bool same_description(pid_t pid, int fd1, int fd2)
{
	return syscall(SYS_kcmp, pid, pid, KCMP_FILE, fd1, fd2) == 0;
}

static int dump_one_fd(struct dump_ctx *ctx, int fd, struct fd_seen *seen, size_t nr_seen,
		       FdinfoEntry *fi)
{
	char link[4096], what[32], path[64];
	struct proc_fdinfo info;
	struct stat st;
	uint32_t id = 0;
	bool kind;
	int r;

	snprintf(what, sizeof(what), "fd/%d", fd);
	r = proc_readlink(ctx->pid, what, link, sizeof(link));
	if (r)
		return r;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)ctx->pid, fd);
	if (stat(path, &st)) {
		r = -errno;
		pr_perror("pid %d: cannot stat fd %d (%s)", (int)ctx->pid, fd, link);
		return r;
	}
	kind = dmp_fdkind_handles(link, &st);
	if (!kind && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		pr_err("pid %d: fd %d is %s: this kind of file is not supported yet\n",
		       (int)ctx->pid, fd, link);
		return -ENOTSUP;
	}
	if (!kind && (link[0] != '/' || strstr(link, " (deleted)"))) {
		pr_err("pid %d: fd %d: file %s is deleted or has no path: not supported yet\n",
		       (int)ctx->pid, fd, link);
		return -ENOTSUP;
	}
	r = proc_read_fdinfo(ctx->pid, fd, &info);
	if (r)
		return r;
	for (size_t i = 0; i < nr_seen; i++) {
		if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino &&
		    same_description(ctx->pid, seen[i].fd, fd)) {
			id = seen[i].file_id;
			break;
		}
	}
	/* A description inherited from (or passed to) an earlier process of the tree. */
	for (size_t i = 0; !id && i < ctx->files.nr_refs; i++) {
		const struct dmp_fd_ref *ref = &ctx->files.refs[i];

		if (ref->dev == st.st_dev && ref->ino == st.st_ino &&
		    syscall(SYS_kcmp, ref->pid, ctx->pid, KCMP_FILE, ref->fd, fd) == 0)
			id = ref->file_id;
	}
	if (!id && kind) {
		r = new_kind_entry(ctx, fd, link, &st, &info, &id);
		if (r)
			return r;
	} else if (!id) {
		/* O_TMPFILE holds O_DIRECTORY: a reopen with it would fail. */
		r = new_reg_entry(&ctx->files, link, &st, info.flags & ~(O_CLOEXEC | O_TMPFILE),
				  info.pos, &id);
		if (r)
			return r;
	}
	r = dmp_locks_fd(ctx, fd, link, id);
	if (r)
		return r;
	seen[nr_seen] = (struct fd_seen){ fd, id, st.st_dev, st.st_ino };
	fi->fd = (uint32_t)fd;
	fi->file_id = id;
	fi->cloexec = !!(info.flags & O_CLOEXEC);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The fd numbers of pid, sorted. */
static int list_fds(pid_t pid, int **ret_fds, size_t *ret_nr)
{
	char path[64];
	_cleanup_free_ int *fds = NULL;
	size_t nr = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d) {
		int r = -errno;

		pr_perror("cannot open %s", path);
		return r;
	}
	while ((de = readdir(d))) {
		uint64_t v;

		if (util_parse_u64(de->d_name, 0, INT32_MAX, &v))
			continue;
		if (nr == cap) {
			int *n;

			cap = cap ? cap * 2 : 64;
			n = realloc(fds, cap * sizeof(*fds));
			if (!n) {
				closedir(d);
				return -ENOMEM;
			}
			fds = n;
		}
		fds[nr++] = (int)v;
	}
	closedir(d);
	qsort(fds, nr, sizeof(*fds), cmp_int);
	*ret_nr = nr;
	*ret_fds = TAKE_PTR(fds);
	return 0;
}

/* Keep this process's fds for the kcmp of the next processes of the tree. */
static int remember_fds(struct dump_files *files, pid_t pid, const struct fd_seen *seen, size_t nr)
{
	if (files->nr_refs + nr > files->cap_refs) {
		size_t cap = files->nr_refs + nr + 32;
		struct dmp_fd_ref *n = realloc(files->refs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		files->refs = n;
		files->cap_refs = cap;
	}
	for (size_t i = 0; i < nr; i++)
		files->refs[files->nr_refs++] = (struct dmp_fd_ref){ pid, seen[i].fd, seen[i].dev,
								      seen[i].ino, seen[i].file_id };
	return 0;
}

int dmp_files(struct dump_ctx *ctx)
{
	_cleanup_free_ int *fds = NULL;
	_cleanup_free_ struct fd_seen *seen = NULL;
	struct img img;
	size_t nr = 0;
	int r;

	r = list_fds(ctx->pid, &fds, &nr);
	if (r)
		return r;
	seen = calloc(nr ? nr : 1, sizeof(*seen));
	if (!seen)
		return -ENOMEM;
	r = img_open(&img, ctx->dirfd, IMG_FDINFO, (uint32_t)ctx->pid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	for (size_t i = 0; i < nr; i++) {
		FdinfoEntry fi = FDINFO_ENTRY__INIT;

		r = dump_one_fd(ctx, fds[i], seen, i, &fi);
		if (r)
			goto out;
		r = img_write(&img, &fi.base);
		if (r) {
			pr_err("%s\n", img.err);
			goto out;
		}
	}
	r = remember_fds(&ctx->files, ctx->pid, seen, nr);
out:
	if (img_close(&img) && !r) {
		pr_err("%s\n", img.err);
		r = -EIO;
	}
	return r;
}

int dmp_img_write_all(int dirfd, enum img_kind kind, void *const *msgs, size_t nr)
{
	struct img img;
	int r;

	r = img_open(&img, dirfd, kind, 0, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	/* Every generated message starts with its ProtobufCMessage base. */
	for (size_t i = 0; i < nr && !r; i++) {
		r = img_write(&img, (const ProtobufCMessage *)msgs[i]);
		if (r)
			pr_err("%s\n", img.err);
	}
	if (img_close(&img) && !r) {
		pr_err("%s\n", img.err);
		r = -EIO;
	}
	return r;
}

int dmp_files_write(struct dump_ctx *ctx)
{
	int r;

	r = dmp_unix_check(&ctx->files, ctx->opts);
	if (!r)
		r = dmp_tty_finish(ctx);
	if (!r)
		r = dmp_img_write_all(ctx->dirfd, IMG_FILE_LOCKS, (void *const *)ctx->files.locks,
				      ctx->files.nr_locks);
	if (r)
		return r;
	return dmp_img_write_all(ctx->dirfd, IMG_FILES, (void *const *)ctx->files.entries,
				 ctx->files.nr);
}
