/*
 * The guard of the lazy-pages daemon: a second process, cloned at start with
 * CLONE_FILES (its own memory, the daemon's descriptor table), so that every
 * uffd the daemon receives stays open while the guard lives. Were the daemon
 * killed, its uffds would close and the restored processes would fault in
 * fresh zero pages, silently (KERNEL-NOTES "userfaultfd"); with the guard
 * they stay blocked in their faults instead, and the guard, woken by the
 * daemon's pidfd, waits (min(--lazy-timeout, 30 s)) on DIR/lazy-takeover.sock
 * for a restarted daemon to take their uffds over (lp-takeover.c); if none
 * comes, it kills every process whose memory was not complete, naming each
 * with the pages that never arrived, then exits. The daemon keeps the
 * list in a MAP_SHARED table: one slot per process handed over or forked
 * (pid, a pidfd of the guard's own, complete or not), written before the
 * handover is acknowledged and after every loop turn. A forked child is only
 * known by its uffd: its pid is found among its parent's children (those with
 * userfaultfd-registered VMAs, "um" in smaps); a child not identified yet is
 * treated as incomplete. The guard ignores every signal but SIGKILL, never
 * has children, and is reaped by the daemon on a clean exit.
 */
#include "lp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LP_GUARD_SLOTS 4096U
#define LP_GUARD_KILLS 256U

enum lp_slot_state { SLOT_ACTIVE = 1, SLOT_COMPLETE, SLOT_GONE };
enum lp_tab_state { TAB_RUNNING = 0, TAB_STOP };

struct lp_guard_slot {
	int32_t pid; /* as we see it; 0: a forked child not identified yet */
	int32_t image_pid; /* in pstree.img (another under restore --pidns); 0: forked */
	int32_t pidfd; /* the guard's own; -1 while the pid is unknown */
	int32_t parent; /* slot it forked from, -1 */
	uint32_t state; /* enum lp_slot_state */
	int32_t uffd; /* the daemon's descriptor number (shared table) */
	uint32_t takeable; /* ready ('R' seen) and never reshaped: a successor may take it */
	uint64_t missing; /* pages not installed yet */
};

/* Shared between the daemon and the guard (MAP_SHARED, created before the clone). */
struct lp_guard_tab {
	uint32_t state; /* enum lp_tab_state */
	uint32_t nr;
	struct lp_guard_slot slot[LP_GUARD_SLOTS];
};

struct lp_guard {
	struct lp_guard_tab *tab;
	pid_t pid; /* of the guard */
	int self_pidfd; /* the daemon's pidfd, polled by the guard */
	int efd; /* the daemon asks the guard to leave */
	uint64_t next_resolve_us; /* forked children are looked for every 20 ms at most */
	unsigned int wait_s; /* for a successor, once the daemon is dead */
	char tk_path[108]; /* DIR/lazy-takeover.sock */
	struct lp_proc *procs[LP_GUARD_SLOTS]; /* daemon side: slot -> process */
};

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void set_state(struct lp_guard_slot *s, uint32_t state)
{
	__atomic_store_n(&s->state, state, __ATOMIC_RELEASE);
}

/* The whole of a small /proc file into buf (NUL-terminated); length or -errno. No malloc. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, off = 0;

	if (fd < 0)
		return -errno;
	while ((size_t)off < len - 1 && (n = read(fd, buf + off, len - 1 - off)) > 0)
		off += n;
	close(fd);
	buf[off] = '\0';
	return off;
}

/* Does pid have userfaultfd-registered VMAs ("um" in smaps VmFlags)? */
static bool has_uffd_vmas(pid_t pid)
{
	char path[64], buf[4096], carry[4] = "   ";
	bool found = false;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	/* flags are two letters separated by blanks: look for " um" across reads */
	while (!found && (n = read(fd, buf + 3, sizeof(buf) - 4)) > 0) {
		memcpy(buf, carry, 3);
		buf[n + 3] = '\0';
		found = strstr(buf, " um ") || strstr(buf, " um\n");
		memcpy(carry, buf + n, 3);
	}
	close(fd);
	return found;
}

/*
 * The children of pid (of every thread of it) into out, at most max; how many.
 * getdents64 rather than opendir: the guard must not call malloc.
 */
static size_t children_of(pid_t pid, pid_t *out, size_t max)
{
	char path[320], buf[4096], kids[4096];
	size_t n = 0;
	long nread;
	int dfd;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	while ((nread = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < nread;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			char *s, *end;

			off += d->d_reclen;
			if (d->d_name[0] < '0' || d->d_name[0] > '9')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%s/children", pid, d->d_name);
			if (read_small(path, kids, sizeof(kids)) <= 0)
				continue;
			for (s = kids; *s && n < max; s = end) {
				long v = strtol(s, &end, 10);

				if (end == s)
					break;
				if (v > 0)
					out[n++] = (pid_t)v;
			}
		}
	}
	close(dfd);
	return n;
}

static int slot_by_pid(const struct lp_guard_tab *t, pid_t pid)
{
	for (uint32_t i = 0; i < t->nr; i++)
		if (t->slot[i].pid == pid)
			return (int)i;
	return -1;
}

static void comm_of(pid_t pid, char *buf, size_t len)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	if (read_small(path, buf, len) <= 0)
		snprintf(buf, len, "?");
	buf[strcspn(buf, "\n")] = '\0';
}

struct kill_one {
	pid_t pid;
	int pidfd;
	uint64_t missing;
	bool unknown; /* a forked child the table does not know */
};

static void add_kill(struct kill_one *k, size_t *n, pid_t pid, int pidfd, uint64_t missing,
		     bool unknown)
{
	for (size_t i = 0; i < *n; i++)
		if (k[i].pid == pid)
			return;
	if (*n < LP_GUARD_KILLS)
		k[(*n)++] = (struct kill_one){ pid, pidfd, missing, unknown };
}

/*
 * Kill every restored process whose memory is not complete: the slots not
 * complete, and the children of any known process that have uffd-registered
 * VMAs and are not known complete (forked children not identified yet, and
 * their own children); with only_unknown, those children only. Collected
 * first: a killed parent's children move away. One line per process; the
 * number killed.
 */
enum kill_mode { KILL_ALL, KILL_UNKNOWN, KILL_UNTAKEABLE };

/* Can a successor take this slot over? Only what it can re-learn from the images. */
static bool slot_takeable(const struct lp_guard_slot *s)
{
	return __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == SLOT_ACTIVE && s->pid > 0 &&
	       s->parent < 0 && s->takeable && s->uffd >= 0;
}

static size_t kill_incomplete(struct lp_guard_tab *t, const char *why, enum kill_mode mode)
{
	struct kill_one k[LP_GUARD_KILLS];
	pid_t kids[256], scan[LP_GUARD_KILLS + LP_GUARD_SLOTS];
	size_t nk = 0, ns = 0;
	uint32_t nr = __atomic_load_n(&t->nr, __ATOMIC_ACQUIRE);

	for (uint32_t i = 0; i < nr && i < LP_GUARD_SLOTS; i++) {
		struct lp_guard_slot *s = &t->slot[i];
		uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);

		if (s->pid > 0)
			scan[ns++] = s->pid;
		if (st != SLOT_ACTIVE || s->pid <= 0 || mode == KILL_UNKNOWN)
			continue;
		if (mode == KILL_ALL || !slot_takeable(s))
			add_kill(k, &nk, s->pid, s->pidfd, s->missing, false);
	}
	for (size_t i = 0; i < ns; i++) {
		size_t nc = children_of(scan[i], kids, sizeof(kids) / sizeof(kids[0]));

		for (size_t j = 0; j < nc; j++) {
			int si = slot_by_pid(t, kids[j]);

			if (si >= 0 || !has_uffd_vmas(kids[j]))
				continue;
			add_kill(k, &nk, kids[j], -1, 0, true);
			if (ns < sizeof(scan) / sizeof(scan[0]))
				scan[ns++] = kids[j];
		}
	}
	for (size_t i = 0; i < nk; i++) {
		char comm[64];
		int fd = k[i].pidfd >= 0 ? k[i].pidfd : pidfd_open(k[i].pid);

		k[i].pidfd = fd;
		comm_of(k[i].pid, comm, sizeof(comm));
		if (fd < 0 || syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0)) {
			if (errno != ESRCH)
				pr_perror("%s: cannot kill pid %d (%s)", why, k[i].pid, comm);
			continue;
		}
		if (k[i].unknown)
			pr_err("%s: killed pid %d (%s): a forked child whose memory was not complete\n",
			       why, k[i].pid, comm);
		else
			pr_err("%s: killed pid %d (%s): %llu pages never arrived\n", why, k[i].pid,
			       comm, (unsigned long long)k[i].missing);
	}
	/* They can no longer run (SIGKILL is pending); wait a little for them to be gone. */
	for (size_t i = 0; i < nk; i++) {
		struct pollfd pfd = { .fd = k[i].pidfd, .events = POLLIN };

		if (k[i].pidfd >= 0)
			poll(&pfd, 1, 2000);
	}
	return nk;
}

/*
 * The dead daemon's sockets and io_uring are still open in our table: close
 * them, so that the source sees its connections end and takes a new session.
 * Only the uffds (anon_inode:[userfaultfd]), pidfds and the log file stay.
 */
static void close_sockets(void)
{
	char buf[4096], path[64], link[64];
	long nread;
	int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return;
	while ((nread = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < nread;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			ssize_t n;
			int fd;

			off += d->d_reclen;
			fd = atoi(d->d_name);
			if (d->d_name[0] < '0' || d->d_name[0] > '9' || fd == dfd)
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = '\0';
			if (!strncmp(link, "socket:", 7) || strstr(link, "io_uring"))
				close(fd);
		}
	}
	close(dfd);
}

static int takeover_listen(struct lp_guard *g)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, ret;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(sa.sun_path, g->tk_path, sizeof(g->tk_path));
	unlink(g->tk_path);
	old = umask(0077);
	ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (ret || chmod(g->tk_path, 0600) || listen(fd, 4)) {
		ret = -errno;
		pr_perror("lazy-pages died: cannot listen on %s for a successor", g->tk_path);
		close(fd);
		return ret;
	}
	return fd;
}

static int poll_until(int fd, uint64_t deadline_us)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint64_t now = util_now_us();

	if (now >= deadline_us)
		return 0;
	return poll(&pfd, 1, (int)((deadline_us - now + 999) / 1000));
}

/*
 * Send the successor one record {magic, version, pid, image pid} with the
 * uffd per takeable process, then {magic, version, 0, count}; it answers 'K'
 * once it guards them itself. 0 on 'K', -errno otherwise (we keep waiting).
 */
static int hand_to(struct lp_guard *g, int fd, pid_t peer, uint64_t deadline_us)
{
	struct lp_guard_tab *t = g->tab;
	uint32_t count = 0, rec[4];
	char ack = 0;

	for (uint32_t i = 0; i < t->nr; i++) {
		struct lp_guard_slot *s = &t->slot[i];

		if (!slot_takeable(s))
			continue;
		rec[0] = LP_TAKEOVER_MAGIC;
		rec[1] = LP_TAKEOVER_VERSION;
		rec[2] = (uint32_t)s->pid;
		rec[3] = (uint32_t)s->image_pid;
		if (util_send_fd(fd, rec, sizeof(rec), s->uffd))
			return -errno;
		count++;
	}
	rec[0] = LP_TAKEOVER_MAGIC;
	rec[1] = LP_TAKEOVER_VERSION;
	rec[2] = 0;
	rec[3] = count;
	if (util_send_fd(fd, rec, sizeof(rec), -1))
		return -errno;
	if (poll_until(fd, MIN(deadline_us, util_now_us() + 10000000ULL)) <= 0 ||
	    recv(fd, &ack, 1, MSG_DONTWAIT) != 1 || ack != 'K') {
		pr_err("lazy-pages died: successor pid %d did not confirm the takeover\n", peer);
		return -EPROTO;
	}
	for (uint32_t i = 0; i < t->nr; i++)
		if (slot_takeable(&t->slot[i]))
			pr_err("lazy-pages died: pid %d (%llu pages missing) taken over by lazy-pages pid %d\n",
			       t->slot[i].pid, (unsigned long long)t->slot[i].missing, peer);
	return 0;
}

/*
 * The daemon died: processes a successor could not re-learn are killed now;
 * the others keep waiting on their faults while we wait (wait_s at most) on
 * DIR/lazy-takeover.sock for a restarted `relive lazy-pages` to take their
 * uffds. Nobody came: they are killed and named.
 */
static __attribute__((noreturn)) void wait_successor(struct lp_guard *g)
{
	uint64_t deadline = util_now_us() + (uint64_t)g->wait_s * 1000000ULL;
	bool any = false;
	int lfd = -1;

	close_sockets();
	kill_incomplete(g->tab, "lazy-pages died", KILL_UNTAKEABLE);
	for (uint32_t i = 0; i < g->tab->nr; i++)
		any |= slot_takeable(&g->tab->slot[i]);
	if (any && g->wait_s)
		lfd = takeover_listen(g);
	if (lfd >= 0)
		pr_err("lazy-pages died: its processes wait up to %u s for a new `relive lazy-pages` on the same images to take over (%s)\n",
		       g->wait_s, g->tk_path);
	while (lfd >= 0 && poll_until(lfd, deadline) > 0) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0)
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
		    (cred.uid != 0 && cred.uid != getuid())) {
			pr_err("lazy-pages died: refused a successor from pid %d uid %u (not root, not uid %u)\n",
			       cred.pid, cred.uid, getuid());
			close(fd);
			continue;
		}
		if (!hand_to(g, fd, cred.pid, deadline)) {
			close(fd);
			unlink(g->tk_path);
			_exit(0);
		}
		close(fd);
	}
	if (lfd >= 0) {
		close(lfd);
		unlink(g->tk_path);
	}
	_exit(kill_incomplete(g->tab, any && g->wait_s ?
			      "lazy-pages died and no successor took over" : "lazy-pages died",
			      KILL_ALL) ? 1 : 0);
}

static __attribute__((noreturn)) void guard_main(struct lp_guard *g)
{
	struct pollfd pfd[2] = { { .fd = g->self_pidfd, .events = POLLIN },
				 { .fd = g->efd, .events = POLLIN } };
	struct sigaction sa = { .sa_handler = SIG_IGN };

	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
			sigaction(sig, &sa, NULL);
	prctl(PR_SET_NAME, "relive-lpguard", 0, 0, 0);
	for (;;) {
		int n = poll(pfd, 2, -1);

		if (__atomic_load_n(&g->tab->state, __ATOMIC_ACQUIRE) == TAB_STOP)
			_exit(0);
		if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			break;
		if (n < 0 && errno != EINTR)
			usleep(100000);
	}
	/* the daemon is gone without saying so: its uffds live on in our table */
	wait_successor(g);
}

int lp_guard_start(struct lp_ctx *ctx)
{
	struct lp_guard *g = calloc(1, sizeof(*g));
	long pid;
	int err;

	if (!g)
		return -ENOMEM;
	g->efd = -1;
	g->wait_s = lp_takeover_wait_s(ctx->opts);
	if (lp_takeover_path(ctx->opts, g->tk_path, sizeof(g->tk_path)))
		g->wait_s = 0;
	g->tab = mmap(NULL, sizeof(*g->tab), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (g->tab == MAP_FAILED) {
		pr_perror("guard: cannot map its table");
		free(g);
		return -ENOMEM;
	}
	g->self_pidfd = pidfd_open(getpid());
	if (g->self_pidfd >= 0)
		g->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g->self_pidfd < 0 || g->efd < 0) {
		err = -errno;
		pr_perror("guard: cannot open a pidfd or an eventfd");
		goto fail;
	}
	/* fork-like (own memory, same stack copied) but one descriptor table */
	pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid < 0) {
		err = -errno;
		pr_perror("guard: cannot clone it");
		goto fail;
	}
	if (pid == 0)
		guard_main(g);
	g->pid = (pid_t)pid;
	ctx->guard = g;
	pr_info("guard %d holds our uffds should we die\n", g->pid);
	return 0;
fail:
	if (g->self_pidfd >= 0)
		close(g->self_pidfd);
	if (g->efd >= 0)
		close(g->efd);
	munmap(g->tab, sizeof(*g->tab));
	free(g);
	return err;
}

static int new_slot(struct lp_guard *g, struct lp_proc *p, pid_t pid, int parent)
{
	struct lp_guard_tab *t = g->tab;
	struct lp_guard_slot *s;
	uint32_t i = t->nr;

	if (i >= LP_GUARD_SLOTS) {
		pr_err("guard: more than %u processes: pid %d is not guarded\n", LP_GUARD_SLOTS, pid);
		return -ENOSPC;
	}
	s = &t->slot[i];
	s->pid = pid;
	s->image_pid = (int32_t)p->pid;
	s->pidfd = pid > 0 ? pidfd_open(pid) : -1;
	s->parent = parent;
	s->missing = p->mm.nr_missing + p->mm.nr_inflight;
	s->uffd = -1;
	s->takeable = 0;
	set_state(s, SLOT_ACTIVE);
	g->procs[i] = p;
	__atomic_store_n(&t->nr, i + 1, __ATOMIC_RELEASE);
	return (int)i;
}

static int slot_of(const struct lp_guard *g, const struct lp_proc *p)
{
	for (uint32_t i = 0; i < g->tab->nr; i++)
		if (g->procs[i] == p)
			return (int)i;
	return -1;
}

int lp_guard_add(struct lp_ctx *ctx, struct lp_proc *p, uint32_t pid)
{
	struct lp_guard *g = ctx->guard;
	int i;

	if (!g)
		return 0;
	i = new_slot(g, p, (pid_t)pid, -1);
	if (i < 0)
		return i;
	if (g->tab->slot[i].pidfd < 0) {
		pr_perror("guard: pidfd_open of pid %u", pid);
		return -ESRCH;
	}
	return 0;
}

void lp_guard_fork(struct lp_ctx *ctx, struct lp_proc *parent, struct lp_proc *child)
{
	if (ctx->guard)
		new_slot(ctx->guard, child, 0, slot_of(ctx->guard, parent));
}

/* A forked child's pid: the one child of its parent with uffd VMAs nobody claims yet. */
static void resolve(struct lp_guard *g, uint32_t i)
{
	struct lp_guard_tab *t = g->tab;
	struct lp_guard_slot *s = &t->slot[i];
	pid_t kids[256], found = 0;
	size_t nc, nr_cand = 0, unresolved = 0;

	if (s->parent < 0 || t->slot[s->parent].pid <= 0)
		return;
	for (uint32_t j = 0; j < t->nr; j++)
		if (t->slot[j].parent == s->parent && t->slot[j].pid == 0 &&
		    t->slot[j].state == SLOT_ACTIVE)
			unresolved++;
	nc = children_of(t->slot[s->parent].pid, kids, sizeof(kids) / sizeof(kids[0]));
	for (size_t k = 0; k < nc; k++) {
		if (slot_by_pid(t, kids[k]) >= 0 || !has_uffd_vmas(kids[k]))
			continue;
		found = kids[k];
		nr_cand++;
	}
	/* two forks at once cannot be told apart: both stay "not complete" */
	if (nr_cand != 1 || unresolved != 1)
		return;
	s->pidfd = pidfd_open(found);
	if (s->pidfd < 0)
		return;
	__atomic_store_n(&s->pid, found, __ATOMIC_RELEASE);
	pr_info("guard: the child forked by pid %d is pid %d\n", t->slot[s->parent].pid, found);
}

void lp_guard_sync(struct lp_ctx *ctx)
{
	struct lp_guard *g = ctx->guard;
	bool look = false;
	uint64_t now;

	if (!g)
		return;
	now = util_now_us();
	if (now >= g->next_resolve_us) {
		look = true;
		g->next_resolve_us = now + 20000;
	}
	for (uint32_t i = 0; i < g->tab->nr; i++) {
		struct lp_guard_slot *s = &g->tab->slot[i];
		struct lp_proc *p = g->procs[i];
		uint32_t st;

		if (s->state == SLOT_GONE || s->state == SLOT_COMPLETE)
			continue;
		if (p->gone || (!p->handed && p->pid))
			st = SLOT_GONE;
		else if (p->ready && lp_mm_done(&p->mm))
			st = SLOT_COMPLETE;
		else
			st = SLOT_ACTIVE;
		s->missing = p->mm.nr_missing + p->mm.nr_inflight;
		s->uffd = p->uffd;
		s->takeable = p->ready && !p->reshaped;
		if (st == SLOT_ACTIVE && s->pid == 0 && look)
			resolve(g, i);
		/* the daemon can now stop a forked child itself (lp_proc_drop) */
		if (s->pid > 0 && p->pidfd < 0 && s->pidfd >= 0)
			p->pidfd = fcntl(s->pidfd, F_DUPFD_CLOEXEC, 0);
		set_state(s, st);
	}
}

void lp_guard_abandon(struct lp_ctx *ctx)
{
	struct lp_guard *g = ctx->guard;
	size_t n = 0;

	if (!g)
		return;
	g->next_resolve_us = 0;
	lp_guard_sync(ctx);
	/* forked children the daemon cannot name: before their uffds close */
	for (uint32_t i = 0; i < g->tab->nr; i++)
		if (g->tab->slot[i].state == SLOT_ACTIVE && g->tab->slot[i].pid == 0)
			n++;
	if (n)
		kill_incomplete(g->tab, "lazy-pages gives up", KILL_UNKNOWN);
}

void lp_guard_stop(struct lp_ctx *ctx)
{
	struct lp_guard *g = ctx->guard;
	uint64_t one = 1;
	int status;

	if (!g)
		return;
	__atomic_store_n(&g->tab->state, TAB_STOP, __ATOMIC_RELEASE);
	if (write(g->efd, &one, sizeof(one)) != sizeof(one))
		pr_perror("guard %d: cannot wake it", g->pid);
	while (waitpid(g->pid, &status, 0) < 0 && errno == EINTR)
		;
	for (uint32_t i = 0; i < g->tab->nr; i++)
		if (g->tab->slot[i].pidfd >= 0)
			close(g->tab->slot[i].pidfd);
	close(g->efd);
	close(g->self_pidfd);
	munmap(g->tab, sizeof(*g->tab));
	free(g);
	ctx->guard = NULL;
}

int lp_takeover_path(const struct relive_opts *opts, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", opts->images_dir, LP_TAKEOVER_SOCK);

	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		pr_warn("%s/%s is too long a socket path: a restarted daemon cannot take over\n",
			opts->images_dir, LP_TAKEOVER_SOCK);
		return -ENAMETOOLONG;
	}
	return 0;
}

unsigned int lp_takeover_wait_s(const struct relive_opts *opts)
{
	return MIN(opts->lazy_timeout, LP_TAKEOVER_MAX_WAIT_S);
}
