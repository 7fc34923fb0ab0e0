/*
 * Fuzz target for the restore planner: rst_plan_load() reads and validates a
 * whole image directory before restore creates any process. The input is
 * cut into image files written into a scratch directory (format below); the
 * planner must then either refuse with an error line naming an image file,
 * or return a plan that an independent check finds consistent: VMAs
 * page-aligned, sorted, not overlapping and below the task size; pagemap
 * runs inside VMAs and never in a vdso/vvar/vsyscall one; no lazy run
 * without --lazy-pages; enough pages in the pages image; every file an fd or
 * a file VMA names present. Plus no crash, no UB and no leak (the sanitizers).
 *
 * Input: one flags byte (bit 0: restore --lazy-pages), then records
 * {u8 kind; u32 id; u16 len; len bytes}, little-endian. kind & 0x0f is an
 * enum img_kind (modulo IMG_KIND_MAX), id the pid or pages id of the file
 * name. The file gets a valid header of that kind followed by the bytes,
 * unless kind & 0x80 ("raw": the bytes are the whole file). A non-raw pages
 * record holds only a u32 page count: the file is made that size, sparse.
 * fuzz/mkseed-rst-plan.py turns a dump into such an input.
 */
#include "rst.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RECORDS 32
#define MAX_PAGES (1U << 20) /* 4 GiB of sparse page data at most */
#define REC_HDR 7
#define REC_RAW 0x80
#define VSYSCALL_START 0xffffffffff600000ULL

static char dir_path[256];
static int dir_fd = -1;
static int log_mem = -1;
/* The files of the current input, removed after each run. */
static char names[MAX_RECORDS][64];
static size_t nr_names;

static void scrub(void)
{
	for (size_t i = 0; i < nr_names; i++)
		unlinkat(dir_fd, names[i], 0);
	nr_names = 0;
}

static void cleanup(void)
{
	if (dir_fd >= 0) {
		scrub();
		close(dir_fd);
		dir_fd = -1;
		rmdir(dir_path);
	}
}

__attribute__((noreturn, format(printf, 1, 2))) static void broken(const char *fmt, ...);

static void broken(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("restore plan property broken: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	cleanup(); /* the input is the crash file: the scratch copy can go */
	abort();
}

/* The scratch directory (tmpfs when there is one) and a memfd catching the log. */
static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	char log_path[64];

	if (dir_fd >= 0)
		return;
	if (!tmp)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir_path, sizeof(dir_path), "%s/relive-fuzz-plan-XXXXXX", tmp);
	if (!mkdtemp(dir_path))
		broken("harness: mkdtemp %s: %s", dir_path, strerror(errno));
	dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0)
		broken("harness: open %s: %s", dir_path, strerror(errno));
	atexit(cleanup);
	log_mem = memfd_create("relive-fuzz-plan.log", MFD_CLOEXEC);
	if (log_mem < 0)
		broken("harness: memfd: %s", strerror(errno));
	snprintf(log_path, sizeof(log_path), "/proc/self/fd/%d", log_mem);
	log_set_level(LOG_ERROR);
	if (log_set_file(log_path))
		broken("harness: cannot log to %s", log_path);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_file(const char *name, uint32_t magic, bool raw, bool pages, const uint8_t *d,
		       size_t len)
{
	uint32_t hdr[2] = { magic, IMG_FORMAT_VERSION };
	int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	bool ok;

	if (fd < 0)
		broken("harness: create %s: %s", name, strerror(errno));
	if (raw) {
		ok = write(fd, d, len) == (ssize_t)len;
	} else if (pages) {
		uint32_t n = len >= 4 ? get32(d) % (MAX_PAGES + 1) : 0;

		ok = write(fd, hdr, sizeof(hdr)) == sizeof(hdr) &&
		     !ftruncate(fd, IMG_PAGE_SIZE + (off_t)n * IMG_PAGE_SIZE);
	} else {
		ok = write(fd, hdr, sizeof(hdr)) == sizeof(hdr) &&
		     write(fd, d, len) == (ssize_t)len;
	}
	if (!ok)
		broken("harness: write %s: %s", name, strerror(errno));
	close(fd);
}

/* Write the records as files; their names go to names[] for scrub(). */
static void write_images(const uint8_t *data, size_t size)
{
	size_t off = 1;

	while (nr_names < MAX_RECORDS && off + REC_HDR <= size) {
		enum img_kind kind = (enum img_kind)((data[off] & 0x0f) % IMG_KIND_MAX);
		bool raw = data[off] & REC_RAW;
		uint32_t id = get32(data + off + 1);
		size_t len = (size_t)data[off + 5] | (size_t)data[off + 6] << 8;

		off += REC_HDR;
		if (len > size - off)
			len = size - off;
		img_file_name(kind, id, names[nr_names], sizeof(names[0]));
		/* Counted before the write: a failed write is scrubbed too. */
		nr_names++;
		write_file(names[nr_names - 1], img_kind_desc(kind)->magic, raw,
			   kind == IMG_PAGES, data + off, len);
		off += len;
	}
}

static bool special(uint32_t kind)
{
	return kind == VMA_KIND__VMA_VDSO || kind == VMA_KIND__VMA_VVAR ||
	       kind == VMA_KIND__VMA_VVAR_VCLOCK || kind == VMA_KIND__VMA_VSYSCALL;
}

/* The index of the VMA holding ADDR, or nv. */
static size_t vma_at(const struct rst_vma *v, size_t nv, uint64_t addr)
{
	for (size_t i = 0; i < nv; i++)
		if (v[i].kind != VMA_KIND__VMA_VSYSCALL && v[i].start <= addr && addr < v[i].end)
			return i;
	return nv;
}

static void check_vmas(const struct rst_plan *p, const struct rst_task *t)
{
	uint64_t prev = 0;

	if (t->nr_vmas != t->mm->n_vmas)
		broken("pid %u: %zu vmas in the plan, %zu in mm", t->pid, t->nr_vmas,
		       t->mm->n_vmas);
	for (size_t i = 0; i < t->nr_vmas; i++) {
		const struct rst_vma *v = &t->vmas[i];

		if (v->start >= v->end || v->start % IMG_PAGE_SIZE || v->end % IMG_PAGE_SIZE)
			broken("vma %zu [%#" PRIx64 "-%#" PRIx64 ") empty or unaligned", i, v->start,
			       v->end);
		if (v->kind > VMA_KIND__VMA_VSYSCALL)
			broken("vma %zu of unknown kind %u", i, v->kind);
		if (v->kind == VMA_KIND__VMA_VSYSCALL) {
			/* Never mapped by restore, but only ever the one fixed page. */
			if (v->start != VSYSCALL_START || v->end != VSYSCALL_START + IMG_PAGE_SIZE)
				broken("vsyscall vma %zu at [%#" PRIx64 "-%#" PRIx64 ")", i, v->start,
				       v->end);
			continue;
		}
		if (v->end > RST_TASK_SIZE)
			broken("vma %zu [%#" PRIx64 "-%#" PRIx64 ") beyond the task size", i,
			       v->start, v->end);
		if (v->start < prev)
			broken("vma %zu [%#" PRIx64 "-%#" PRIx64 ") overlaps or is out of order", i,
			       v->start, v->end);
		prev = v->end;
		if (v->kind == VMA_KIND__VMA_FILE_PRIVATE || v->kind == VMA_KIND__VMA_FILE_SHARED) {
			const FileEntry *f = v->has_file ? rst_plan_file(p, v->file_id) : NULL;

			if (!f || f->type != FILE_TYPE__FILE_REG || !f->reg || v->pgoff % IMG_PAGE_SIZE)
				broken("file vma %zu without a regular file or aligned offset", i);
		}
	}
}

static void check_runs(const struct rst_plan *p, const struct rst_task *t)
{
	uint64_t prev = 0, present = 0, lazy = 0;

	for (size_t i = 0; i < t->nr_runs; i++) {
		const struct rst_run *r = &t->runs[i];
		uint64_t addr, end;

		if (!r->nr_pages || r->vaddr % IMG_PAGE_SIZE || r->vaddr < prev ||
		    r->nr_pages > RST_TASK_SIZE / IMG_PAGE_SIZE ||
		    r->vaddr + r->nr_pages * IMG_PAGE_SIZE > RST_TASK_SIZE)
			broken("run %zu (%#" PRIx64 ", %" PRIu64 " pages) empty, unaligned, "
			       "unsorted or beyond the task size",
			       i, r->vaddr, r->nr_pages);
		if (r->flags != PE_PRESENT && r->flags != PE_LAZY && r->flags != PE_ZERO)
			broken("run %zu with flags %#x", i, r->flags);
		if (r->flags == PE_LAZY && !p->lazy)
			broken("lazy run %zu in an eager restore", i);
		end = r->vaddr + r->nr_pages * IMG_PAGE_SIZE;
		/* Page by page would be slow on big runs: walk VMA by VMA. */
		for (addr = r->vaddr; addr < end;) {
			size_t k = vma_at(t->vmas, t->nr_vmas, addr);

			if (k == t->nr_vmas)
				broken("run %zu: page %#" PRIx64 " outside every vma", i, addr);
			if (special(t->vmas[k].kind))
				broken("run %zu: page %#" PRIx64 " in a vdso/vvar vma", i, addr);
			addr = t->vmas[k].end;
		}
		if (r->flags == PE_PRESENT)
			present += r->nr_pages;
		if (r->flags == PE_LAZY)
			lazy += r->nr_pages;
		prev = end;
	}
	if (present != t->nr_present || lazy != t->nr_lazy)
		broken("pid %u: %" PRIu64 "/%" PRIu64 " present/lazy pages counted, plan says %" PRIu64
		       "/%" PRIu64,
		       t->pid, present, lazy, t->nr_present, t->nr_lazy);
}

static void check_pages(const struct rst_task *t)
{
	char name[64];
	struct stat st;

	img_file_name(IMG_PAGES, t->pages_id, name, sizeof(name));
	if (fstatat(dir_fd, name, &st, 0))
		broken("plan accepted without %s", name);
	if ((uint64_t)st.st_size < IMG_PAGE_SIZE + t->nr_present * IMG_PAGE_SIZE)
		broken("%s of %lld bytes accepted for %" PRIu64 " present pages", name,
		       (long long)st.st_size, t->nr_present);
}

static void check_plan(const struct rst_plan *p)
{
	if (!p->inv || p->nr_tasks != 1 || !p->tasks)
		broken("plan with %zu tasks", p->nr_tasks);
	for (size_t i = 0; i < p->nr_tasks; i++) {
		const struct rst_task *t = &p->tasks[i];

		if (t->pid < 2 || t->pid > (1U << 22) || t->pid != p->inv->root_pid)
			broken("plan for pid %u (root %u)", t->pid, p->inv->root_pid);
		if (!t->task || !t->mm || t->nr_threads != 1 || !t->threads[0].core)
			broken("pid %u: plan without task, mm or core", t->pid);
		for (size_t k = 0; k < t->nr_fds; k++) {
			if (!t->fds[k].file || t->fds[k].file->type != FILE_TYPE__FILE_REG)
				broken("pid %u: fd %u without a regular file", t->pid, t->fds[k].fd);
			for (size_t j = 0; j < k; j++)
				if (t->fds[j].fd == t->fds[k].fd)
					broken("pid %u: fd %u twice", t->pid, t->fds[k].fd);
		}
		check_vmas(p, t);
		check_runs(p, t);
		check_pages(t);
	}
}

/* A refused plan must say which image: one error line naming a *.img file. */
static void check_refusal(int r)
{
	char buf[4096];
	ssize_t n;

	if (r != -EINVAL && r != -ENOTSUP && r != -ENOENT && r != -EIO && r != -EBADMSG &&
	    r != -EPROTO && r != -E2BIG && r != -EFBIG)
		broken("rst_plan_load returned %d (%s)", r, strerror(-r));
	n = pread(log_mem, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		broken("harness: reading the log: %s", strerror(errno));
	buf[n] = 0;
	if (!strstr(buf, ".img"))
		broken("refused (%d) without naming an image file; log: '%s'", r, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct relive_opts opts = { 0 };
	struct rst_plan plan;
	int r;

	if (size < 1)
		return 0;
	setup();
	opts.cmd = CMD_RESTORE;
	opts.lazy_pages = data[0] & 1;
	write_images(data, size);
	if (ftruncate(log_mem, 0))
		broken("harness: truncating the log: %s", strerror(errno));
	r = rst_plan_load(dir_fd, &opts, &plan);
	if (r) {
		check_refusal(r);
	} else {
		check_plan(&plan);
#ifdef FUZZ_REPLAY
		fprintf(stderr, "plan accepted: pid %u, %zu vmas, %zu runs, %" PRIu64 " pages\n",
			plan.tasks[0].pid, plan.tasks[0].nr_vmas, plan.tasks[0].nr_runs,
			plan.tasks[0].nr_present);
#endif
		rst_plan_free(&plan);
	}
	scrub();
	return 0;
}
