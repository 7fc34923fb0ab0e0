/*
 * Image reading for the lazy-restore test tools (see lazy-rst-img.h).
 */
#include "lazy-rst-img.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_one(int dirfd, const char *dir, enum img_kind kind, uint32_t id,
		    ProtobufCMessage **ret)
{
	struct img img;
	int r = img_open(&img, dirfd, kind, id, IMG_READ);

	if (!r)
		r = img_read_one(&img, ret);
	if (r)
		fprintf(stderr, "%s: %s\n", dir, img.err);
	img_close(&img);
	return r;
}

int lr_load(int dirfd, const char *dir, struct lr_task *t)
{
	ProtobufCMessage *msg;
	struct img img;
	uint64_t page = 0;
	size_t cap = 0;
	int r;

	memset(t, 0, sizeof(*t));
	r = read_one(dirfd, dir, IMG_INVENTORY, 0, (ProtobufCMessage **)&t->inv);
	if (r)
		return r;
	t->pid = t->inv->root_pid;
	r = read_one(dirfd, dir, IMG_MM, t->pid, (ProtobufCMessage **)&t->mm);
	if (r)
		return r;
	r = img_open(&img, dirfd, IMG_PAGEMAP, t->pid, IMG_READ);
	if (!r)
		r = img_read(&img, &msg) == 1 ? 0 : -EINVAL;
	if (r) {
		fprintf(stderr, "%s: %s\n", dir, img.err);
		img_close(&img);
		return r;
	}
	t->pages_id = ((PagemapHead *)msg)->pages_id;
	img_msg_free(msg);
	while ((r = img_read(&img, &msg)) > 0) {
		PagemapEntry *pe = (PagemapEntry *)msg;

		if (t->nr_runs == cap) {
			struct lr_run *n = realloc(t->runs, (cap ? cap * 2 : 64) * sizeof(*n));

			if (!n) {
				img_msg_free(msg);
				r = -ENOMEM;
				break;
			}
			t->runs = n;
			cap = cap ? cap * 2 : 64;
		}
		t->runs[t->nr_runs] = (struct lr_run){ pe->vaddr, pe->nr_pages, pe->flags, page };
		if (pe->flags & PE_PRESENT)
			page += pe->nr_pages;
		t->nr_runs++;
		img_msg_free(msg);
	}
	if (r < 0)
		fprintf(stderr, "%s: %s\n", dir, img.err[0] ? img.err : strerror(-r));
	img_close(&img);
	return r;
}

void lr_free(struct lr_task *t)
{
	img_msg_free((ProtobufCMessage *)t->inv);
	img_msg_free((ProtobufCMessage *)t->mm);
	free(t->runs);
	memset(t, 0, sizeof(*t));
}

const struct lr_run *lr_find(const struct lr_task *t, uint64_t vaddr)
{
	size_t lo = 0, hi = t->nr_runs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const struct lr_run *r = &t->runs[mid];

		if (vaddr < r->vaddr)
			hi = mid;
		else if (vaddr >= r->vaddr + r->nr_pages * IMG_PAGE_SIZE)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}
