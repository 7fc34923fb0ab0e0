/*
 * `relive dump`: freeze the process, collect its state through /proc, ptrace
 * and the parasite, write the image directory, and only then kill it (or let
 * it run with --leave-running). Any failure leaves the victim cured and
 * running, and the inventory (written last) absent.
 */
#include "commands.h"
#include "dump.h"

#include "log.h"
#include "psite.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
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

static int write_pstree(struct dump_ctx *ctx)
{
	PstreeEntry pe = PSTREE_ENTRY__INIT;
	uint32_t threads[1];

	pe.pid = (uint32_t)ctx->pid;
	pe.ppid = (uint32_t)ctx->stat.ppid;
	pe.pgid = (uint32_t)ctx->stat.pgid;
	pe.sid = (uint32_t)ctx->stat.sid;
	threads[0] = (uint32_t)ctx->pid;
	pe.n_threads = 1;
	pe.threads = threads;
	return write_single(ctx, IMG_PSTREE, &pe.base);
}

static int write_inventory(struct dump_ctx *ctx)
{
	InventoryEntry ie = INVENTORY_ENTRY__INIT;
	uint8_t token[IMG_SESSION_TOKEN_LEN];
	struct utsname uts;
	char host[256];

	if (getrandom(token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		pr_perror("cannot get random bytes for the session token");
		return -EIO;
	}
	uname(&uts);
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown");
	ie.format_version = IMG_FORMAT_VERSION;
	ie.kernel_release = uts.release;
	ie.page_size = IMG_PAGE_SIZE;
	ie.flags = ctx->opts->leave_running ? INV_FLAG_LEAVE_RUNNING : 0;
	ie.session_token.data = token;
	ie.session_token.len = sizeof(token);
	ie.root_pid = (uint32_t)ctx->pid;
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

/* Scope of this version: one thread, no children. */
static int check_scope(struct dump_ctx *ctx)
{
	_cleanup_free_ char *children = NULL;
	char path[80];
	size_t nr;

	psite_frozen_tids(ctx->frozen, &nr);
	if (nr != 1) {
		pr_err("pid %d has %zu threads: multi-threaded processes are not supported yet\n",
		       (int)ctx->pid, nr);
		return -ENOTSUP;
	}
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)ctx->pid, (int)ctx->pid);
	if (util_read_file(AT_FDCWD, path, &children, NULL) == 0 && children[0]) {
		pr_err("pid %d has children (%s): process trees are not supported yet\n",
		       (int)ctx->pid, children);
		return -ENOTSUP;
	}
	return 0;
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

/* Everything done while the parasite is inside; it is cured on every path. */
static int dump_infected(struct dump_ctx *ctx)
{
	int r, rc;

	r = psite_infect(ctx->frozen, ctx->pid, &ctx->ctl);
	if (r)
		return r;
	r = dmp_task(ctx);
	if (!r)
		r = dmp_mm_drain(ctx);
	rc = psite_cure(ctx->ctl);
	ctx->ctl = NULL;
	if (rc && !r) {
		pr_err("pid %d: the parasite could not be removed cleanly\n", (int)ctx->pid);
		r = rc;
	}
	return r;
}

int cmd_dump(const struct relive_opts *opts)
{
	struct dump_ctx ctx = { .opts = opts, .dirfd = -1, .pid = opts->tree };
	uint64_t t_end;
	int r;

	if (opts->lazy_pages) {
		pr_err("dump --lazy-pages is not available in this build yet\n");
		return 1;
	}
	r = check_target(ctx.pid, &ctx.stat);
	if (r)
		return 1;
	ctx.dirfd = open_images_dir(opts->images_dir);
	if (ctx.dirfd < 0)
		return 1;

	ctx.t_start = util_now_us();
	ctx.freeze_realtime_us = realtime_us();
	r = psite_freeze(ctx.pid, &ctx.frozen);
	if (r) {
		close(ctx.dirfd);
		return 1;
	}
	ctx.t_frozen = util_now_us();
	pr_info("pid %d frozen in %llu us\n", (int)ctx.pid,
		(unsigned long long)(ctx.t_frozen - ctx.t_start));

	r = check_scope(&ctx);
	if (!r)
		r = proc_read_stat(ctx.pid, &ctx.stat);
	/* Before the parasite adds its control socket to the fd table. */
	if (!r)
		r = dmp_files(&ctx);
	if (!r)
		r = dmp_mm_collect(&ctx);
	if (!r)
		r = dump_infected(&ctx);
	if (!r)
		r = dmp_cores(&ctx);
	if (!r)
		r = dmp_files_write(&ctx);
	if (!r)
		r = write_pstree(&ctx);
	t_end = util_now_us();
	if (!r)
		r = write_stats(&ctx, t_end);
	/* The inventory marks a complete dump: written last. */
	if (!r)
		r = write_inventory(&ctx);
	if (!r && fsync(ctx.dirfd)) {
		r = -errno;
		pr_perror("cannot sync the images directory %s", opts->images_dir);
	}

	if (r) {
		pr_err("dump of pid %d failed; it keeps running\n", (int)ctx.pid);
		psite_unfreeze(ctx.frozen, false);
	} else {
		psite_unfreeze(ctx.frozen, !opts->leave_running);
		pr_info("dump of pid %d complete: %llu pages, frozen %llu us\n", (int)ctx.pid,
			(unsigned long long)ctx.pages_written,
			(unsigned long long)(t_end - ctx.t_frozen));
	}
	dmp_files_fini(&ctx.files);
	free(ctx.runs.runs);
	close(ctx.dirfd);
	return r ? 1 : 0;
}
