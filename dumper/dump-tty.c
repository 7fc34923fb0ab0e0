/*
 * Terminals of a frozen tree. A pty pair held inside the tree (the /dev/ptmx
 * master and /dev/pts/N slave, paired by the pty number, in one process or
 * split between processes) keeps its termios, window size, packet mode,
 * lock, the bytes queued in each direction, and the session of the tree
 * whose controlling terminal it is (with its foreground group).
 * A terminal that is the controlling tty of a session led from outside the
 * tree is the caller's terminal: with --shell-job it is recorded as such
 * (restore gives the fd the restore caller's terminal), without it the dump
 * fails. dmp_tty_fill() records what one fd is; dmp_tty_finish(), once
 * every process is dumped, pairs ends and reads each pair's state through a
 * copy of the victim's fd (pidfd_getfd). Reading a tty queue takes the bytes
 * from the process, so it is done last and refused with --leave-running.
 */
#include "dump-fdkinds.h"
#include "dump-pidns.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#define PTMX_MAJOR 5
#define PTMX_MINOR 2
#define PTS_MAJOR_FIRST 136
#define PTS_MAJOR_LAST 143
#define VT_MAJOR 4
/* More than a pty's buffers hold in one direction (n_tty: 4 KiB, flip: 64 KiB). */
#define TTY_MAX_QUEUE (128U << 10)

static bool is_pts(dev_t rdev)
{
	return major(rdev) >= PTS_MAJOR_FIRST && major(rdev) <= PTS_MAJOR_LAST;
}

bool dmp_tty_handles(const struct stat *st)
{
	dev_t d = st->st_rdev;

	return S_ISCHR(st->st_mode) && ((major(d) == PTMX_MAJOR && minor(d) == PTMX_MINOR) ||
					is_pts(d) || major(d) == VT_MAJOR);
}

/* The parent and the controlling tty (0: none) of PID: fields 4 and 7 of /proc/PID/stat. */
static int stat_of(pid_t pid, pid_t *ret_ppid, dev_t *ret)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *rp;
	unsigned int nr;
	int ppid, r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = util_read_file(AT_FDCWD, path, &buf, NULL);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	rp = strrchr(buf, ')');
	if (!rp || sscanf(rp + 1, " %*c %d %*d %*d %u", &ppid, &nr) != 2) {
		pr_err("cannot parse the parent and tty of %s\n", path);
		return -EINVAL;
	}
	*ret_ppid = ppid;
	*ret = makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
	return 0;
}

static int master_index(pid_t pid, int fd, uint32_t *ret)
{
	_cleanup_free_ char *text = NULL;
	char path[64], *p;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	r = util_read_file(AT_FDCWD, path, &text, NULL);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	p = strstr(text, "tty-index:");
	if (!p || sscanf(p, "tty-index: %u", ret) != 1) {
		pr_err("pid %d: fd %d: no tty-index in its fdinfo\n", (int)pid, fd);
		return -EINVAL;
	}
	return 0;
}

int dmp_tty_fill(struct dump_ctx *ctx, int fd, const char *link, const struct stat *st,
		 const struct proc_fdinfo *info, FileEntry *fe)
{
	TtyEntry *t = calloc(1, sizeof(*t));
	dev_t ctty;
	pid_t ppid;
	int r;

	if (!t)
		return -ENOMEM;
	tty_entry__init(t);
	fe->tty = t;
	fe->type = FILE_TYPE__FILE_TTY;
	t->flags = info->flags & ~O_CLOEXEC;
	if (!is_pts(st->st_rdev) && major(st->st_rdev) != VT_MAJOR) {
		t->kind = TTY_KIND__TTY_PTY_MASTER;
		return master_index(ctx->pid, fd, &t->index);
	}
	t->index = major(st->st_rdev) == VT_MAJOR
			   ? minor(st->st_rdev)
			   : (major(st->st_rdev) - PTS_MAJOR_FIRST) * 256 + minor(st->st_rdev);
	r = stat_of(ctx->pid, &ppid, &ctty);
	if (r)
		return r;
	/* The terminal of a session whose leader is not this process: the caller's. */
	if (ctty == st->st_rdev && ctx->stat.sid != ctx->pid) {
		t->kind = TTY_KIND__TTY_SHELL;
		return 0;
	}
	if (!is_pts(st->st_rdev)) {
		pr_err("pid %d: fd %d is the terminal %s, which is not its controlling terminal: "
		       "not supported\n",
		       (int)ctx->pid, fd, link);
		return -ENOTSUP;
	}
	t->kind = TTY_KIND__TTY_PTY_SLAVE;
	return 0;
}

/* A copy of the victim's descriptor of file entry ID, through pidfd_getfd. */
static int grab(const struct dump_files *files, uint32_t id, pid_t *ret_pid, int *ret_fd)
{
	for (size_t i = 0; i < files->nr_refs; i++) {
		const struct dmp_fd_ref *ref = &files->refs[i];

		if (ref->file_id != id)
			continue;
		*ret_pid = ref->pid;
		*ret_fd = ref->fd;
		return proc_fd_copy(ref->pid, ref->fd);
	}
	pr_err("files.img id %u: no process of the tree holds it\n", id);
	return -ENOENT;
}

static int read_settings(int mfd, const char *what, TtyEntry *t)
{
	struct termios tio;
	struct winsize ws;
	int pkt = 0, lck = 0;

	if (tcgetattr(mfd, &tio) || ioctl(mfd, TIOCGWINSZ, &ws) || ioctl(mfd, TIOCGPKT, &pkt) ||
	    ioctl(mfd, TIOCGPTLCK, &lck)) {
		pr_perror("%s: cannot read its settings", what);
		return -errno;
	}
	t->has_iflag = t->has_oflag = t->has_cflag = t->has_lflag = t->has_line = true;
	t->iflag = tio.c_iflag;
	t->oflag = tio.c_oflag;
	t->cflag = tio.c_cflag;
	t->lflag = tio.c_lflag;
	t->line = tio.c_line;
	t->has_cc = true;
	t->cc.len = NCCS;
	t->cc.data = malloc(NCCS);
	if (!t->cc.data)
		return -ENOMEM;
	memcpy(t->cc.data, tio.c_cc, NCCS);
	t->has_ws_row = t->has_ws_col = t->has_ws_xpixel = t->has_ws_ypixel = true;
	t->ws_row = ws.ws_row;
	t->ws_col = ws.ws_col;
	t->ws_xpixel = ws.ws_xpixel;
	t->ws_ypixel = ws.ws_ypixel;
	t->has_packet = t->has_locked = true;
	t->packet = pkt != 0;
	t->locked = lck != 0;
	return 0;
}

/* Bytes readable at FD now; poll first so the kernel moves pending input in. */
static int queued(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = 0;

	(void)!poll(&p, 1, 0);
	if (ioctl(fd, FIONREAD, &n) < 0) {
		pr_perror("%s: FIONREAD", what);
		return -errno;
	}
	return n;
}

/* Read N bytes queued at FD; in packet mode each read starts with a status byte. */
static int take(int fd, bool packet, int n, const char *what, ProtobufCBinaryData *ret)
{
	uint8_t *buf;
	size_t got = 0;

	if ((unsigned int)n > TTY_MAX_QUEUE) {
		pr_err("%s: %d bytes queued: more than %u is not supported\n", what, n,
		       TTY_MAX_QUEUE);
		return -ENOTSUP;
	}
	buf = malloc((size_t)n + 1);
	if (!buf)
		return -ENOMEM;
	while (got < (size_t)n) {
		ssize_t k = read(fd, buf + got, (size_t)n - got + (packet ? 1 : 0));

		if (k <= 0) {
			pr_err("%s: read of its queue stopped at %zu of %d bytes: %s\n", what, got,
			       n, k < 0 ? strerror(errno) : "EOF");
			free(buf);
			return -EIO;
		}
		if (packet) { /* drop the status byte (TIOCPKT_DATA or an event) */
			memmove(buf + got, buf + got + 1, (size_t)k - 1);
			k--;
		}
		got += (size_t)k;
	}
	ret->data = buf;
	ret->len = got;
	return 0;
}

/* The input queue of the slave: canonical mode hides a partial line, so read it raw. */
static int take_input(int sfd, const char *what, ProtobufCBinaryData *ret)
{
	struct termios orig, raw;
	int n, r;

	if (tcgetattr(sfd, &orig)) {
		pr_perror("%s: tcgetattr", what);
		return -errno;
	}
	raw = orig;
	raw.c_lflag &= ~(tcflag_t)ICANON;
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	if (tcsetattr(sfd, TCSANOW, &raw)) {
		pr_perror("%s: cannot make it non-canonical to read its input queue", what);
		return -errno;
	}
	n = queued(sfd, what);
	r = n < 0 ? n : n > 0 ? take(sfd, false, n, what, ret) : 0;
	if (tcsetattr(sfd, TCSANOW, &orig) && !r) {
		pr_perror("%s: cannot put its termios back", what);
		r = -errno;
	}
	return r;
}

static int find_end(const struct dump_files *files, uint32_t index, TtyKind kind)
{
	for (size_t i = 0; i < files->nr; i++) {
		const FileEntry *f = files->entries[i];

		if (f->type == FILE_TYPE__FILE_TTY && f->tty->kind == kind &&
		    f->tty->index == index)
			return (int)i;
	}
	return -1;
}

/* Whether PID holds an end of pty INDEX, and whether several processes hold ends. */
static void holders(const struct dump_files *files, uint32_t index, pid_t pid, bool *ret_held,
		    bool *ret_split)
{
	pid_t owner = 0;

	*ret_held = *ret_split = false;
	for (size_t i = 0; i < files->nr_refs; i++) {
		const struct dmp_fd_ref *ref = &files->refs[i];
		const FileEntry *f = NULL;

		for (size_t k = 0; k < files->nr && !f; k++)
			if (files->entries[k]->id == ref->file_id)
				f = files->entries[k];
		if (!f || f->type != FILE_TYPE__FILE_TTY || f->tty->kind == TTY_KIND__TTY_SHELL ||
		    f->tty->index != index)
			continue;
		*ret_held |= ref->pid == pid;
		*ret_split |= owner && ref->pid != owner;
		owner = ref->pid;
	}
}

/* Whether PID is ROOT or a descendant of it (the tree); a process gone is not. */
static int in_tree(pid_t root, pid_t pid, bool *ret)
{
	dev_t tty;
	int r;

	*ret = false;
	while (pid > 1 && pid != root) {
		r = stat_of(pid, &pid, &tty);
		if (r == -ENOENT || r == -ESRCH)
			return 0;
		if (r)
			return r;
	}
	*ret = pid == root;
	return 0;
}

/*
 * The session whose controlling terminal pty INDEX is (TIOCGSID on the
 * master works from outside the session) and its foreground group, into T.
 * The session leader makes it its terminal again at restore, through an end
 * it holds or one every process inherits (a pair split between processes).
 */
static int dump_session(struct dump_ctx *ctx, int mfd, uint32_t index, const char *what,
			TtyEntry *t)
{
	pid_t sid = 0, pgrp = 0;
	bool inside, held, split;
	int r;

	if (ioctl(mfd, TIOCGSID, &sid) < 0) {
		if (errno == ENOTTY)
			return 0; /* the terminal of no session */
		pr_perror("%s: TIOCGSID", what);
		return -errno;
	}
	if (ioctl(mfd, TIOCGPGRP, &pgrp) < 0) {
		pr_perror("%s: TIOCGPGRP", what);
		return -errno;
	}
	r = in_tree(ctx->pid, sid, &inside);
	if (r)
		return r;
	if (!inside) {
		pr_warn("%s is the controlling terminal of session %d, led from outside the tree: "
			"the restored processes do not get it back\n",
			what, (int)sid);
		return 0;
	}
	holders(&ctx->files, index, sid, &held, &split);
	if (!held && !split) {
		pr_err("%s is the controlling terminal of session %d, whose leader holds no end "
		       "of it while one other process holds them all: not supported\n",
		       what, (int)sid);
		return -ENOTSUP;
	}
	r = dmp_pidns_image_pid(ctx->pid, sid, &t->ctty_sid);
	if (r)
		return r;
	t->has_ctty_sid = true;
	/* A group whose leader is gone cannot be named in the images: the leader's then. */
	if (pgrp > 0 && dmp_pidns_image_pid(ctx->pid, pgrp, &t->ctty_pgrp) == 0 &&
	    t->ctty_pgrp)
		t->has_ctty_pgrp = true;
	pr_debug("%s: controlling terminal of session %u, foreground group %u\n", what,
		 t->ctty_sid, t->ctty_pgrp);
	return 0;
}

/* Settings and queues of pty INDEX into T (the first entry of the pair). */
static int dump_pair(struct dump_ctx *ctx, uint32_t index, TtyEntry *t)
{
	const struct dump_files *files = &ctx->files;
	int mi = find_end(files, index, TTY_KIND__TTY_PTY_MASTER);
	int si = find_end(files, index, TTY_KIND__TTY_PTY_SLAVE);
	_cleanup_close_ int mfd = -1, sfd = -1;
	char what[96];
	pid_t pid;
	int fd, n, r;

	if (mi < 0) {
		pr_err("pty %u: the tree holds its slave /dev/pts/%u but not its master: not "
		       "supported\n",
		       index, index);
		return -ENOTSUP;
	}
	mfd = grab(files, files->entries[mi]->id, &pid, &fd);
	if (mfd < 0)
		return mfd;
	snprintf(what, sizeof(what), "pid %d: fd %d (pty master %u)", (int)pid, fd, index);
	r = read_settings(mfd, what, t);
	if (!r)
		r = dump_session(ctx, mfd, index, what, t);
	if (r)
		return r;
	n = queued(mfd, what);
	if (n < 0)
		return n;
	if (n && ctx->opts->leave_running) {
		pr_err("%s: %d bytes queued, which cannot be read without taking them from the "
		       "process: not supported with --leave-running\n",
		       what, n);
		return -ENOTSUP;
	}
	if (n && (r = take(mfd, t->packet, n, what, &t->out_data)))
		return r;
	t->has_out_data = t->out_data.len > 0;
	if (si < 0 || ctx->opts->leave_running)
		return 0;
	sfd = grab(files, files->entries[si]->id, &pid, &fd);
	if (sfd < 0)
		return sfd;
	snprintf(what, sizeof(what), "pid %d: fd %d (/dev/pts/%u)", (int)pid, fd, index);
	r = take_input(sfd, what, &t->in_data);
	t->has_in_data = t->in_data.len > 0;
	pr_debug("pty %u: %zu bytes queued to the master, %zu to the slave\n", index,
		 t->out_data.len, t->in_data.len);
	return r;
}

/*
 * An fd on the caller's terminal (file entry F): fine with --shell-job, unless
 * the terminal is a pty whose master the tree holds (then it is a slave).
 */
static int check_shell(struct dump_ctx *ctx, FileEntry *f)
{
	struct dump_files *files = &ctx->files;
	char path[64];
	struct stat st;
	pid_t pid = 0;
	int fd = -1;

	for (size_t k = 0; k < files->nr_refs && fd < 0; k++)
		if (files->refs[k].file_id == f->id) {
			pid = files->refs[k].pid;
			fd = files->refs[k].fd;
		}
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	if (!stat(path, &st) && is_pts(st.st_rdev) &&
	    find_end(files, f->tty->index, TTY_KIND__TTY_PTY_MASTER) >= 0) {
		f->tty->kind = TTY_KIND__TTY_PTY_SLAVE;
		return 0;
	}
	if (!ctx->opts->shell_job) {
		char link[256] = "?";
		ssize_t n = readlink(path, link, sizeof(link) - 1);

		link[n > 0 ? n : 1] = '\0';
		pr_err("pid %d: fd %d (%s) is the controlling terminal of a session led from "
		       "outside the tree: dump with --shell-job\n",
		       (int)pid, fd, link);
		return -EINVAL;
	}
	return 0;
}

int dmp_tty_finish(struct dump_ctx *ctx)
{
	struct dump_files *files = &ctx->files;
	int r;

	for (size_t i = 0; i < files->nr; i++) {
		FileEntry *f = files->entries[i];

		if (f->type == FILE_TYPE__FILE_TTY && f->tty->kind == TTY_KIND__TTY_SHELL &&
		    (r = check_shell(ctx, f)))
			return r;
	}
	for (size_t i = 0; i < files->nr; i++) {
		FileEntry *f = files->entries[i];
		TtyEntry *t = f->tty;

		if (f->type != FILE_TYPE__FILE_TTY || t->kind == TTY_KIND__TTY_SHELL)
			continue;
		/* The first entry of a pair carries its state. */
		if ((size_t)find_end(files, t->index, TTY_KIND__TTY_PTY_MASTER) < i ||
		    (size_t)find_end(files, t->index, TTY_KIND__TTY_PTY_SLAVE) < i)
			continue;
		r = dump_pair(ctx, t->index, t);
		if (r)
			return r;
	}
	return 0;
}
