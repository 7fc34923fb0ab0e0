/*
 * The address space of one process: VMAs (mm-<pid>.img), which pages hold
 * data (pagemap-<pid>.img, from /proc/PID/pagemap) and the data itself
 * (pages-<pid>.img), drained by the parasite through pipes with vmsplice and
 * spliced into the image without a copy through relive. Pages of VMAs the
 * process cannot read itself (PROT_NONE) are read through /proc/PID/mem.
 */
#include "dump.h"

#include "log.h"
#include "psite.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PAGEMAP_CHUNK 8192 /* entries read per pread */
#define TASK_SIZE_MAX 0x00007ffffffff000ULL

/* Add one page; runs grow while contiguous but never cross a VMA (new_vma). */
static int runs_add(struct run_list *l, uint64_t vaddr, bool readable, bool lazy, bool new_vma)
{
	struct page_run *last = l->nr ? &l->runs[l->nr - 1] : NULL;

	if (last && !new_vma && last->vaddr + (uint64_t)last->nr_pages * IMG_PAGE_SIZE == vaddr &&
	    last->readable == readable && last->lazy == lazy && last->nr_pages < (1U << 20)) {
		last->nr_pages++;
		return 0;
	}
	if (l->nr == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		struct page_run *n = realloc(l->runs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		l->runs = n;
		l->cap = cap;
	}
	l->runs[l->nr++] = (struct page_run){ vaddr, 1, readable, lazy };
	return 0;
}

static VmaKind classify(const struct proc_vma *v)
{
	if (!strcmp(v->path, "[heap]"))
		return VMA_KIND__VMA_HEAP;
	if (!strcmp(v->path, "[stack]"))
		return VMA_KIND__VMA_STACK;
	if (!strcmp(v->path, "[vdso]"))
		return VMA_KIND__VMA_VDSO;
	if (!strcmp(v->path, "[vvar]"))
		return VMA_KIND__VMA_VVAR;
	if (!strcmp(v->path, "[vvar_vclock]"))
		return VMA_KIND__VMA_VVAR_VCLOCK;
	if (!strcmp(v->path, "[vsyscall]"))
		return VMA_KIND__VMA_VSYSCALL;
	if (v->shared && (!strcmp(v->path, "/dev/zero (deleted)") ||
			  !strncmp(v->path, "/SYSV", 5) || (v->ino && v->path[0] != '/')))
		return VMA_KIND__VMA_ANON_SHARED;
	if (v->ino == 0 && v->path[0] != '/')
		return v->shared ? VMA_KIND__VMA_ANON_SHARED : VMA_KIND__VMA_ANON_PRIVATE;
	return v->shared ? VMA_KIND__VMA_FILE_SHARED : VMA_KIND__VMA_FILE_PRIVATE;
}

/* Whether a page of this kind holds data that only the image can bring back. */
static bool page_wanted(VmaKind kind, uint64_t pme)
{
	switch (kind) {
	case VMA_KIND__VMA_ANON_PRIVATE:
	case VMA_KIND__VMA_HEAP:
	case VMA_KIND__VMA_STACK:
	case VMA_KIND__VMA_ANON_SHARED:
		return pme & (PM_PRESENT | PM_SWAP);
	case VMA_KIND__VMA_FILE_PRIVATE:
		/* Only pages the process wrote: private anonymous copies. */
		return (pme & PM_SWAP) || ((pme & PM_PRESENT) && !(pme & PM_FILE));
	default:
		return false;
	}
}

static int check_mapped_file(struct dump_ctx *ctx, const struct proc_vma *v)
{
	char mf[128];
	struct stat a, b;

	if (strstr(v->path, " (deleted)")) {
		pr_err("pid %d: vma %llx-%llx maps deleted file %s: not supported yet\n",
		       (int)ctx->pid, (unsigned long long)v->start, (unsigned long long)v->end,
		       v->path);
		return -ENOTSUP;
	}
	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%llx-%llx", (int)ctx->pid,
		 (unsigned long long)v->start, (unsigned long long)v->end);
	if (stat(mf, &a) || stat(v->path, &b)) {
		int r = -errno;

		pr_perror("pid %d: cannot stat the file of vma %llx-%llx (%s)", (int)ctx->pid,
			  (unsigned long long)v->start, (unsigned long long)v->end, v->path);
		return r;
	}
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		pr_err("pid %d: vma %llx-%llx: %s is no longer the mapped file\n", (int)ctx->pid,
		       (unsigned long long)v->start, (unsigned long long)v->end, v->path);
		return -ESTALE;
	}
	return 0;
}

static int fill_vma(struct dump_ctx *ctx, const struct proc_vma *v, VmaEntry *ve)
{
	int r;

	ve->start = v->start;
	ve->end = v->end;
	ve->pgoff = v->pgoff;
	ve->prot = v->prot;
	ve->kind = classify(v);
	ve->flags = v->shared ? MAP_SHARED : MAP_PRIVATE;
	ve->has_madv = true;
	ve->madv = v->madv;
	switch (ve->kind) {
	case VMA_KIND__VMA_FILE_PRIVATE:
	case VMA_KIND__VMA_FILE_SHARED:
		r = check_mapped_file(ctx, v);
		if (r)
			return r;
		r = dmp_files_add_mapped(ctx, v->path, &ve->file_id);
		if (r)
			return r;
		ve->has_file_id = true;
		break;
	case VMA_KIND__VMA_ANON_SHARED:
		ve->flags |= MAP_ANONYMOUS;
		ve->has_shmid = true;
		ve->shmid = v->ino;
		break;
	case VMA_KIND__VMA_STACK:
		ve->flags |= MAP_ANONYMOUS | ((v->madv & VMA_GROWSDOWN) ? MAP_GROWSDOWN : 0);
		break;
	case VMA_KIND__VMA_ANON_PRIVATE:
	case VMA_KIND__VMA_HEAP:
		ve->flags |= MAP_ANONYMOUS | ((v->madv & VMA_GROWSDOWN) ? MAP_GROWSDOWN : 0);
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Pages served lazily: private anonymous memory only. userfaultfd (MISSING)
 * cannot register private file mappings, and shared memory stays eager.
 */
static bool vma_lazy(const VmaEntry *ve)
{
	return ve->kind == VMA_KIND__VMA_ANON_PRIVATE || ve->kind == VMA_KIND__VMA_HEAP ||
	       ve->kind == VMA_KIND__VMA_STACK;
}

/* Collect the runs of wanted pages of one VMA from /proc/PID/pagemap. */
static int scan_vma(int pagemap_fd, const VmaEntry *ve, bool lazy_mode, struct run_list *runs)
{
	bool lazy = lazy_mode && vma_lazy(ve);
	uint64_t buf[PAGEMAP_CHUNK];
	uint64_t addr = ve->start;
	bool readable = ve->prot & PROT_READ;
	bool first = true;
	int r;

	while (addr < ve->end) {
		size_t n = MIN((size_t)((ve->end - addr) / IMG_PAGE_SIZE), (size_t)PAGEMAP_CHUNK);
		ssize_t got = pread(pagemap_fd, buf, n * 8, (off_t)(addr / IMG_PAGE_SIZE * 8));

		if (got < 0) {
			r = -errno;
			pr_perror("cannot read pagemap at %llx", (unsigned long long)addr);
			return r;
		}
		if (got == 0 || got % 8) {
			pr_err("short pagemap read at %llx\n", (unsigned long long)addr);
			return -EIO;
		}
		n = (size_t)got / 8;
		for (size_t i = 0; i < n; i++, addr += IMG_PAGE_SIZE) {
			if (!page_wanted(ve->kind, buf[i]))
				continue;
			r = runs_add(runs, addr, readable, lazy, first);
			if (r)
				return r;
			first = false;
		}
	}
	return 0;
}

/* Copy a run the process cannot read itself through /proc/PID/mem. */
static int copy_unreadable(struct dump_ctx *ctx, int mem_fd, const struct page_run *run,
			   struct img *pages)
{
	uint8_t buf[64 * 1024];
	uint64_t addr = run->vaddr, end = run->vaddr + (uint64_t)run->nr_pages * IMG_PAGE_SIZE;
	int r;

	while (addr < end) {
		size_t len = MIN(sizeof(buf), (size_t)(end - addr));
		ssize_t n = pread(mem_fd, buf, len, (off_t)addr);

		if (n != (ssize_t)len) {
			pr_perror("pid %d: cannot read memory at %llx", (int)ctx->pid,
				  (unsigned long long)addr);
			return n < 0 ? -errno : -EIO;
		}
		r = img_pages_write(pages, buf, len);
		if (r) {
			pr_err("%s\n", pages->err);
			return r;
		}
		addr += len;
	}
	return 0;
}

/* Drain every non-lazy run into the pages image, in pagemap order. */
static int drain_runs(struct dump_ctx *ctx, const struct run_list *runs, struct img *pages)
{
	_cleanup_free_ struct iovec *iov = NULL;
	_cleanup_close_ int mem_fd = -1;
	char path[64];
	size_t i = 0;
	int r;

	iov = calloc(runs->nr ? runs->nr : 1, sizeof(*iov));
	if (!iov)
		return -ENOMEM;
	while (i < runs->nr) {
		size_t n = 0;
		uint64_t bytes = 0, want = 0;

		if (runs->runs[i].lazy) {
			i++;
			continue;
		}
		if (!runs->runs[i].readable) {
			if (mem_fd < 0) {
				snprintf(path, sizeof(path), "/proc/%d/mem", (int)ctx->pid);
				mem_fd = open(path, O_RDONLY | O_CLOEXEC);
				if (mem_fd < 0) {
					r = -errno;
					pr_perror("cannot open %s", path);
					return r;
				}
			}
			r = copy_unreadable(ctx, mem_fd, &runs->runs[i], pages);
			if (r)
				return r;
			i++;
			continue;
		}
		while (i + n < runs->nr && runs->runs[i + n].readable && !runs->runs[i + n].lazy) {
			iov[n].iov_base = (void *)(uintptr_t)runs->runs[i + n].vaddr;
			iov[n].iov_len = (size_t)runs->runs[i + n].nr_pages * IMG_PAGE_SIZE;
			want += iov[n].iov_len;
			n++;
		}
		r = psite_drain(ctx->ctl, iov, n, img_pages_fd(pages), &bytes);
		if (r)
			return r;
		if (bytes != want) {
			pr_err("pid %d: drained %llu bytes of %llu\n", (int)ctx->pid,
			       (unsigned long long)bytes, (unsigned long long)want);
			return -EIO;
		}
		img_pages_advance(pages, bytes);
		i += n;
	}
	return 0;
}

static int write_pagemap(struct dump_ctx *ctx, const struct run_list *runs)
{
	PagemapHead head = PAGEMAP_HEAD__INIT;
	struct img img;
	int r;

	r = img_open(&img, ctx->dirfd, IMG_PAGEMAP, (uint32_t)ctx->pid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	head.pages_id = (uint32_t)ctx->pid;
	r = img_write(&img, &head.base);
	for (size_t i = 0; i < runs->nr && !r; i++) {
		PagemapEntry pe = PAGEMAP_ENTRY__INIT;

		pe.vaddr = runs->runs[i].vaddr;
		pe.nr_pages = runs->runs[i].nr_pages;
		pe.flags = runs->runs[i].lazy ? PE_LAZY : PE_PRESENT;
		r = img_write(&img, &pe.base);
	}
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

static int write_mm(struct dump_ctx *ctx, VmaEntry **vmas, size_t nr)
{
	MmEntry mm = MM_ENTRY__INIT;
	_cleanup_free_ char *auxv = NULL;
	char path[64];
	size_t alen = 0;
	struct img img;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/auxv", (int)ctx->pid);
	r = util_read_file(AT_FDCWD, path, &auxv, &alen);
	if (r) {
		pr_err("cannot read %s: %s\n", path, strerror(-r));
		return r;
	}
	mm.start_code = ctx->stat.start_code;
	mm.end_code = ctx->stat.end_code;
	mm.start_data = ctx->stat.start_data;
	mm.end_data = ctx->stat.end_data;
	mm.start_stack = ctx->stat.start_stack;
	mm.start_brk = ctx->stat.start_brk;
	mm.brk = ctx->stat.start_brk;
	for (size_t i = 0; i < nr; i++)
		if (vmas[i]->kind == VMA_KIND__VMA_HEAP)
			mm.brk = vmas[i]->end;
	mm.arg_start = ctx->stat.arg_start;
	mm.arg_end = ctx->stat.arg_end;
	mm.env_start = ctx->stat.env_start;
	mm.env_end = ctx->stat.env_end;
	mm.n_auxv = alen / sizeof(uint64_t);
	mm.auxv = (uint64_t *)auxv;
	mm.n_vmas = nr;
	mm.vmas = vmas;

	r = img_open(&img, ctx->dirfd, IMG_MM, (uint32_t)ctx->pid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", img.err);
		return r;
	}
	r = img_write(&img, &mm.base);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		pr_err("%s\n", img.err);
	return r;
}

int dmp_mm_collect(struct dump_ctx *ctx)
{
	_cleanup_free_ struct proc_vma *pv = NULL;
	_cleanup_free_ VmaEntry *ve = NULL;
	_cleanup_free_ VmaEntry **vep = NULL;
	_cleanup_close_ int pagemap_fd = -1;
	struct run_list *runs = &ctx->runs;
	char path[64];
	size_t nr = 0;
	int r;

	r = proc_read_vmas(ctx->pid, &pv, &nr);
	if (r)
		return r;
	ve = calloc(nr ? nr : 1, sizeof(*ve));
	vep = calloc(nr ? nr : 1, sizeof(*vep));
	if (!ve || !vep)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)ctx->pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0) {
		r = -errno;
		pr_perror("cannot open %s", path);
		return r;
	}
	for (size_t i = 0; i < nr; i++) {
		vma_entry__init(&ve[i]);
		vep[i] = &ve[i];
		r = fill_vma(ctx, &pv[i], &ve[i]);
		if (r)
			return r;
		if (ve[i].kind != VMA_KIND__VMA_VSYSCALL && ve[i].end > TASK_SIZE_MAX) {
			pr_err("pid %d: vma %llx-%llx beyond the user address space\n",
			       (int)ctx->pid, (unsigned long long)ve[i].start,
			       (unsigned long long)ve[i].end);
			return -EINVAL;
		}
		if (!page_wanted(ve[i].kind, PM_PRESENT | PM_SWAP))
			continue;
		r = scan_vma(pagemap_fd, &ve[i], ctx->opts->lazy_pages, runs);
		if (r)
			return r;
	}
	for (size_t i = 0; i < runs->nr; i++) {
		if (runs->runs[i].lazy)
			ctx->pages_lazy += runs->runs[i].nr_pages;
		else
			ctx->pages_written += runs->runs[i].nr_pages;
	}
	r = write_mm(ctx, vep, nr);
	if (r)
		return r;
	return write_pagemap(ctx, runs);
}

int dmp_mm_drain(struct dump_ctx *ctx)
{
	struct img pages;
	uint64_t t0 = util_now_us();
	int r;

	r = img_open(&pages, ctx->dirfd, IMG_PAGES, (uint32_t)ctx->pid, IMG_WRITE);
	if (r) {
		pr_err("%s\n", pages.err);
		return r;
	}
	r = drain_runs(ctx, &ctx->runs, &pages);
	if (img_close(&pages) && !r) {
		pr_err("%s\n", pages.err);
		r = -EIO;
	}
	ctx->memdump_us = util_now_us() - t0;
	return r;
}
