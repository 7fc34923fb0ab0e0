/*
 * Which pages of a VMA hold data: the page scan behind pagemap-<pid>.img.
 * It runs while the process is frozen, so its cost is part of the frozen
 * window: the PAGEMAP_SCAN ioctl (6.7+) walks the page tables in the kernel
 * and returns whole regions (~3 ms for 2 GiB here), where reading 8 bytes a
 * page from /proc/PID/pagemap costs ~18 ms; the read stays as the fallback
 * for older kernels. Pages mapped to the shared zero page become ZERO runs:
 * nothing to copy or to serve.
 */
#include "dump.h"

#include "compat.h"
#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PAGEMAP_CHUNK 8192 /* entries read per pread */
/*
 * Regions asked per PAGEMAP_SCAN call: at most the kernel's bounce buffer
 * (PAGEMAP_WALK_SIZE >> PAGE_SHIFT = 512). With more, the kernel walks
 * again when the buffer fills, and if that second walk then completes it
 * reports the walk_end of the first (do_pagemap_scan() sets walk_end only on
 * an early stop): the next call would scan those pages again.
 */
#define SCAN_REGIONS 512
#define RUN_MAX_PAGES (1U << 20)

int dmp_scanner_open(pid_t pid, struct dmp_scanner *sc)
{
	char path[64];

	memset(sc, 0, sizeof(*sc));
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	sc->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (sc->fd < 0) {
		int r = -errno;

		pr_perror("cannot open %s", path);
		return r;
	}
	sc->pid = pid;
	sc->use_ioctl = true;
	return 0;
}

void dmp_scanner_close(struct dmp_scanner *sc)
{
	if (sc->fd >= 0)
		close(sc->fd);
	sc->fd = -1;
	free(sc->regions);
	sc->regions = NULL;
}

bool dmp_vma_lazy(const VmaEntry *ve)
{
	/* userfaultfd (MISSING) cannot register private file mappings; shared
	 * memory stays eager. */
	return ve->kind == VMA_KIND__VMA_ANON_PRIVATE || ve->kind == VMA_KIND__VMA_HEAP ||
	       ve->kind == VMA_KIND__VMA_STACK;
}

bool dmp_vma_has_data(const VmaEntry *ve)
{
	switch (ve->kind) {
	case VMA_KIND__VMA_ANON_PRIVATE:
	case VMA_KIND__VMA_HEAP:
	case VMA_KIND__VMA_STACK:
	case VMA_KIND__VMA_ANON_SHARED:
	case VMA_KIND__VMA_FILE_PRIVATE:
		return true;
	default:
		return false;
	}
}

/* Add pages to the list; runs grow while alike and contiguous, never across a VMA. */
static int runs_add(struct run_list *l, const struct page_run *add, bool new_vma)
{
	struct page_run *last = l->nr ? &l->runs[l->nr - 1] : NULL;
	uint64_t vaddr = add->vaddr;
	uint32_t left = add->nr_pages;

	if (last && !new_vma && last->vaddr + (uint64_t)last->nr_pages * IMG_PAGE_SIZE == vaddr &&
	    last->readable == add->readable && last->lazy == add->lazy &&
	    last->zero == add->zero) {
		uint32_t take = MIN(left, RUN_MAX_PAGES - last->nr_pages);

		last->nr_pages += take;
		vaddr += (uint64_t)take * IMG_PAGE_SIZE;
		left -= take;
	}
	while (left) {
		uint32_t take = MIN(left, RUN_MAX_PAGES);

		if (l->nr == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 256;
			struct page_run *n = realloc(l->runs, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			l->runs = n;
			l->cap = cap;
		}
		l->runs[l->nr] = *add;
		l->runs[l->nr].vaddr = vaddr;
		l->runs[l->nr].nr_pages = take;
		l->nr++;
		vaddr += (uint64_t)take * IMG_PAGE_SIZE;
		left -= take;
	}
	return 0;
}

static bool pme_wanted(VmaKind kind, uint64_t pme)
{
	if (kind == VMA_KIND__VMA_FILE_PRIVATE)
		/* Only pages the process wrote: private anonymous copies. */
		return (pme & PM_SWAP) || ((pme & PM_PRESENT) && !(pme & PM_FILE));
	return pme & (PM_PRESENT | PM_SWAP);
}

static int scan_read(struct dmp_scanner *sc, const VmaEntry *ve, struct page_run proto,
		     struct run_list *runs)
{
	uint64_t buf[PAGEMAP_CHUNK];
	uint64_t addr = ve->start;
	bool first = true;
	int r;

	while (addr < ve->end) {
		size_t n = MIN((size_t)((ve->end - addr) / IMG_PAGE_SIZE), (size_t)PAGEMAP_CHUNK);
		ssize_t got = pread(sc->fd, buf, n * 8, (off_t)(addr / IMG_PAGE_SIZE * 8));

		if (got <= 0 || got % 8) {
			r = got < 0 ? -errno : -EIO;
			pr_err("pid %d: cannot read the pagemap at %llx: %s\n", (int)sc->pid,
			       (unsigned long long)addr, strerror(-r));
			return r;
		}
		n = (size_t)got / 8;
		for (size_t i = 0; i < n; i++, addr += IMG_PAGE_SIZE) {
			if (!pme_wanted(ve->kind, buf[i]))
				continue;
			proto.vaddr = addr;
			proto.nr_pages = 1;
			r = runs_add(runs, &proto, first);
			if (r)
				return r;
			first = false;
		}
	}
	return 0;
}

/* Returns 0, -ENOTTY when the kernel has no PAGEMAP_SCAN, or another -errno. */
static int scan_ioctl(struct dmp_scanner *sc, const VmaEntry *ve, struct page_run proto,
		      struct run_list *runs)
{
	struct pm_scan_arg arg;
	uint64_t addr = ve->start;
	bool first = true;
	int r;

	if (!sc->regions) {
		sc->regions = calloc(SCAN_REGIONS, sizeof(*sc->regions));
		if (!sc->regions)
			return -ENOMEM;
	}
	while (addr < ve->end) {
		long n;

		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.start = addr;
		arg.end = ve->end;
		arg.vec = (uint64_t)(uintptr_t)sc->regions;
		arg.vec_len = SCAN_REGIONS;
		arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO;
		if (ve->kind == VMA_KIND__VMA_FILE_PRIVATE) {
			/* Only anonymous copies: not "file" pages. */
			arg.category_mask = PAGE_IS_FILE;
			arg.category_inverted = PAGE_IS_FILE;
		}
		n = ioctl(sc->fd, PAGEMAP_SCAN, &arg);
		if (n < 0) {
			r = -errno;
			if (r == -ENOTTY || r == -EINVAL)
				return -ENOTTY;
			pr_perror("pid %d: PAGEMAP_SCAN of %llx-%llx failed", (int)sc->pid,
				  (unsigned long long)addr, (unsigned long long)ve->end);
			return r;
		}
		for (long i = 0; i < n; i++) {
			const struct page_region *pr = &sc->regions[i];

			if (pr->start < addr || pr->end > ve->end || pr->start >= pr->end ||
			    (i && pr->start < sc->regions[i - 1].end) ||
			    (pr->start | pr->end) % IMG_PAGE_SIZE) {
				pr_err("pid %d: PAGEMAP_SCAN returned a bad region %llx-%llx\n",
				       (int)sc->pid, (unsigned long long)pr->start,
				       (unsigned long long)pr->end);
				return -EIO;
			}
			proto.vaddr = pr->start;
			proto.nr_pages = (uint32_t)((pr->end - pr->start) / IMG_PAGE_SIZE);
			proto.zero = (pr->categories & PAGE_IS_PFNZERO) &&
				     !(pr->categories & PAGE_IS_SWAPPED);
			r = runs_add(runs, &proto, first);
			if (r)
				return r;
			first = false;
		}
		if (n && arg.walk_end < sc->regions[n - 1].end) {
			pr_err("pid %d: PAGEMAP_SCAN from %llx ended its walk at %llx, before its "
			       "last region %llx-%llx\n", (int)sc->pid, (unsigned long long)addr,
			       (unsigned long long)arg.walk_end,
			       (unsigned long long)sc->regions[n - 1].start,
			       (unsigned long long)sc->regions[n - 1].end);
			return -EIO;
		}
		if (arg.walk_end <= addr || arg.walk_end > ve->end) {
			pr_err("pid %d: PAGEMAP_SCAN made no progress at %llx\n", (int)sc->pid,
			       (unsigned long long)addr);
			return -EIO;
		}
		addr = arg.walk_end;
	}
	return 0;
}

int dmp_scan_vma(struct dmp_scanner *sc, const VmaEntry *ve, bool lazy_mode,
		 struct run_list *runs)
{
	struct page_run proto = {
		.readable = ve->prot & PROT_READ,
		.lazy = lazy_mode && dmp_vma_lazy(ve),
	};
	size_t nr_before = runs->nr;
	int r;

	if (!dmp_vma_has_data(ve))
		return 0;
	if (sc->use_ioctl) {
		r = scan_ioctl(sc, ve, proto, runs);
		if (r != -ENOTTY)
			return r;
		pr_info("PAGEMAP_SCAN is not available: reading the pagemap page by page\n");
		sc->use_ioctl = false;
		runs->nr = nr_before;
	}
	return scan_read(sc, ve, proto, runs);
}
