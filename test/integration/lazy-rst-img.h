/*
 * Image reading shared by the lazy-restore test tools (lazy-rst-mkimg,
 * lazy-rst-daemon): the root pid of a directory, its VMAs and its pagemap
 * runs with, for PRESENT runs, the index of their first page in the pages
 * image. Test code: errors are printed to stderr.
 */
#ifndef RELIVE_TEST_LAZY_RST_IMG_H
#define RELIVE_TEST_LAZY_RST_IMG_H

#include <stddef.h>
#include <stdint.h>

#include "img.h"

struct lr_run {
	uint64_t vaddr;
	uint64_t nr_pages;
	uint32_t flags;
	uint64_t page; /* PRESENT: index of the first page in the pages image */
};

struct lr_task {
	InventoryEntry *inv;
	MmEntry *mm;
	uint32_t pid;
	uint32_t pages_id;
	struct lr_run *runs;
	size_t nr_runs;
};

int lr_load(int dirfd, const char *dir, struct lr_task *t);
void lr_free(struct lr_task *t);
/* The run containing vaddr, or NULL. */
const struct lr_run *lr_find(const struct lr_task *t, uint64_t vaddr);

#endif
