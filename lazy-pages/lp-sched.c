/*
 * Request scheduler of the lazy-pages daemon (see lp-sched.h): per address
 * space, sorted regions with a missing and an in-flight bitmap each. Owns the
 * rules "a fault is fetched once", "neighbours of recent faults stream
 * first", "a batch never crosses a region" (a region is one pagemap run,
 * hence inside one VMA, so one UFFDIO_COPY and one GET can cover it), and the
 * bookkeeping of REMAP/UNMAP/REMOVE and fork. No I/O, no logging.
 */
#include "lp-sched.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BPW 64U

static bool bm_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / BPW] >> (i % BPW) & 1;
}

static void bm_set(uint64_t *bm, uint64_t i)
{
	bm[i / BPW] |= 1ULL << (i % BPW);
}

static void bm_clear(uint64_t *bm, uint64_t i)
{
	bm[i / BPW] &= ~(1ULL << (i % BPW));
}

/* First index in [i, end) whose bit equals val, or end. */
static uint64_t bm_find(const uint64_t *bm, uint64_t i, uint64_t end, bool val)
{
	while (i < end) {
		uint64_t w = bm[i / BPW];

		if (!val)
			w = ~w;
		w &= ~0ULL << (i % BPW);
		if (w) {
			uint64_t r = (i & ~(uint64_t)(BPW - 1)) + (uint64_t)__builtin_ctzll(w);

			return r < end ? r : end;
		}
		i = (i & ~(uint64_t)(BPW - 1)) + BPW;
	}
	return end;
}

static uint64_t *bm_alloc(uint64_t nr)
{
	return calloc((nr + BPW - 1) / BPW, sizeof(uint64_t));
}

static uint64_t reg_end(const struct lp_region *r)
{
	return r->start + r->nr * LP_PAGE;
}

void lp_mm_init(struct lp_mm *mm)
{
	memset(mm, 0, sizeof(*mm));
}

static void reg_free(struct lp_region *r)
{
	free(r->missing);
	free(r->inflight);
	r->missing = r->inflight = NULL;
}

void lp_mm_fini(struct lp_mm *mm)
{
	if (!mm)
		return;
	for (size_t i = 0; i < mm->nr_regs; i++)
		reg_free(&mm->regs[i]);
	free(mm->regs);
	lp_mm_init(mm);
}

/* Index of the first region whose end lies above addr (nr_regs if none). */
static size_t reg_lower(const struct lp_mm *mm, uint64_t addr)
{
	size_t lo = 0, hi = mm->nr_regs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (reg_end(&mm->regs[mid]) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct lp_region *reg_find(const struct lp_mm *mm, uint64_t addr)
{
	size_t i = reg_lower(mm, addr);

	if (i < mm->nr_regs && mm->regs[i].start <= addr)
		return &mm->regs[i];
	return NULL;
}

static int reg_insert_at(struct lp_mm *mm, size_t pos, const struct lp_region *r)
{
	if (mm->nr_regs == mm->cap_regs) {
		size_t cap = mm->cap_regs ? mm->cap_regs * 2 : 16;
		struct lp_region *n = realloc(mm->regs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		mm->regs = n;
		mm->cap_regs = cap;
	}
	memmove(&mm->regs[pos + 1], &mm->regs[pos], (mm->nr_regs - pos) * sizeof(*r));
	mm->regs[pos] = *r;
	mm->nr_regs++;
	return 0;
}

static bool range_ok(uint64_t addr, uint64_t len)
{
	return addr % LP_PAGE == 0 && len % LP_PAGE == 0 && addr + len >= addr;
}

int lp_mm_add(struct lp_mm *mm, uint64_t vaddr, uint64_t nr_pages)
{
	struct lp_region r = { .start = vaddr, .src = vaddr, .nr = nr_pages };
	size_t pos;
	int ret;

	if (!nr_pages || nr_pages > UINT64_MAX / LP_PAGE || !range_ok(vaddr, nr_pages * LP_PAGE))
		return -EINVAL;
	pos = reg_lower(mm, vaddr);
	if (pos < mm->nr_regs && mm->regs[pos].start < vaddr + nr_pages * LP_PAGE)
		return -EEXIST;
	r.missing = bm_alloc(nr_pages);
	r.inflight = bm_alloc(nr_pages);
	if (!r.missing || !r.inflight) {
		reg_free(&r);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nr_pages; i++)
		bm_set(r.missing, i);
	ret = reg_insert_at(mm, pos, &r);
	if (ret) {
		reg_free(&r);
		return ret;
	}
	mm->nr_missing += nr_pages;
	mm->nr_total += nr_pages;
	return 0;
}

/* A copy of pages [first, first + nr) of r, as a region of its own. */
static int reg_slice(const struct lp_region *r, uint64_t first, uint64_t nr,
		     struct lp_region *ret)
{
	struct lp_region n = {
		.start = r->start + first * LP_PAGE,
		.src = r->src + first * LP_PAGE,
		.nr = nr,
	};

	n.missing = bm_alloc(nr);
	n.inflight = bm_alloc(nr);
	if (!n.missing || !n.inflight) {
		reg_free(&n);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nr; i++) {
		if (bm_test(r->missing, first + i))
			bm_set(n.missing, i);
		if (bm_test(r->inflight, first + i))
			bm_set(n.inflight, i);
	}
	*ret = n;
	return 0;
}

int lp_mm_clone(const struct lp_mm *from, struct lp_mm *ret)
{
	struct lp_mm mm;

	lp_mm_init(&mm);
	mm.regs = calloc(from->nr_regs ? from->nr_regs : 1, sizeof(*mm.regs));
	if (!mm.regs)
		return -ENOMEM;
	mm.cap_regs = from->nr_regs ? from->nr_regs : 1;
	for (size_t i = 0; i < from->nr_regs; i++) {
		const struct lp_region *r = &from->regs[i];
		struct lp_region *n = &mm.regs[i];

		if (reg_slice(r, 0, r->nr, n)) {
			lp_mm_fini(&mm);
			return -ENOMEM;
		}
		mm.nr_regs++;
		/* the child's copy of a page in flight to the parent is missing */
		for (uint64_t w = 0; w < (r->nr + BPW - 1) / BPW; w++) {
			n->missing[w] |= n->inflight[w];
			n->inflight[w] = 0;
		}
	}
	mm.nr_missing = from->nr_missing + from->nr_inflight;
	mm.nr_total = mm.nr_missing;
	memcpy(mm.hints, from->hints, sizeof(mm.hints));
	mm.nr_hints = from->nr_hints;
	mm.cursor = from->cursor;
	*ret = mm;
	return 0;
}

static void hint_push(struct lp_mm *mm, uint64_t addr)
{
	if (mm->nr_hints && mm->hints[mm->nr_hints - 1] == addr)
		return;
	if (mm->nr_hints == LP_NR_HINTS) {
		memmove(&mm->hints[0], &mm->hints[1], (LP_NR_HINTS - 1) * sizeof(mm->hints[0]));
		mm->nr_hints--;
	}
	mm->hints[mm->nr_hints++] = addr;
}

static void hint_remove(struct lp_mm *mm, unsigned int i)
{
	memmove(&mm->hints[i], &mm->hints[i + 1], (mm->nr_hints - i - 1) * sizeof(mm->hints[0]));
	mm->nr_hints--;
}

/* Take the missing pages [idx, idx + n) of r into flight and describe them. */
static void take(struct lp_mm *mm, struct lp_region *r, uint64_t idx, uint64_t max,
		 struct lp_run *ret)
{
	uint64_t lim = idx + max < r->nr ? idx + max : r->nr;
	uint64_t end = bm_find(r->missing, idx, lim, false);

	for (uint64_t i = idx; i < end; i++) {
		bm_clear(r->missing, i);
		bm_set(r->inflight, i);
	}
	mm->nr_missing -= end - idx;
	mm->nr_inflight += end - idx;
	ret->vaddr = r->start + idx * LP_PAGE;
	ret->src = r->src + idx * LP_PAGE;
	ret->nr = (uint32_t)(end - idx);
}

enum lp_fault_res lp_mm_fault(struct lp_mm *mm, uint64_t addr, uint32_t max_pages,
			      struct lp_run *ret)
{
	struct lp_region *r = reg_find(mm, addr);
	uint64_t idx;

	if (!r)
		return LP_FAULT_NONE;
	addr &= ~(LP_PAGE - 1);
	idx = (addr - r->start) / LP_PAGE;
	if (bm_test(r->inflight, idx)) {
		hint_push(mm, addr);
		return LP_FAULT_INFLIGHT;
	}
	if (!bm_test(r->missing, idx))
		return LP_FAULT_NONE;
	take(mm, r, idx, max_pages ? max_pages : 1, ret);
	hint_push(mm, addr);
	return LP_FAULT_FETCH;
}

static bool batch_from_hint(struct lp_mm *mm, uint32_t max_pages, struct lp_run *ret)
{
	while (mm->nr_hints) {
		unsigned int h = mm->nr_hints - 1;
		struct lp_region *r = reg_find(mm, mm->hints[h]);

		if (r) {
			uint64_t idx = (mm->hints[h] - r->start) / LP_PAGE + 1;
			uint64_t lim = idx + max_pages < r->nr ? idx + max_pages : r->nr;
			uint64_t first = bm_find(r->missing, idx, lim, true);

			if (first < lim) {
				take(mm, r, first, max_pages, ret);
				/* the next batch continues after this one */
				mm->hints[h] = ret->vaddr + (ret->nr - 1) * LP_PAGE;
				return true;
			}
		}
		hint_remove(mm, h);
	}
	return false;
}

static bool batch_in_order(struct lp_mm *mm, uint32_t max_pages, struct lp_run *ret)
{
	for (int pass = 0; pass < 2; pass++) {
		uint64_t from = pass ? 0 : mm->cursor;

		for (size_t i = reg_lower(mm, from); i < mm->nr_regs; i++) {
			struct lp_region *r = &mm->regs[i];
			uint64_t idx = from > r->start ? (from - r->start) / LP_PAGE : 0;
			uint64_t first = bm_find(r->missing, idx, r->nr, true);

			if (first < r->nr) {
				take(mm, r, first, max_pages, ret);
				mm->cursor = ret->vaddr + ret->nr * LP_PAGE;
				return true;
			}
		}
	}
	return false;
}

bool lp_mm_next_batch(struct lp_mm *mm, uint32_t max_pages, struct lp_run *ret)
{
	if (!mm->nr_missing)
		return false;
	if (!max_pages)
		max_pages = 1;
	if (batch_from_hint(mm, max_pages, ret))
		return true;
	return batch_in_order(mm, max_pages, ret);
}

/* Call fn on every (region, first index, end index) overlapping [start, end). */
#define for_each_overlap(mm, s, e, r, a, b)                                                        \
	for (size_t _i = reg_lower(mm, s); _i < (mm)->nr_regs && (mm)->regs[_i].start < (e); _i++) \
		for (int _once = 1; _once;)                                                        \
			for (r = &(mm)->regs[_i],                                                  \
			    a = (s) > r->start ? ((s) - r->start) / LP_PAGE : 0,                    \
			    b = (e) < reg_end(r) ? ((e) - r->start + LP_PAGE - 1) / LP_PAGE : r->nr; \
			     _once; _once = 0)

void lp_mm_received(struct lp_mm *mm, uint64_t vaddr, uint32_t nr)
{
	uint64_t end = vaddr + (uint64_t)nr * LP_PAGE, a, b;
	struct lp_region *r;

	for_each_overlap(mm, vaddr, end, r, a, b) {
		for (uint64_t i = a; i < b; i++) {
			if (bm_test(r->inflight, i)) {
				bm_clear(r->inflight, i);
				mm->nr_inflight--;
			}
		}
	}
}

void lp_mm_requeue(struct lp_mm *mm, uint64_t vaddr, uint32_t nr)
{
	uint64_t end = vaddr + (uint64_t)nr * LP_PAGE, a, b;
	struct lp_region *r;

	for_each_overlap(mm, vaddr, end, r, a, b) {
		for (uint64_t i = a; i < b; i++) {
			if (bm_test(r->inflight, i)) {
				bm_clear(r->inflight, i);
				bm_set(r->missing, i);
				mm->nr_inflight--;
				mm->nr_missing++;
			}
		}
	}
}

uint32_t lp_mm_count_inflight(const struct lp_mm *mm, uint64_t vaddr, uint32_t nr)
{
	uint64_t end = vaddr + (uint64_t)nr * LP_PAGE, a, b;
	struct lp_region *r;
	uint32_t n = 0;

	for_each_overlap(mm, vaddr, end, r, a, b) {
		for (uint64_t i = a; i < b; i++)
			n += bm_test(r->inflight, i);
	}
	return n;
}

void lp_mm_drop(struct lp_mm *mm, uint64_t start, uint64_t end)
{
	struct lp_region *r;
	uint64_t a, b;

	start &= ~(LP_PAGE - 1);
	if (end <= start)
		return;
	for_each_overlap(mm, start, end, r, a, b) {
		for (uint64_t i = a; i < b; i++) {
			if (bm_test(r->inflight, i)) {
				bm_clear(r->inflight, i);
				mm->nr_inflight--;
			}
			if (bm_test(r->missing, i)) {
				bm_clear(r->missing, i);
				mm->nr_missing--;
			}
		}
	}
}

/* Make addr a region boundary: split the region that strictly contains it. */
static int split_at(struct lp_mm *mm, uint64_t addr)
{
	size_t i = reg_lower(mm, addr);
	struct lp_region *r, right;
	uint64_t k;
	int ret;

	if (i == mm->nr_regs || mm->regs[i].start >= addr)
		return 0;
	r = &mm->regs[i];
	k = (addr - r->start) / LP_PAGE;
	ret = reg_slice(r, k, r->nr - k, &right);
	if (ret)
		return ret;
	/* the left part keeps its bitmaps; bits past nr are never looked at */
	for (uint64_t j = k; j < r->nr; j++) {
		bm_clear(r->missing, j);
		bm_clear(r->inflight, j);
	}
	r->nr = k;
	ret = reg_insert_at(mm, i + 1, &right);
	if (ret)
		reg_free(&right);
	return ret;
}

static int reg_cmp(const void *a, const void *b)
{
	const struct lp_region *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

int lp_mm_remap(struct lp_mm *mm, uint64_t from, uint64_t to, uint64_t len)
{
	uint64_t a, b, delta = to - from;
	struct lp_region *r;
	size_t i, j;
	int ret;

	if (!len || !range_ok(from, len) || !range_ok(to, len))
		return -EINVAL;
	if (from < to + len && to < from + len)
		return -EINVAL;
	/* the destination was unmapped by the move: nothing pending there survives */
	lp_mm_drop(mm, to, to + len);
	ret = split_at(mm, from);
	if (!ret)
		ret = split_at(mm, from + len);
	if (!ret)
		ret = split_at(mm, to);
	if (!ret)
		ret = split_at(mm, to + len);
	if (ret)
		return ret;
	for_each_overlap(mm, from, from + len, r, a, b) {
		for (uint64_t k = a; k < b; k++) {
			if (bm_test(r->inflight, k)) {
				bm_clear(r->inflight, k);
				bm_set(r->missing, k);
				mm->nr_inflight--;
				mm->nr_missing++;
			}
		}
		r->start += delta;
	}
	/* forget regions with nothing pending, which may overlap the moved ones */
	for (i = 0, j = 0; i < mm->nr_regs; i++) {
		r = &mm->regs[i];
		if (bm_find(r->missing, 0, r->nr, true) == r->nr &&
		    bm_find(r->inflight, 0, r->nr, true) == r->nr) {
			reg_free(r);
			continue;
		}
		mm->regs[j++] = *r;
	}
	mm->nr_regs = j;
	qsort(mm->regs, mm->nr_regs, sizeof(*mm->regs), reg_cmp);
	return 0;
}

bool lp_mm_is_missing(const struct lp_mm *mm, uint64_t addr)
{
	struct lp_region *r = reg_find(mm, addr);

	return r && bm_test(r->missing, (addr - r->start) / LP_PAGE);
}

bool lp_mm_is_inflight(const struct lp_mm *mm, uint64_t addr)
{
	struct lp_region *r = reg_find(mm, addr);

	return r && bm_test(r->inflight, (addr - r->start) / LP_PAGE);
}

bool lp_mm_src(const struct lp_mm *mm, uint64_t addr, uint64_t *ret_src)
{
	struct lp_region *r = reg_find(mm, addr);

	if (!r)
		return false;
	*ret_src = r->src + (addr & ~(LP_PAGE - 1)) - r->start;
	return true;
}
