/*
 * lazy-rst-mkimg EAGER_DIR LAZY_DIR: turn a copy of an eager dump into the
 * images a lazy dump would have written, for testing restore --lazy-pages
 * before (and independently of) the lazy dumper. LAZY_DIR starts as a copy
 * of EAGER_DIR; every PRESENT page inside a private anonymous, heap or stack
 * VMA becomes LAZY (runs are cut at VMA boundaries), the pages image keeps
 * only the pages that stay PRESENT, and the inventory gets the lazy flag.
 * EAGER_DIR is left as it is: the fake daemon serves the lazy pages from it.
 * Prints "present N lazy M" (pages).
 */
#include "lazy-rst-img.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG IMG_PAGE_SIZE
#define CHUNK (256U * PG)

static bool lazy_vma(const VmaEntry *v)
{
	return (v->kind == VMA_KIND__VMA_ANON_PRIVATE || v->kind == VMA_KIND__VMA_HEAP ||
		v->kind == VMA_KIND__VMA_STACK) &&
	       !(v->flags & MAP_SHARED);
}

struct out {
	struct img map;
	struct img pages;
	int eager_pages;
	uint64_t present, lazy;
	uint8_t *buf;
};

static int emit(struct out *o, uint64_t vaddr, uint64_t n, uint32_t flags, uint64_t src_page)
{
	PagemapEntry pe = PAGEMAP_ENTRY__INIT;
	int r;

	pe.vaddr = vaddr;
	pe.nr_pages = (uint32_t)n;
	pe.flags = flags;
	r = img_write(&o->map, &pe.base);
	if (r) {
		fprintf(stderr, "%s\n", o->map.err);
		return r;
	}
	if (flags & PE_LAZY)
		o->lazy += n;
	if (!(flags & PE_PRESENT))
		return 0;
	o->present += n;
	for (uint64_t done = 0; done < n * PG;) {
		size_t len = n * PG - done > CHUNK ? CHUNK : (size_t)(n * PG - done);
		ssize_t got = pread(o->eager_pages, o->buf, len,
				    (off_t)(img_pages_offset(src_page) + done));

		if (got != (ssize_t)len) {
			fprintf(stderr, "eager pages image: short read at page %" PRIu64 "\n",
				src_page);
			return -EIO;
		}
		r = img_pages_write(&o->pages, o->buf, len);
		if (r) {
			fprintf(stderr, "%s\n", o->pages.err);
			return r;
		}
		done += len;
	}
	return 0;
}

/* Cut a PRESENT run at VMA boundaries: anonymous pieces become LAZY. */
static int split(struct out *o, const struct lr_task *t, const struct lr_run *run)
{
	uint64_t addr = run->vaddr, end = run->vaddr + run->nr_pages * PG;

	for (size_t k = 0; k < t->mm->n_vmas && addr < end; k++) {
		const VmaEntry *v = t->mm->vmas[k];
		uint64_t s, e;
		int r;

		if (v->end <= addr || v->start >= end)
			continue;
		s = addr > v->start ? addr : v->start;
		e = end < v->end ? end : v->end;
		if (s != addr) {
			fprintf(stderr, "run at 0x%" PRIx64 " has a hole at 0x%" PRIx64 "\n",
				run->vaddr, addr);
			return -EINVAL;
		}
		r = emit(o, s, (e - s) / PG, lazy_vma(v) ? PE_LAZY : PE_PRESENT,
			 run->page + (s - run->vaddr) / PG);
		if (r)
			return r;
		addr = e;
	}
	if (addr != end) {
		fprintf(stderr, "run at 0x%" PRIx64 " is not inside the vmas\n", run->vaddr);
		return -EINVAL;
	}
	return 0;
}

static int rewrite_inventory(int dirfd, InventoryEntry *inv)
{
	struct img img;
	int r;

	inv->flags |= INV_FLAG_LAZY;
	r = img_open(&img, dirfd, IMG_INVENTORY, 0, IMG_WRITE);
	if (!r)
		r = img_write(&img, &inv->base);
	if (img_close(&img) && !r)
		r = -EIO;
	if (r)
		fprintf(stderr, "%s\n", img.err);
	return r;
}

int main(int argc, char **argv)
{
	PagemapHead head = PAGEMAP_HEAD__INIT;
	struct out o = { .eager_pages = -1 };
	struct lr_task t;
	struct img ep;
	int edir, ldir, r;

	if (argc != 3) {
		fprintf(stderr, "usage: %s EAGER_DIR LAZY_DIR\n", argv[0]);
		return 2;
	}
	edir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ldir = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (edir < 0 || ldir < 0) {
		perror("open the image directories");
		return 1;
	}
	if (lr_load(edir, argv[1], &t))
		return 1;
	r = img_open(&ep, edir, IMG_PAGES, t.pages_id, IMG_READ);
	if (r) {
		fprintf(stderr, "%s\n", ep.err);
		return 1;
	}
	o.eager_pages = img_pages_fd(&ep);
	o.buf = malloc(CHUNK);
	if (!o.buf)
		return 1;
	r = img_open(&o.map, ldir, IMG_PAGEMAP, t.pid, IMG_WRITE);
	if (r) {
		fprintf(stderr, "%s\n", o.map.err);
		return 1;
	}
	r = img_open(&o.pages, ldir, IMG_PAGES, t.pages_id, IMG_WRITE);
	if (r) {
		fprintf(stderr, "%s\n", o.pages.err);
		return 1;
	}
	head.pages_id = t.pages_id;
	r = img_write(&o.map, &head.base);
	for (size_t i = 0; !r && i < t.nr_runs; i++) {
		const struct lr_run *run = &t.runs[i];

		if (run->flags & PE_PRESENT)
			r = split(&o, &t, run);
		else
			r = emit(&o, run->vaddr, run->nr_pages, run->flags, 0);
	}
	if (img_close(&o.map) && !r)
		r = -EIO;
	if (img_close(&o.pages) && !r)
		r = -EIO;
	img_close(&ep);
	if (!r)
		r = rewrite_inventory(ldir, t.inv);
	if (r) {
		fprintf(stderr, "lazy-rst-mkimg: %s\n", strerror(-r));
		return 1;
	}
	printf("present %" PRIu64 " lazy %" PRIu64 "\n", o.present, o.lazy);
	free(o.buf);
	lr_free(&t);
	return 0;
}
