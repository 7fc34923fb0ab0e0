/*
 * A tree dumped from inside a pid namespace, its root being that
 * namespace's init: the processes saw themselves with their namespace-local
 * PIDs (glibc keeps its tid in memory, children know their parent's pid), so
 * the images must carry those, not the host's. The dump works with host
 * PIDs throughout (ptrace, /proc); once every image is written, the map
 * host -> namespace pid (NSpid of every thread) renames the per-process
 * images and rewrites the PIDs inside pstree, core and task entries, the
 * pagemap head, the target thread of SIGEV_THREAD_ID POSIX timers (read in
 * the host's /proc/PID/timers) and the owner of file locks (file-locks.img).
 * The si_pid of queued signals is left alone: the kernel stores it as the
 * receiver's namespace sees the sender (0 for a sender outside it), and
 * PTRACE_PEEKSIGINFO gives it back unchanged. `restore --pidns` then makes
 * the root pid 1 of a new namespace again (restorer/rst-pidns.c). A root
 * that is in another pid namespace but not its init is dumped with host
 * PIDs, as before. A lazy dump of such a tree cannot kill it before serving
 * (the namespace, the keepers included, would die with its init): it stays
 * frozen until the caller kills it (dmp_pidns_hold).
 */
#include "dump-pidns.h"

#include "log.h"
#include "psite.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <unistd.h>

/* The NSpid line of /proc/PID/task/TID/status: its last value and how many levels. */
static int read_nspid(pid_t pid, pid_t tid, uint32_t *ret_last, size_t *ret_levels)
{
	_cleanup_free_ char *buf = NULL;
	char path[80], *line, *p, *end;
	size_t n = 0;
	unsigned long v = 0;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)tid);
	r = util_read_file(AT_FDCWD, path, &buf, NULL);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	line = strstr(buf, "\nNSpid:");
	if (!line) {
		pr_err("%s has no NSpid line\n", path);
		return -ENOTSUP;
	}
	for (p = line + 7;; p = end) {
		unsigned long x = strtoul(p, &end, 10);

		if (end == p)
			break;
		v = x;
		n++;
	}
	if (!n) {
		pr_err("%s: cannot parse its NSpid line\n", path);
		return -EINVAL;
	}
	*ret_last = (uint32_t)v;
	*ret_levels = n;
	return 0;
}

static int map_add(struct dmp_pidmap *m, uint32_t host, uint32_t ns)
{
	uint32_t *h = realloc(m->host, (m->nr + 1) * sizeof(*h)), *n;

	if (!h)
		return -ENOMEM;
	m->host = h;
	n = realloc(m->ns, (m->nr + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	m->ns = n;
	m->host[m->nr] = host;
	m->ns[m->nr++] = ns;
	return 0;
}

uint32_t dmp_pidns_ns(const struct dmp_pidmap *m, uint32_t host)
{
	for (size_t i = 0; i < m->nr; i++)
		if (m->host[i] == host)
			return m->ns[i];
	return 0;
}

void dmp_pidns_fini(struct dmp_pidmap *m)
{
	free(m->host);
	free(m->ns);
	memset(m, 0, sizeof(*m));
}

/* The threads of process C (a zombie has only its pid). */
static const pid_t *proc_tids(const struct dump_ctx *c, size_t *ret_nr)
{
	if (c->zombie) {
		*ret_nr = 1;
		return &c->pid;
	}
	return psite_frozen_tids(c->frozen, ret_nr);
}

int dmp_pidns_map(struct dump_tree *t, struct dmp_pidmap *ret)
{
	struct dmp_pidmap m = { 0 };
	uint32_t self_last, root_last;
	size_t self_levels, root_levels;
	pid_t root = t->procs[0].pid;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = read_nspid(getpid(), getpid(), &self_last, &self_levels);
	if (!r)
		r = read_nspid(root, root, &root_last, &root_levels);
	if (r)
		return r;
	if (root_levels == self_levels)
		return 0;
	if (root_last != 1) {
		pr_info("pid %d is pid %u of a pid namespace, not its init: dumped with host pids\n",
			(int)root, root_last);
		return 0;
	}
	for (size_t i = 0; !r && i < t->nr; i++) {
		const struct dump_ctx *c = &t->procs[i];
		const pid_t *tids;
		size_t nr;

		tids = proc_tids(c, &nr);
		for (size_t k = 0; !r && k < nr; k++) {
			uint32_t last;
			size_t levels;

			r = read_nspid(c->pid, tids[k], &last, &levels);
			if (!r && levels != root_levels) {
				pr_err("tid %d is in another pid namespace than its root %d: "
				       "not supported\n",
				       (int)tids[k], (int)root);
				r = -ENOTSUP;
			}
			if (!r)
				r = map_add(&m, (uint32_t)tids[k], last);
		}
	}
	if (r) {
		dmp_pidns_fini(&m);
		return r;
	}
	pr_info("pid %d is the init of a pid namespace: the images get its %zu namespace pids\n",
		(int)root, m.nr);
	*ret = m;
	return 0;
}

/* Move every per-pid image of the tree aside, so new names never meet old ones. */
static const enum img_kind per_pid[] = { IMG_CORE, IMG_TASK, IMG_MM, IMG_PAGEMAP, IMG_PAGES,
					 IMG_FDINFO };

static void aside_name(enum img_kind kind, uint32_t id, char *buf, size_t len)
{
	char name[64];

	img_file_name(kind, id, name, sizeof(name));
	snprintf(buf, len, "pidns-%s", name);
}

/* Every message of IMG (opened for reading, closed here) into *RET_MSGS. */
static int read_msgs(struct img *img, ProtobufCMessage ***ret_msgs, size_t *ret_nr)
{
	ProtobufCMessage **msgs = NULL, *msg;
	size_t nr = 0;
	int r;

	while ((r = img_read(img, &msg)) > 0) {
		ProtobufCMessage **n = realloc(msgs, (nr + 1) * sizeof(*n));

		if (!n) {
			img_msg_free(msg);
			r = -ENOMEM;
			break;
		}
		msgs = n;
		msgs[nr++] = msg;
	}
	if (r < 0)
		pr_err("%s\n", img->err);
	img_close(img);
	*ret_msgs = msgs;
	*ret_nr = nr;
	return r < 0 ? r : 0;
}

/* Write MSGS as image KIND/ID, then free them. */
static int write_msgs(int dirfd, enum img_kind kind, uint32_t id, ProtobufCMessage **msgs,
		      size_t nr, int r)
{
	struct img img;

	if (!r) {
		r = img_open(&img, dirfd, kind, id, IMG_WRITE);
		for (size_t i = 0; !r && i < nr; i++)
			r = img_write(&img, msgs[i]);
		if (img_close(&img) && !r)
			r = -EIO;
		if (r)
			pr_err("%s\n", img.err);
	}
	for (size_t i = 0; i < nr; i++)
		img_msg_free(msgs[i]);
	free(msgs);
	return r;
}

/* The process's pid, and the thread a SIGEV_THREAD_ID timer signals (a thread of it). */
static void fix_task(TaskEntry *te, const struct dmp_pidmap *m)
{
	te->pid = dmp_pidns_ns(m, te->pid);
	for (size_t k = 0; k < te->n_posix_timers; k++) {
		PosixTimerEntry *pt = te->posix_timers[k];

		if (pt->has_notify_tid)
			pt->notify_tid = (int32_t)dmp_pidns_ns(m, (uint32_t)pt->notify_tid);
	}
}

/* Read every message of the image at OLD (a name in DIRFD), fix them, write KIND/ID. */
static int rewrite(int dirfd, const char *old, enum img_kind kind, uint32_t id,
		   const struct dmp_pidmap *m)
{
	ProtobufCMessage **msgs = NULL;
	size_t nr = 0;
	char path[128];
	struct img img;
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, old);
	r = img_open_path(&img, path);
	if (r)
		pr_err("%s\n", img.err);
	else
		r = read_msgs(&img, &msgs, &nr);
	for (size_t i = 0; !r && i < nr; i++) {
		if (kind == IMG_CORE)
			((CoreEntry *)msgs[i])->tid = dmp_pidns_ns(m, ((CoreEntry *)msgs[i])->tid);
		else if (kind == IMG_TASK)
			fix_task((TaskEntry *)msgs[i], m);
		else if (kind == IMG_PAGEMAP && i == 0)
			((PagemapHead *)msgs[i])->pages_id = id;
	}
	r = write_msgs(dirfd, kind, id, msgs, nr, r);
	if (!r && unlinkat(dirfd, old, 0)) {
		r = -errno;
		pr_perror("cannot remove %s", old);
	}
	return r;
}

/* One per-pid image of host id HOST, moved aside: its final form under the namespace id. */
static int finish_one(int dirfd, enum img_kind kind, uint32_t host, const struct dmp_pidmap *m)
{
	char old[96], name[64];
	uint32_t id = dmp_pidns_ns(m, host);

	aside_name(kind, host, old, sizeof(old));
	if (faccessat(dirfd, old, F_OK, 0))
		return 0;
	if (kind != IMG_PAGES)
		return rewrite(dirfd, old, kind, id, m);
	img_file_name(kind, id, name, sizeof(name));
	if (renameat(dirfd, old, dirfd, name)) {
		pr_perror("cannot rename %s to %s", old, name);
		return -errno;
	}
	return 0;
}

static void fix_pstree(PstreeEntry *pe, const struct dmp_pidmap *m)
{
	/* The root's parent, a group or a session outside the namespace: 0 there. */
	pe->pid = dmp_pidns_ns(m, pe->pid);
	pe->ppid = dmp_pidns_ns(m, pe->ppid);
	pe->pgid = dmp_pidns_ns(m, pe->pgid);
	pe->sid = dmp_pidns_ns(m, pe->sid);
	for (size_t k = 0; k < pe->n_threads; k++)
		pe->threads[k] = dmp_pidns_ns(m, pe->threads[k]);
}

/* A one-per-dump image (pstree.img, file-locks.img): its pids, rewritten in place. */
static int fix_global(int dirfd, enum img_kind kind, const struct dmp_pidmap *m)
{
	ProtobufCMessage **msgs = NULL;
	size_t nr = 0;
	struct img img;
	int r;

	r = img_open(&img, dirfd, kind, 0, IMG_READ);
	if (r)
		pr_err("%s\n", img.err);
	else
		r = read_msgs(&img, &msgs, &nr);
	for (size_t i = 0; !r && i < nr; i++) {
		if (kind == IMG_PSTREE)
			fix_pstree((PstreeEntry *)msgs[i], m);
		else if (kind == IMG_FILE_LOCKS) /* POSIX locks are the process's own */
			((FileLockEntry *)msgs[i])->pid =
				dmp_pidns_ns(m, ((FileLockEntry *)msgs[i])->pid);
	}
	return write_msgs(dirfd, kind, 0, msgs, nr, r);
}

int dmp_pidns_rewrite(struct dump_tree *t, const struct dmp_pidmap *m)
{
	int dirfd = t->procs[0].dirfd, r = 0;

	/* Aside first: a namespace pid may be the host pid of another process. */
	for (size_t i = 0; !r && i < m->nr; i++) {
		for (size_t k = 0; !r && k < ARRAY_SIZE(per_pid); k++) {
			char old[64], tmp[96];

			img_file_name(per_pid[k], m->host[i], old, sizeof(old));
			aside_name(per_pid[k], m->host[i], tmp, sizeof(tmp));
			if (renameat(dirfd, old, dirfd, tmp) && errno != ENOENT) {
				r = -errno;
				pr_perror("cannot rename %s to %s", old, tmp);
			}
		}
	}
	for (size_t i = 0; !r && i < m->nr; i++)
		for (size_t k = 0; !r && k < ARRAY_SIZE(per_pid); k++)
			r = finish_one(dirfd, per_pid[k], m->host[i], m);
	if (!r)
		r = fix_global(dirfd, IMG_PSTREE, m);
	if (!r)
		r = fix_global(dirfd, IMG_FILE_LOCKS, m);
	return r;
}

int dmp_pidns_image_pid(pid_t root, pid_t host, uint32_t *ret)
{
	uint32_t self_last, root_last, last;
	size_t self_levels, root_levels, levels;
	int r;

	*ret = (uint32_t)host;
	r = read_nspid(getpid(), getpid(), &self_last, &self_levels);
	if (!r)
		r = read_nspid(root, root, &root_last, &root_levels);
	if (r || root_levels == self_levels || root_last != 1)
		return r;
	r = read_nspid(host, host, &last, &levels);
	if (!r)
		*ret = levels == root_levels ? last : 0;
	return r;
}

/*
 * Every thread of the tree is in a ptrace-stop (PTRACE_INTERRUPT), which
 * neither SIGCONT nor anyone but its tracer ends, unlike a SIGSTOP or a
 * cgroup freezer others can undo; only a tracer that dies would let them run
 * on (the kernel detaches its tracees): PTRACE_O_EXITKILL turns that into
 * their death, with the namespace. TRACESYSGOOD is what psite_freeze set.
 */
int dmp_pidns_hold(struct dump_tree *t)
{
	const long opts = PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL;

	for (size_t i = 0; i < t->nr; i++) {
		const pid_t *tids;
		size_t nr;

		if (!t->procs[i].frozen)
			continue;
		tids = psite_frozen_tids(t->procs[i].frozen, &nr);
		for (size_t k = 0; k < nr; k++) {
			if (ptrace(PTRACE_SETOPTIONS, tids[k], NULL, (void *)opts)) {
				int r = -errno;

				pr_perror("pid %d: cannot set PTRACE_O_EXITKILL on thread %d",
					  (int)t->procs[i].pid, (int)tids[k]);
				return r;
			}
		}
	}
	return 0;
}
