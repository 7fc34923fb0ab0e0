/*
 * `relive dump`: freeze the process and its descendants (dump-tree.c),
 * collect each one's state through /proc, ptrace and the parasite, write the
 * image directory, and only then kill them (or let them run with
 * --leave-running). Any failure leaves every process cured and running, and
 * the inventory (written last) absent.
 *
 * With --lazy-pages the private anonymous pages are not written: before the
 * cure the parasite clones a keeper sharing the address space of each
 * process of the tree, the tree is killed as soon as the images are complete
 * (so the frozen window does not grow with its memory), and relive stays up
 * as the page server of every process, reading from its keeper, until the
 * client's DONE; the keepers die on every path. A root that is a pid
 * namespace's init cannot die first (the namespace, keepers included, would
 * die with it): its tree stays ptrace-stopped while the pages are served and
 * is killed, with the keepers, when serving ends, however it ends.
 */
#include "commands.h"
#include "dump.h"
#include "dump-pidns.h"
#include "dump-inet.h"
#include "page-server.h"

#include "fault.h"
#include "log.h"
#include "psite.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

static uint64_t realtime_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000000ULL + (uint64_t)tv.tv_usec;
}

static int write_single(struct dump_ctx *ctx, enum img_kind kind, const ProtobufCMessage *msg)
{
	struct img img;
	int r;

	r = img_open(&img, ctx->dirfd, kind, 0, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	r = img_write(&img, msg);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

static int write_inventory(struct dump_ctx *ctx, const uint8_t token[IMG_SESSION_TOKEN_LEN],
			   uint32_t root_pid)
{
	InventoryEntry ie = INVENTORY_ENTRY__INIT;
	struct utsname uts;
	char host[256];

	uname(&uts);
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown");
	ie.format_version = IMG_FORMAT_VERSION;
	ie.kernel_release = uts.release;
	ie.page_size = IMG_PAGE_SIZE;
	ie.flags = ctx->opts->leave_running ? INV_FLAG_LEAVE_RUNNING : 0;
	if (ctx->opts->lazy_pages)
		ie.flags |= INV_FLAG_LAZY;
	ie.session_token.data = (uint8_t *)token;
	ie.session_token.len = IMG_SESSION_TOKEN_LEN;
	ie.root_pid = root_pid;
	ie.has_dump_time_us = true;
	ie.dump_time_us = realtime_us();
	ie.hostname = host;
	return write_single(ctx, IMG_INVENTORY, &ie.base);
}

static int write_stats(struct dump_ctx *ctx, uint64_t t_end)
{
	StatsEntry se = STATS_ENTRY__INIT;
	DumpStatsEntry ds = DUMP_STATS_ENTRY__INIT;

	ds.freezing_time_us = ctx->t_frozen - ctx->t_start;
	ds.frozen_time_us = t_end - ctx->t_frozen;
	ds.memdump_time_us = ctx->memdump_us;
	ds.pages_written = ctx->pages_written;
	ds.has_pages_lazy = true;
	ds.pages_lazy = ctx->pages_lazy;
	ds.has_pages_zero = true;
	ds.pages_zero = ctx->pages_zero;
	ds.has_freeze_start_realtime_us = true;
	ds.freeze_start_realtime_us = ctx->freeze_realtime_us;
	se.dump = &ds;
	return write_single(ctx, IMG_STATS_DUMP, &se.base);
}

static int check_target(pid_t pid, struct proc_stat *st)
{
	char path[64];

	if (pid == getpid()) {
		pr_err("pid %d is relive itself: cannot dump the dumper\n", (int)pid);
		return -EINVAL;
	}
	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (access(path, F_OK)) {
		pr_err("pid %d: no such process\n", (int)pid);
		return -ESRCH;
	}
	if (proc_read_stat(pid, st))
		return -ESRCH;
	if (st->flags & PF_KTHREAD) {
		pr_err("pid %d (%s) is a kernel thread: cannot be dumped\n", (int)pid, st->comm);
		return -EINVAL;
	}
	if (st->state == 'Z') {
		pr_err("pid %d (%s) is a zombie: nothing to dump\n", (int)pid, st->comm);
		return -EINVAL;
	}
	return 0;
}

/* Scope of this version: any number of threads (the leader alive); children are dumped too. */
static int check_scope(struct dump_ctx *ctx)
{
	const pid_t *tids;
	bool leader = false;
	size_t nr;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	for (size_t i = 0; i < nr; i++)
		leader |= tids[i] == ctx->pid;
	if (!leader) {
		pr_err("pid %d: its main thread has exited (%zu threads left): not supported\n",
		       (int)ctx->pid, nr);
		return -ENOTSUP;
	}
	return dmp_check_pending(ctx);
}

static int open_images_dir(const char *dir)
{
	int fd;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		pr_perror("cannot create the images directory %s", dir);
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		pr_perror("cannot open the images directory %s", dir);
	return fd;
}

/* The keeper of a lazy dump: a process sharing the victim's memory. */
struct lazy_keeper {
	pid_t pid;
	int pidfd;
};

static int make_keeper(struct dump_ctx *ctx, struct lazy_keeper *k)
{
	int r = psite_keeper(ctx->ctl, &k->pid);

	if (k->pid > 0) {
		k->pidfd = (int)syscall(SYS_pidfd_open, k->pid, 0);
		if (k->pidfd < 0) {
			pr_perror("cannot open a pidfd for keeper %d", (int)k->pid);
			if (!r)
				r = -errno;
		}
	}
	return r;
}

/* Everything done while the parasite is inside; it is cured on every path. */
static int dump_infected(struct dump_ctx *ctx, struct lazy_keeper *k)
{
	int r, rc;

	r = psite_infect(ctx->frozen, ctx->pid, &ctx->ctl);
	if (r)
		return r;
	r = fault_at("dump-after-infect") ? -EIO : dmp_task(ctx);
	if (!r)
		r = dmp_mm_drain(ctx);
	/* Last, so the keeper sees the mm as dumped; it needs the parasite. */
	if (!r && ctx->opts->lazy_pages)
		r = make_keeper(ctx, k);
	if (!r && fault_at("dump-before-cure"))
		r = -EIO;
	rc = psite_cure(ctx->ctl);
	ctx->ctl = NULL;
	if (rc && !r) {
		pr_err("pid %d: the parasite could not be removed cleanly\n", (int)ctx->pid);
		r = rc;
	}
	return r;
}

/* Idle limit of a stalled connection: RELIVE_PS_IDLE_TIMEOUT_MS (tests), else the default. */
static unsigned int idle_timeout_ms(void)
{
	const char *e = getenv("RELIVE_PS_IDLE_TIMEOUT_MS");
	uint64_t v;

	if (e && !util_parse_u64(e, 10, 3600000, &v))
		return (unsigned int)v;
	if (e)
		pr_warn("ignoring RELIVE_PS_IDLE_TIMEOUT_MS=%s (10..3600000)\n", e);
	return PS_IDLE_TIMEOUT_MS;
}

/*
 * A dying task writes into its address space, which the keeper shares:
 * the kernel zeroes *clear_child_tid (glibc's tid in the TCB) and marks the
 * robust futexes it holds. Unregister both in the frozen victim before the
 * kill, so the served memory is exactly the dumped one.
 */
static int disarm_thread(struct dump_ctx *ctx, pid_t tid)
{
	long ret;
	int r;

	r = psite_syscall(ctx->frozen, tid, &ret, __NR_set_robust_list, 0, 24, 0, 0, 0, 0);
	if (!r && ret) {
		pr_err("tid %d: set_robust_list(NULL) failed: %s\n", (int)tid, strerror((int)-ret));
		r = (int)ret;
	}
	if (!r)
		r = psite_syscall(ctx->frozen, tid, &ret, __NR_set_tid_address, 0, 0, 0, 0, 0, 0);
	if (r)
		pr_err("pid %d: cannot unregister the exit-time writes of thread %d before the "
		       "kill\n",
		       (int)ctx->pid, (int)tid);
	return r;
}

/* Put back what disarm_thread() took: the victim runs on after a failure. */
static void rearm_thread(struct dump_ctx *ctx, pid_t tid, uint64_t head, size_t len,
			 uint64_t clear_tid)
{
	long ret;

	if (psite_syscall(ctx->frozen, tid, &ret, __NR_set_robust_list, (long)head, (long)len, 0,
			  0, 0, 0) ||
	    ret ||
	    psite_syscall(ctx->frozen, tid, &ret, __NR_set_tid_address, (long)clear_tid, 0, 0, 0,
			  0, 0))
		pr_warn("tid %d: its robust list or clear_child_tid may be lost\n", (int)tid);
}

/* What disarm_exit_writes() took from each thread, to put it back. */
struct exit_writes {
	uint64_t *heads;
	size_t *lens;
	size_t nr;
};

static void rearm_exit_writes(struct dump_ctx *ctx, const struct exit_writes *w, size_t n)
{
	const pid_t *tids;
	size_t nr;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	for (size_t i = MIN(n, nr); i-- > 0;)
		rearm_thread(ctx, tids[i], w->heads[i], w->lens[i],
			     ctx->thread_states[i].clear_tid);
}

/* Every thread writes at its exit: disarm them all, or none. W is filled (free it). */
static int disarm_exit_writes(struct dump_ctx *ctx, struct exit_writes *w)
{
	const pid_t *tids;
	size_t nr, i;
	int r = 0;

	tids = psite_frozen_tids(ctx->frozen, &nr);
	w->heads = calloc(nr + 1, sizeof(*w->heads));
	w->lens = calloc(nr + 1, sizeof(*w->lens));
	w->nr = nr;
	if (!w->heads || !w->lens)
		return -ENOMEM;
	for (i = 0; i < nr; i++) {
		void *head = NULL;

		if (syscall(SYS_get_robust_list, tids[i], &head, &w->lens[i])) {
			r = -errno;
			pr_perror("tid %d: get_robust_list", (int)tids[i]);
			return r;
		}
		w->heads[i] = (uint64_t)(uintptr_t)head;
	}
	for (i = 0; !r && i < nr; i++)
		r = disarm_thread(ctx, tids[i]);
	if (r)
		rearm_exit_writes(ctx, w, i);
	return r;
}

/*
 * Every process of the tree writes at its exit (a zombie has no threads):
 * disarm them all, or put back those already done.
 */
static int disarm_tree(struct dump_tree *tree)
{
	_cleanup_free_ struct exit_writes *w = calloc(tree->nr, sizeof(*w));
	size_t i;
	int r = w ? 0 : -ENOMEM;

	for (i = 0; !r && i < tree->nr; i++)
		if (!tree->procs[i].zombie)
			r = disarm_exit_writes(&tree->procs[i], &w[i]);
	if (r && i > 0) {
		/* Process i - 1 failed and put its own back. */
		for (size_t k = i - 1; k-- > 0;)
			if (!tree->procs[k].zombie)
				rearm_exit_writes(&tree->procs[k], &w[k], w[k].nr);
	}
	for (size_t k = 0; w && k < tree->nr; k++) {
		free(w[k].heads);
		free(w[k].lens);
	}
	return r;
}

/*
 * Kill keeper K of frozen victim F, whose root is ROOT, and reap it there;
 * in a namespace init's tree the victim knows it by its namespace pid.
 */
static int kill_keeper_ns(struct psite_frozen *f, pid_t root, const struct lazy_keeper *k)
{
	uint32_t vpid;
	long ret;
	int r;

	if (!f || k->pid <= 0 || dmp_pidns_image_pid(root, k->pid, &vpid) ||
	    vpid == (uint32_t)k->pid || !vpid)
		return psite_keeper_kill(f, k->pid, k->pidfd);
	r = psite_keeper_kill(NULL, k->pid, k->pidfd);
	if (!r)
		r = psite_syscall(f, psite_frozen_pid(f), &ret, __NR_wait4, (long)vpid, 0, __WALL,
				  0, 0, 0);
	if (!r && ret != (long)vpid) {
		pr_warn("pid %d: reaping keeper %d (pid %u in its namespace): %s\n",
			(int)psite_frozen_pid(f), (int)k->pid, vpid,
			ret < 0 ? strerror((int)-ret) : "another child");
		r = ret < 0 ? (int)ret : -ECHILD;
	}
	return r;
}

/* Kill every keeper (reaped in its frozen victim when that still exists). */
static int kill_keepers(struct dump_tree *tree, struct lazy_keeper *k)
{
	int r = 0;

	for (size_t i = 0; k && i < tree->nr; i++) {
		if (kill_keeper_ns(tree->procs[i].frozen, tree->procs[0].pid, &k[i]) && !r)
			r = -ESRCH;
		if (k[i].pidfd >= 0)
			close(k[i].pidfd);
		k[i] = (struct lazy_keeper){ .pid = 0, .pidfd = -1 };
	}
	return r;
}

/*
 * The images are complete and the tree frozen: kill it (the keepers hold
 * its memory), or when PM maps a namespace init's pids keep it stopped for
 * the caller to kill after serving, record the frozen window, tell
 * --status-fd, and serve every process of the tree by its image pid.
 */
static int lazy_serve(struct dump_tree *tree, int lfd, const uint8_t *token,
		      const struct lazy_keeper *k, const struct dmp_pidmap *pm)
{
	struct dump_ctx *ctx = &tree->procs[0];
	const struct relive_opts *opts = ctx->opts;
	struct ps_server_cfg cfg = { 0 };
	_cleanup_free_ struct ps_proc *procs = calloc(tree->nr, sizeof(*procs));
	uint64_t t_killed;
	bool hold = pm->nr != 0;
	int r = procs ? 0 : -ENOMEM;

	/* Children first: a killed parent leaves none of them running meanwhile. */
	for (size_t i = tree->nr; !hold && i-- > 0;) {
		int rk = psite_unfreeze(tree->procs[i].frozen, true);

		tree->procs[i].frozen = NULL;
		if (rk && !r)
			r = rk;
	}
	if (hold && !r)
		r = dmp_pidns_hold(tree);
	t_killed = util_now_us();
	if (r) {
		close(lfd);
		return r;
	}
	/* The stats written before the kill lack its last steps: exact now. */
	if (write_stats(ctx, t_killed))
		pr_warn("stats-dump.img keeps the frozen time measured before the kill\n");
	pr_info("pid %d %s after %llu us frozen (%zu processes); %llu pages written, "
		"%llu lazy\n",
		(int)ctx->pid,
		hold ? "kept stopped until the pages are served (a pid namespace's init)"
		     : "killed",
		(unsigned long long)(t_killed - ctx->t_frozen), tree->nr,
		(unsigned long long)ctx->pages_written, (unsigned long long)ctx->pages_lazy);
	if (opts->status_fd >= 0) {
		char zero = 0;

		if (write(opts->status_fd, &zero, 1) != 1)
			pr_perror("cannot write to --status-fd %d", opts->status_fd);
		close(opts->status_fd);
	}
	for (size_t i = 0; i < tree->nr; i++) {
		const struct dump_ctx *p = &tree->procs[i];
		/* The client asks by the pid in the images: the namespace's one. */
		pid_t img_pid = hold ? (pid_t)dmp_pidns_ns(pm, (uint32_t)p->pid) : p->pid;

		if (p->zombie)
			continue;
		procs[cfg.nr_procs++] = (struct ps_proc){ .pid = img_pid,
							  .keeper = k[i].pid,
							  .keeper_pidfd = k[i].pidfd,
							  .runs = p->runs.runs,
							  .nr_runs = p->runs.nr };
	}
	cfg.procs = procs;
	memcpy(cfg.token, token, PS_TOKEN_LEN);
	cfg.lazy_timeout_s = opts->lazy_timeout;
	cfg.idle_timeout_ms = idle_timeout_ms();
	r = ps_serve(lfd, &cfg);
	if (r)
		pr_err("page server of pid %d failed: %s; its lazy pages are lost\n", (int)ctx->pid,
		       strerror(-r));
	else
		pr_info("page server of pid %d: every page delivered\n", (int)ctx->pid);
	return r;
}

/*
 * Everything about process IDX of the tree, frozen: FILES (shared by the
 * tree: one entry per open file description) is lent to it meanwhile.
 */
static int dump_process(struct dump_tree *t, size_t idx, struct dump_files *files,
			struct lazy_keeper *k)
{
	struct dump_ctx *ctx = &t->procs[idx];
	int r;

	if (ctx->zombie)
		return 0;
	ctx->files = *files;
	r = check_scope(ctx);
	if (!r)
		r = proc_read_stat(ctx->pid, &ctx->stat);
	/* Before the parasite adds its control socket to the fd table. */
	if (!r)
		r = dmp_files(ctx);
	/* Its scratch page is gone before the memory is collected. */
	if (!r)
		r = dmp_posix_timers(ctx);
	if (!r)
		r = dmp_mm_collect(ctx);
	if (!r)
		r = dump_infected(ctx, k);
	if (!r)
		r = dmp_cores(ctx);
	*files = ctx->files;
	memset(&ctx->files, 0, sizeof(ctx->files));
	if (r && idx)
		pr_err("dump of pid %d (child of %d in the tree) failed\n", (int)ctx->pid,
		       (int)ctx->stat.ppid);
	return r;
}

int cmd_dump(const struct relive_opts *opts)
{
	struct dump_tree tree = { 0 };
	struct dump_files files = { 0 };
	struct dump_ctx *ctx;
	struct proc_stat st;
	uint8_t token[IMG_SESSION_TOKEN_LEN];
	_cleanup_free_ struct lazy_keeper *keepers = NULL;
	struct dmp_pidmap pidmap = { 0 };
	uint64_t t_start, freeze_rt;
	pid_t root = opts->tree;
	int lfd = -1, dirfd;
	uint64_t t_end;
	int r;

	_Static_assert(IMG_SESSION_TOKEN_LEN == PS_TOKEN_LEN, "session token size");
	if (opts->lazy_pages && opts->leave_running) {
		pr_err("--lazy-pages and --leave-running exclude each other: a lazy dump kills "
		       "the process and serves its memory\n");
		return 2;
	}
	if (opts->lazy_pages && opts->status_fd >= 0 && fcntl(opts->status_fd, F_GETFD) < 0) {
		pr_perror("--status-fd %d is not an open descriptor", opts->status_fd);
		return 2;
	}
	if (getrandom(token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		pr_perror("cannot get random bytes for the session token");
		return 1;
	}
	r = check_target(root, &st);
	if (r)
		return 1;
	/* Before the freeze: a busy port must not cost the process anything. */
	if (opts->lazy_pages) {
		lfd = ps_listen(opts->address, opts->port);
		if (lfd < 0)
			return 1;
	}
	dirfd = open_images_dir(opts->images_dir);
	if (dirfd < 0) {
		if (lfd >= 0)
			close(lfd);
		return 1;
	}

	t_start = util_now_us();
	freeze_rt = realtime_us();
	r = dmp_tree_freeze(&tree, opts, dirfd, root);
	if (!r)
		r = dmp_pidns_map(&tree, &pidmap);
	if (!r && fault_at("dump-after-freeze")) {
		r = -EIO;
		pr_err("dump of pid %d failed; it keeps running\n", (int)root);
	}
	if (!r && opts->lazy_pages) {
		keepers = calloc(tree.nr, sizeof(*keepers));
		if (!keepers)
			r = -ENOMEM;
		for (size_t i = 0; keepers && i < tree.nr; i++)
			keepers[i] = (struct lazy_keeper){ .pid = 0, .pidfd = -1 };
	}
	if (r) {
		dmp_tree_unfreeze(&tree, false);
		dmp_tree_fini(&tree);
		dmp_pidns_fini(&pidmap);
		close(dirfd);
		if (lfd >= 0)
			close(lfd);
		return 1;
	}
	ctx = &tree.procs[0];
	ctx->t_start = t_start;
	ctx->freeze_realtime_us = freeze_rt;
	ctx->t_frozen = util_now_us();
	pr_info("pid %d frozen in %llu us\n", (int)ctx->pid,
		(unsigned long long)(ctx->t_frozen - ctx->t_start));

	for (size_t i = 0; !r && i < tree.nr; i++)
		r = dump_process(&tree, i, &files, keepers ? &keepers[i] : NULL);
	for (size_t i = 1; i < tree.nr; i++) {
		ctx->pages_written += tree.procs[i].pages_written;
		ctx->pages_lazy += tree.procs[i].pages_lazy;
		ctx->pages_zero += tree.procs[i].pages_zero;
		ctx->memdump_us += tree.procs[i].memdump_us;
	}
	ctx->files = files;
	if (!r)
		r = dmp_files_write(ctx);
	if (!r)
		r = dmp_tree_write_pstree(&tree);
	/* A namespace init as the root: the images get the namespace's pids. */
	if (!r && pidmap.nr)
		r = dmp_pidns_rewrite(&tree, &pidmap);
	t_end = util_now_us();
	if (!r)
		r = write_stats(ctx, t_end);
	/* The inventory marks a complete dump: written last. */
	if (!r && fault_at("dump-before-inventory"))
		r = -EIO;
	if (!r)
		r = write_inventory(ctx, token,
				    pidmap.nr ? dmp_pidns_ns(&pidmap, (uint32_t)ctx->pid)
					      : (uint32_t)ctx->pid);
	if (!r && fsync(dirfd)) {
		r = -errno;
		pr_perror("cannot sync the images directory %s", opts->images_dir);
	}

	if (r) {
		pr_err("dump of pid %d failed; it keeps running\n", (int)ctx->pid);
		kill_keepers(&tree, keepers);
		dmp_inet_release(false);
		dmp_tree_unfreeze(&tree, false);
		if (lfd >= 0)
			close(lfd);
	} else if (opts->lazy_pages && disarm_tree(&tree)) {
		r = -EIO;
		unlinkat(dirfd, "inventory.img", 0);
		pr_err("dump of pid %d failed; it keeps running\n", (int)ctx->pid);
		kill_keepers(&tree, keepers);
		dmp_inet_release(false);
		dmp_tree_unfreeze(&tree, false);
		close(lfd);
	} else if (opts->lazy_pages) {
		dmp_inet_release(true);
		r = lazy_serve(&tree, lfd, token, keepers, &pidmap);
		if (kill_keepers(&tree, keepers) && !r)
			r = -ESRCH;
		/* A namespace init kept stopped: it dies, and its namespace, whatever the result. */
		if (pidmap.nr)
			dmp_tree_unfreeze(&tree, true);
	} else {
		dmp_inet_release(!opts->leave_running);
		dmp_tree_unfreeze(&tree, !opts->leave_running);
		pr_info("dump of pid %d complete (%zu processes): %llu pages, frozen %llu us\n",
			(int)ctx->pid, tree.nr, (unsigned long long)ctx->pages_written,
			(unsigned long long)(t_end - ctx->t_frozen));
	}
	dmp_pidns_fini(&pidmap);
	dmp_files_fini(&ctx->files);
	dmp_tree_fini(&tree);
	close(dirfd);
	return r ? 1 : 0;
}
