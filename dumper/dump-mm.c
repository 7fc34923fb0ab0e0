/*
 * The address space of one process: VMAs (mm-<pid>.img), which pages hold
 * data (pagemap-<pid>.img, from /proc/PID/pagemap) and the data itself
 * (pages-<pid>.img), drained by the parasite through pipes with vmsplice and
 * spliced into the image without a copy through relive. Pages of VMAs the
 * process cannot read itself (PROT_NONE) are read through /proc/PID/mem.
 */
#include "dump.h"

#include "fault.h"
#include "log.h"
#include "psite.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define TASK_SIZE_MAX 0x00007ffffffff000ULL

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

		if (runs->runs[i].lazy || runs->runs[i].zero) {
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
		while (i + n < runs->nr && runs->runs[i + n].readable && !runs->runs[i + n].lazy &&
		       !runs->runs[i + n].zero) {
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
		if (fault_at("dump-mid-pages"))
			return -EIO;
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
		pe.flags = runs->runs[i].zero ? PE_ZERO : runs->runs[i].lazy ? PE_LAZY : PE_PRESENT;
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

/*
 * VmFlags come only from /proc/PID/smaps, whose cost grows with resident
 * memory (~25 ms for 2 GiB here): read it before the freeze, and under the
 * freeze read the cheap /proc/PID/maps. A VMA found unchanged takes its
 * flags from the early read; if any VMA changed, smaps is read again under
 * the freeze. (A madvise() that changes only flags of a whole VMA in the few
 * milliseconds between the two reads is the one change this can miss.)
 */
int dmp_mm_prefreeze(struct dump_ctx *ctx)
{
	return proc_read_vmas(ctx->pid, true, &ctx->pre_vmas, &ctx->nr_pre_vmas);
}

static bool take_early_flags(const struct dump_ctx *ctx, struct proc_vma *v, size_t hint)
{
	for (size_t k = 0; k < ctx->nr_pre_vmas; k++) {
		const struct proc_vma *p = &ctx->pre_vmas[(hint + k) % ctx->nr_pre_vmas];

		if (p->start == v->start && p->end == v->end && p->prot == v->prot &&
		    p->shared == v->shared && p->pgoff == v->pgoff && p->ino == v->ino &&
		    !strcmp(p->path, v->path)) {
			v->madv = p->madv;
			return true;
		}
	}
	return false;
}

static int read_vmas_frozen(struct dump_ctx *ctx, struct proc_vma **ret, size_t *ret_nr)
{
	_cleanup_free_ struct proc_vma *pv = NULL;
	size_t nr = 0;
	int r;

	if (!ctx->nr_pre_vmas)
		return proc_read_vmas(ctx->pid, true, ret, ret_nr);
	r = proc_read_vmas(ctx->pid, false, &pv, &nr);
	if (r)
		return r;
	for (size_t i = 0; i < nr; i++) {
		if (!take_early_flags(ctx, &pv[i], i)) {
			pr_info("pid %d: its VMAs changed before the freeze; reading smaps again\n",
				(int)ctx->pid);
			return proc_read_vmas(ctx->pid, true, ret, ret_nr);
		}
	}
	*ret = TAKE_PTR(pv);
	*ret_nr = nr;
	return 0;
}

int dmp_mm_collect(struct dump_ctx *ctx)
{
	_cleanup_free_ struct proc_vma *pv = NULL;
	_cleanup_free_ VmaEntry *ve = NULL;
	_cleanup_free_ VmaEntry **vep = NULL;
	struct run_list *runs = &ctx->runs;
	struct dmp_scanner sc;
	size_t nr = 0;
	int r;

	r = read_vmas_frozen(ctx, &pv, &nr);
	if (r)
		return r;
	ve = calloc(nr ? nr : 1, sizeof(*ve));
	vep = calloc(nr ? nr : 1, sizeof(*vep));
	if (!ve || !vep)
		return -ENOMEM;
	r = dmp_scanner_open(ctx->pid, &sc);
	if (r)
		return r;
	for (size_t i = 0; i < nr; i++) {
		vma_entry__init(&ve[i]);
		vep[i] = &ve[i];
		r = fill_vma(ctx, &pv[i], &ve[i]);
		if (r)
			goto out;
		if (ve[i].kind != VMA_KIND__VMA_VSYSCALL && ve[i].end > TASK_SIZE_MAX) {
			pr_err("pid %d: vma %llx-%llx beyond the user address space\n",
			       (int)ctx->pid, (unsigned long long)ve[i].start,
			       (unsigned long long)ve[i].end);
			r = -EINVAL;
			goto out;
		}
		r = dmp_scan_vma(&sc, &ve[i], ctx->opts->lazy_pages, runs);
		if (r)
			goto out;
	}
	for (size_t i = 0; i < runs->nr; i++) {
		if (runs->runs[i].zero)
			ctx->pages_zero += runs->runs[i].nr_pages;
		else if (runs->runs[i].lazy)
			ctx->pages_lazy += runs->runs[i].nr_pages;
		else
			ctx->pages_written += runs->runs[i].nr_pages;
	}
	r = write_mm(ctx, vep, nr);
	if (!r)
		r = write_pagemap(ctx, runs);
out:
	dmp_scanner_close(&sc);
	return r;
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
