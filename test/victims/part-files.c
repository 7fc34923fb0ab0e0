/*
 * The files part of the victims: regular files open with offsets and flags
 * that a restore must bring back exactly. An O_RDWR file at an odd offset
 * (and a dup of it at fd 100 that shares the offset), an O_APPEND file whose
 * position says 10 but whose writes land at the end, an O_RDONLY|O_NONBLOCK
 * file mid-way, a sparse file at 5 GiB + 7, close-on-exec on one fd only,
 * stdin on /dev/null, stdout/stderr sharing one description on the log, and
 * the cwd. The check writes through each and reads back where it landed.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define RW_OFF 4321
#define APPEND_SIZE 1000
#define RO_OFF 100
#define SPARSE_OFF ((5LL << 30) + 7)
#define DUP_FD 100

static int rw_fd = -1, append_fd = -1, ro_fd = -1, sparse_fd = -1;
static char rw_path[PATH_MAX], append_path[PATH_MAX], ro_path[PATH_MAX], sparse_path[PATH_MAX];
static struct stat rw_st;
static off_t stdout_off;

static unsigned char byte_at(off_t off)
{
	return (unsigned char)('a' + off % 23);
}

static int make_file(const char *dir, const char *name, char *path, int flags, size_t size,
		     char *err, size_t len)
{
	unsigned char buf[8192];
	int fd;

	snprintf(path, PATH_MAX, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return victim_fail(err, len, "create %s: %s", path, strerror(errno));
	for (size_t i = 0; i < size; i++)
		buf[i] = byte_at(i);
	if (write(fd, buf, size) != (ssize_t)size) {
		close(fd);
		return victim_fail(err, len, "write %s: %s", path, strerror(errno));
	}
	close(fd);
	fd = open(path, flags);
	if (fd < 0)
		return victim_fail(err, len, "open %s: %s", path, strerror(errno));
	return fd;
}

static int files_setup(struct victim_ctx *ctx, char *err, size_t len)
{
	rw_fd = make_file(ctx->workdir, "rw.dat", rw_path, O_RDWR, 8192, err, len);
	if (rw_fd < 0)
		return -1;
	append_fd = make_file(ctx->workdir, "append.dat", append_path,
			      O_WRONLY | O_APPEND | O_CLOEXEC, APPEND_SIZE, err, len);
	if (append_fd < 0)
		return -1;
	ro_fd = make_file(ctx->workdir, "ro.dat", ro_path, O_RDONLY | O_NONBLOCK, 4096, err, len);
	if (ro_fd < 0)
		return -1;
	sparse_fd = make_file(ctx->workdir, "sparse.dat", sparse_path, O_RDWR, 16, err, len);
	if (sparse_fd < 0)
		return -1;
	if (lseek(rw_fd, RW_OFF, SEEK_SET) != RW_OFF || lseek(append_fd, 10, SEEK_SET) != 10 ||
	    lseek(ro_fd, RO_OFF, SEEK_SET) != RO_OFF ||
	    lseek(sparse_fd, SPARSE_OFF, SEEK_SET) != SPARSE_OFF)
		return victim_fail(err, len, "lseek: %s", strerror(errno));
	if (dup2(rw_fd, DUP_FD) != DUP_FD)
		return victim_fail(err, len, "dup2 to fd %d: %s", DUP_FD, strerror(errno));
	if (fstat(rw_fd, &rw_st))
		return victim_fail(err, len, "fstat %s: %s", rw_path, strerror(errno));
	if (chdir(ctx->workdir))
		return victim_fail(err, len, "chdir %s: %s", ctx->workdir, strerror(errno));
	printf("files: set up in %s\n", ctx->workdir);
	fflush(stdout);
	stdout_off = lseek(STDOUT_FILENO, 0, SEEK_CUR);
	return 0;
}

static int check_flags(int fd, const char *path, int want_fl, int want_fd, char *err, size_t len)
{
	int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
	int mask = O_ACCMODE | O_APPEND | O_NONBLOCK;

	if (fl < 0 || fdf < 0)
		return victim_fail(err, len, "fd %d (%s) is not open: %s", fd, path,
				   strerror(errno));
	if ((fl & mask) != want_fl)
		return victim_fail(err, len, "fd %d (%s): flags %#o, expected %#o", fd, path,
				   fl & mask, want_fl);
	if ((fdf & FD_CLOEXEC) != want_fd)
		return victim_fail(err, len, "fd %d (%s): FD_CLOEXEC is %d, expected %d", fd, path,
				   fdf & FD_CLOEXEC, want_fd);
	return 0;
}

static int check_pos(int fd, const char *path, off_t want, char *err, size_t len)
{
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (pos != want)
		return victim_fail(err, len, "fd %d (%s): offset %lld, expected %lld", fd, path,
				   (long long)pos, (long long)want);
	return 0;
}

/* Write tag at fd's position and read it back at want through a separate open. */
static int check_write_lands(int fd, const char *path, const char *tag, off_t want, char *err,
			     size_t len)
{
	size_t n = strlen(tag);
	char got[16] = "";
	int rfd;

	if (write(fd, tag, n) != (ssize_t)n)
		return victim_fail(err, len, "write to fd %d (%s): %s", fd, path, strerror(errno));
	rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		return victim_fail(err, len, "reopen %s: %s", path, strerror(errno));
	if (pread(rfd, got, n, want) != (ssize_t)n || memcmp(got, tag, n)) {
		close(rfd);
		return victim_fail(err, len, "write to fd %d did not land at offset %lld of %s",
				   fd, (long long)want, path);
	}
	close(rfd);
	return 0;
}

static int check_std(char *err, size_t len)
{
	struct stat st;
	off_t before;

	if (fstat(STDIN_FILENO, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
		return victim_fail(err, len, "stdin is not /dev/null any more");
	if (check_pos(STDOUT_FILENO, "stdout", stdout_off, err, len))
		return -1;
	/* The driver opens stdout and stderr as one description (>log 2>&1). */
	before = lseek(STDERR_FILENO, 0, SEEK_CUR);
	if (write(STDOUT_FILENO, "files: stdout ok\n", 17) != 17)
		return victim_fail(err, len, "write to stdout: %s", strerror(errno));
	if (lseek(STDERR_FILENO, 0, SEEK_CUR) != before + 17)
		return victim_fail(err, len, "stdout and stderr no longer share a file offset");
	return 0;
}

static int files_check(struct victim_ctx *ctx, char *err, size_t len)
{
	char cwd[PATH_MAX], buf[16];
	struct stat st;

	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, ctx->workdir))
		return victim_fail(err, len, "cwd is '%s', expected %s", cwd, ctx->workdir);
	if (check_flags(rw_fd, rw_path, O_RDWR, 0, err, len) ||
	    check_flags(DUP_FD, rw_path, O_RDWR, 0, err, len) ||
	    check_flags(append_fd, append_path, O_WRONLY | O_APPEND, FD_CLOEXEC, err, len) ||
	    check_flags(ro_fd, ro_path, O_RDONLY | O_NONBLOCK, 0, err, len) ||
	    check_flags(sparse_fd, sparse_path, O_RDWR, 0, err, len))
		return -1;
	if (fstat(DUP_FD, &st) || st.st_ino != rw_st.st_ino || st.st_dev != rw_st.st_dev)
		return victim_fail(err, len, "fd %d is not %s any more", DUP_FD, rw_path);
	if (check_pos(rw_fd, rw_path, RW_OFF, err, len) ||
	    check_pos(append_fd, append_path, 10, err, len) ||
	    check_pos(ro_fd, ro_path, RO_OFF, err, len) ||
	    check_pos(sparse_fd, sparse_path, SPARSE_OFF, err, len))
		return -1;
	if (check_write_lands(rw_fd, rw_path, "NEXT", RW_OFF, err, len) ||
	    check_pos(DUP_FD, rw_path, RW_OFF + 4, err, len) ||
	    check_write_lands(append_fd, append_path, "TAIL", APPEND_SIZE, err, len) ||
	    check_write_lands(sparse_fd, sparse_path, "BIG", SPARSE_OFF, err, len))
		return -1;
	if (read(ro_fd, buf, sizeof(buf)) != sizeof(buf))
		return victim_fail(err, len, "read fd %d (%s): %s", ro_fd, ro_path,
				   strerror(errno));
	for (size_t i = 0; i < sizeof(buf); i++)
		if ((unsigned char)buf[i] != byte_at(RO_OFF + i))
			return victim_fail(err, len, "read from fd %d (%s) got the bytes of the "
					   "wrong offset", ro_fd, ro_path);
	return check_std(err, len);
}

const struct victim_part victim_part_files = {
	.name = "files",
	.setup = files_setup,
	.check = files_check,
};
