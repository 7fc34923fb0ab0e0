/*
 * Terminals at restore. A pty pair of the tree is made anew (/dev/ptmx, the
 * slave through TIOCGPTPEER, so its number may differ from the dumped one),
 * once per helper: window size, then the queued bytes, then termios, packet
 * mode and lock. The queued bytes were processed by the line discipline
 * before the dump, so they go back with processing off: output written to
 * the slave without OPOST, input written to the master with no input
 * processing, echo or signals, waited for until the slave holds it all.
 * The master's description is the pair's own; more slave descriptions are
 * reopened. A pair split between processes is made once by the root helper
 * (rst-shared.c) and inherited: each process keeps the ends it had. The
 * leader of the session whose terminal it was makes it its controlling
 * terminal again (rst_tty_ctty), with its foreground group. TTY_SHELL
 * (--shell-job) opens /dev/tty: the restore caller's controlling terminal,
 * which the restored root's session now is.
 */
#include "rst-fdkinds.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define TTY_INPUT_WAIT_MS 2000

const char *rst_tty_bad(const FileEntry *f)
{
	const TtyEntry *t = f->tty;

	if (!t)
		return "no tty message";
	if (t->kind < TTY_KIND__TTY_PTY_MASTER || t->kind > TTY_KIND__TTY_SHELL)
		return "unknown tty kind";
	if (t->has_cc && t->cc.len != NCCS)
		return "termios c_cc of the wrong size";
	if (t->out_data.len > (1U << 20) || t->in_data.len > (1U << 20))
		return "more queued bytes than a pty holds";
	return NULL;
}

/* The entry of pty INDEX that carries the pair's state, or NULL. */
static const TtyEntry *pair_state(const struct rst_plan *p, uint32_t index)
{
	for (size_t i = 0; i < p->nr_files; i++) {
		const TtyEntry *t = p->files[i]->tty;

		if (p->files[i]->type == FILE_TYPE__FILE_TTY && t->kind != TTY_KIND__TTY_SHELL &&
		    t->index == index && t->has_cc)
			return t;
	}
	return NULL;
}

static void termios_of(const TtyEntry *t, struct termios *tio)
{
	memset(tio, 0, sizeof(*tio));
	tio->c_iflag = t->iflag;
	tio->c_oflag = t->oflag;
	tio->c_cflag = t->cflag;
	tio->c_lflag = t->lflag;
	tio->c_line = (cc_t)t->line;
	memcpy(tio->c_cc, t->cc.data, NCCS); /* the speed is in c_cflag (CBAUD) */
}

/* Wait until the slave's line discipline holds N input bytes. */
static int wait_input(int s, int n)
{
	for (int ms = 0; ms < TTY_INPUT_WAIT_MS; ms++) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		int have = 0;

		(void)!poll(&p, 1, 0); /* also runs the pending buffer work */
		if (ioctl(s, FIONREAD, &have) < 0)
			return -errno;
		if (have >= n)
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

static int put_queues(struct rst_child *c, int m, int s, const TtyEntry *t, const char *what)
{
	struct termios tio, tmp;

	termios_of(t, &tio);
	tmp = tio;
	tmp.c_oflag &= ~(tcflag_t)OPOST;
	if (t->out_data.len && (tcsetattr(s, TCSANOW, &tmp) ||
				util_write_full(s, t->out_data.data, t->out_data.len))) {
		rst_child_fail(c, "%s: cannot queue its %zu output bytes: %s", what,
			       t->out_data.len, strerror(errno));
		return -EIO;
	}
	tmp.c_iflag = 0;
	tmp.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ECHOE | ECHOK | ECHONL | ISIG | IEXTEN);
	if (t->in_data.len) {
		int r;

		if (tcsetattr(s, TCSANOW, &tmp) ||
		    util_write_full(m, t->in_data.data, t->in_data.len)) {
			rst_child_fail(c, "%s: cannot queue its %zu input bytes: %s", what,
				       t->in_data.len, strerror(errno));
			return -EIO;
		}
		r = wait_input(s, (int)t->in_data.len);
		if (r) {
			rst_child_fail(c, "%s: its %zu input bytes did not reach the slave: %s",
				       what, t->in_data.len, strerror(-r));
			return r;
		}
	}
	if (tcsetattr(s, TCSANOW, &tio)) {
		rst_child_fail(c, "%s: tcsetattr: %s", what, strerror(errno));
		return -errno;
	}
	return 0;
}

static int set_pair(struct rst_child *c, int m, int s, const TtyEntry *t, const char *what)
{
	struct winsize ws = { .ws_row = (unsigned short)t->ws_row,
			      .ws_col = (unsigned short)t->ws_col,
			      .ws_xpixel = (unsigned short)t->ws_xpixel,
			      .ws_ypixel = (unsigned short)t->ws_ypixel };
	int pkt = t->packet, lck = 1, r;

	if (ioctl(m, TIOCSWINSZ, &ws)) {
		rst_child_fail(c, "%s: TIOCSWINSZ: %s", what, strerror(errno));
		return -errno;
	}
	r = put_queues(c, m, s, t, what);
	if (r)
		return r;
	if (ioctl(m, TIOCPKT, &pkt) || (t->locked && ioctl(m, TIOCSPTLCK, &lck))) {
		rst_child_fail(c, "%s: packet mode or lock: %s", what, strerror(errno));
		return -errno;
	}
	return 0;
}

static struct rst_fdobj *make_pair(struct rst_child *c, const struct rst_fd *fd)
{
	const TtyEntry *t = fd->file->tty, *st = pair_state(c->plan, t->index);
	char what[64];
	int m, s, unlock = 0;

	snprintf(what, sizeof(what), "fd %u (pty %u)", fd->fd, t->index);
	if (!st) {
		rst_child_fail(c, "%s: no entry of the pair carries its settings", what);
		return NULL;
	}
	m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0) {
		rst_child_fail(c, "%s: cannot open /dev/ptmx: %s", what, strerror(errno));
		return NULL;
	}
	s = ioctl(m, TIOCSPTLCK, &unlock) ? -1 :
					    ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		rst_child_fail(c, "%s: cannot open the slave of a new pty: %s", what,
			       strerror(errno));
		close(m);
		return NULL;
	}
	if (set_pair(c, m, s, st, what)) {
		close(m);
		close(s);
		return NULL;
	}
	return rst_fdobj_add(c, FILE_TYPE__FILE_TTY, t->index, NULL, m, s);
}

/* A new fd on the description held at HOLDER, with the dumped status flags. */
static int dup_held(struct rst_child *c, int holder, uint32_t flags, const char *what)
{
	int nfd = fcntl(holder, F_DUPFD_CLOEXEC, 0);

	if (nfd < 0 || fcntl(nfd, F_SETFL, (int)(flags & (O_NONBLOCK | O_APPEND | O_ASYNC)))) {
		rst_child_fail(c, "%s: cannot set up its description: %s", what, strerror(errno));
		if (nfd >= 0)
			close(nfd);
		return -errno;
	}
	return nfd;
}

static int open_shell(struct rst_child *c, const struct rst_fd *fd)
{
	int flags = (int)(fd->file->tty->flags & (O_ACCMODE | O_NONBLOCK | O_APPEND));
	int nfd = open("/dev/tty", flags | O_NOCTTY | O_CLOEXEC);

	if (nfd < 0) {
		rst_child_fail(c, "fd %u was the caller's terminal (--shell-job), but /dev/tty "
			       "cannot be opened (does relive restore run on a terminal?): %s",
			       fd->fd, strerror(errno));
		return -errno;
	}
	return nfd;
}

int rst_tty_open(struct rst_child *c, const struct rst_fd *fd)
{
	const TtyEntry *t = fd->file->tty;
	bool master = t->kind == TTY_KIND__TTY_PTY_MASTER;
	struct rst_fdobj *o;
	char what[64];

	if (t->kind == TTY_KIND__TTY_SHELL)
		return open_shell(c, fd);
	snprintf(what, sizeof(what), "fd %u (pty %u %s)", fd->fd, t->index,
		 master ? "master" : "slave");
	o = rst_fdobj_find(FILE_TYPE__FILE_TTY, t->index, NULL);
	if (!o)
		o = make_pair(c, fd);
	if (!o)
		return -EIO;
	if (!o->used[master ? 0 : 1]) {
		o->used[master ? 0 : 1] = true;
		return dup_held(c, o->fds[master ? 0 : 1], t->flags, what);
	}
	if (master) {
		rst_child_fail(c, "%s: a second open description of one pty master cannot be "
			       "made", what);
		return -ENOTSUP;
	}
	return rst_fdobj_reopen(c, o->fds[1], (int)t->flags | O_NOCTTY, what);
}

/* The task of the plan that leads session SID, or NULL. */
static const struct rst_task *leader_of(const struct rst_plan *p, uint32_t sid)
{
	for (size_t i = 0; i < p->nr_tasks; i++)
		if (p->tasks[i].pid == sid && p->tasks[i].sid == sid)
			return &p->tasks[i];
	return NULL;
}

int rst_tty_ctty(struct rst_child *c)
{
	const struct rst_plan *p = c->plan;
	const struct rst_task *task = c->task;

	for (size_t i = 0; i < p->nr_files; i++) {
		const TtyEntry *t = p->files[i]->tty;

		/* Once, in the root: a session nobody leads would be skipped silently. */
		if (task == &p->tasks[0] && p->files[i]->type == FILE_TYPE__FILE_TTY &&
		    t->has_ctty_sid && !leader_of(p, t->ctty_sid)) {
			rst_child_fail(c, "pty %u was the controlling terminal of session %u, which "
				       "no process of the images leads",
				       t->index, t->ctty_sid);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < p->nr_files; i++) {
		const FileEntry *f = p->files[i];
		const TtyEntry *t = f->tty;
		struct rst_fdobj *o;
		pid_t pgrp;

		if (f->type != FILE_TYPE__FILE_TTY || t->kind == TTY_KIND__TTY_SHELL || !t->has_cc ||
		    !t->has_ctty_sid || t->ctty_sid != task->pid)
			continue;
		/* Its own pair, or one the root helper made for the tree (inherited). */
		o = rst_fdobj_find(FILE_TYPE__FILE_TTY, t->index, NULL);
		if (!o || o->fds[1] < 0) {
			rst_child_fail(c, "pty %u was the controlling terminal of session %u, but no "
				       "end of it reached the session's leader",
				       t->index, t->ctty_sid);
			return -ENOENT;
		}
		if (task->sid != task->pid || ioctl(o->fds[1], TIOCSCTTY, 0) < 0) {
			rst_child_fail(c, "pty %u: cannot make it the controlling terminal of session "
				       "%u again: %s",
				       t->index, t->ctty_sid,
				       task->sid != task->pid ? "not a session leader"
							      : strerror(errno));
			return -EPERM;
		}
		pgrp = t->has_ctty_pgrp ? (pid_t)t->ctty_pgrp : (pid_t)task->pid;
		if (pgrp != (pid_t)task->pid && tcsetpgrp(o->fds[1], pgrp) < 0) {
			rst_child_fail(c, "pty %u: cannot make group %d its foreground group: %s",
				       t->index, (int)pgrp, strerror(errno));
			return -errno;
		}
	}
	return 0;
}
