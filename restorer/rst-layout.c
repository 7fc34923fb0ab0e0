/*
 * Pure address-space logic of restore: validation of the dumped VMAs and
 * pagemap runs, placement of the restorer area in a gap, parsing of
 * /proc/self/maps, the vdso move plan, the merge of page runs into large
 * preads and, for a lazy restore, the VMAs to register with the userfaultfd
 * and the uffd features to ask for. No syscalls and no logging: errors are
 * written into a buffer, so that every case can be unit-tested with plain
 * arrays.
 */
#include "rst.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>

#define PG IMG_PAGE_SIZE

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static bool is_special(uint32_t kind)
{
	return kind == VMA_KIND__VMA_VDSO || kind == VMA_KIND__VMA_VVAR ||
	       kind == VMA_KIND__VMA_VVAR_VCLOCK || kind == VMA_KIND__VMA_VSYSCALL;
}

/* Where a lazy run may lie: private anonymous memory the uffd can serve (MISSING). */
static bool lazy_kind_ok(const struct rst_vma *v)
{
	return (v->kind == VMA_KIND__VMA_ANON_PRIVATE || v->kind == VMA_KIND__VMA_HEAP ||
		v->kind == VMA_KIND__VMA_STACK) &&
	       !(v->flags & MAP_SHARED);
}

static const char *kind_name(uint32_t kind)
{
	static const char *const names[] = { "anonymous private", "anonymous shared",
					     "file private",	  "file shared",
					     "heap",		  "stack",
					     "vdso",		  "vvar",
					     "vvar_vclock",	  "vsyscall" };

	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "unknown";
}

static int check_vma(const struct rst_vma *v, size_t i, uint64_t prev_end, char *err, size_t len)
{
	if (v->kind > VMA_KIND__VMA_VSYSCALL)
		return fail(err, len, "vma %zu [0x%" PRIx64 "-0x%" PRIx64 "): unknown kind %u", i,
			    v->start, v->end, v->kind);
	if (v->start >= v->end)
		return fail(err, len, "vma %zu [0x%" PRIx64 "-0x%" PRIx64 "): start not below end",
			    i, v->start, v->end);
	if (v->start % PG || v->end % PG)
		return fail(err, len, "vma %zu [0x%" PRIx64 "-0x%" PRIx64 "): not page-aligned", i,
			    v->start, v->end);
	if (v->kind == VMA_KIND__VMA_VSYSCALL) {
		/* The one fixed legacy page: anything else is not a vsyscall VMA. */
		if (v->start != 0xffffffffff600000ULL || v->end != 0xffffffffff601000ULL)
			return fail(err, len,
				    "vma %zu [0x%" PRIx64 "-0x%" PRIx64
				    "): a vsyscall vma must be 0xffffffffff600000-0xffffffffff601000",
				    i, v->start, v->end);
		return 0;
	}
	if (v->end > RST_TASK_SIZE)
		return fail(err, len,
			    "vma %zu [0x%" PRIx64 "-0x%" PRIx64 "): beyond the user address space",
			    i, v->start, v->end);
	if (v->start < prev_end)
		return fail(err, len,
			    "vma %zu [0x%" PRIx64 "-0x%" PRIx64
			    "): overlaps or precedes the previous vma (ends at 0x%" PRIx64 ")",
			    i, v->start, v->end, prev_end);
	if ((v->kind == VMA_KIND__VMA_FILE_PRIVATE || v->kind == VMA_KIND__VMA_FILE_SHARED) &&
	    (!v->has_file || v->pgoff % PG))
		return fail(err, len,
			    "vma %zu [0x%" PRIx64 "-0x%" PRIx64
			    "): file mapping without a file or with an unaligned offset 0x%" PRIx64,
			    i, v->start, v->end, v->pgoff);
	return 0;
}

static int check_run(const struct rst_run *r, size_t i, uint64_t prev_end, bool lazy_ok,
		     char *err, size_t len)
{
	uint32_t kinds = r->flags & (PE_PRESENT | PE_LAZY | PE_ZERO);

	if (!r->nr_pages || r->vaddr % PG || r->nr_pages > RST_TASK_SIZE / PG ||
	    r->vaddr > RST_TASK_SIZE - r->nr_pages * PG)
		return fail(err, len,
			    "pagemap entry %zu (0x%" PRIx64 ", %" PRIu64
			    " pages): empty, unaligned or beyond the user address space",
			    i, r->vaddr, r->nr_pages);
	if (r->vaddr < prev_end)
		return fail(err, len,
			    "pagemap entry %zu (0x%" PRIx64 ", %" PRIu64
			    " pages): not sorted or overlaps the previous entry",
			    i, r->vaddr, r->nr_pages);
	if (r->flags != kinds || (kinds != PE_PRESENT && kinds != PE_LAZY && kinds != PE_ZERO))
		return fail(err, len, "pagemap entry %zu (0x%" PRIx64 "): bad flags 0x%x", i,
			    r->vaddr, r->flags);
	if (kinds == PE_LAZY && !lazy_ok)
		return fail(err, len,
			    "pagemap entry %zu (0x%" PRIx64
			    "): lazy pages in an eager restore (the dump was made with "
			    "--lazy-pages)",
			    i, r->vaddr);
	return 0;
}

int rst_check_layout(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		     bool lazy_ok, uint64_t *ret_present, char *err, size_t errlen)
{
	uint64_t prev = 0, present = 0;
	size_t vi = 0;
	int ret;

	for (size_t i = 0; i < nv; i++) {
		ret = check_vma(&v[i], i, prev, err, errlen);
		if (ret)
			return ret;
		if (v[i].kind != VMA_KIND__VMA_VSYSCALL)
			prev = v[i].end;
	}
	prev = 0;
	for (size_t i = 0; i < nr; i++) {
		uint64_t end;

		ret = check_run(&r[i], i, prev, lazy_ok, err, errlen);
		if (ret)
			return ret;
		end = r[i].vaddr + r[i].nr_pages * PG;
		/* Both lists are sorted: advance to the first VMA ending above the run. */
		while (vi < nv && v[vi].end <= r[i].vaddr)
			vi++;
		if (vi == nv || v[vi].start > r[i].vaddr)
			return fail(err, errlen,
				    "pagemap entry %zu (0x%" PRIx64 ", %" PRIu64
				    " pages): not inside a vma",
				    i, r[i].vaddr, r[i].nr_pages);
		/* A run may cover adjacent VMAs (the dumper merges them), never a hole. */
		for (size_t k = vi;; k++) {
			if (is_special(v[k].kind))
				return fail(err, errlen,
					    "pagemap entry %zu (0x%" PRIx64
					    "): pages inside a vdso/vvar/vsyscall vma",
					    i, r[i].vaddr);
			if ((r[i].flags & PE_LAZY) && !lazy_kind_ok(&v[k]))
				return fail(err, errlen,
					    "pagemap entry %zu (0x%" PRIx64 ", %" PRIu64
					    " pages): lazy pages in the %s vma at 0x%" PRIx64
					    "%s: only private anonymous memory can be lazy",
					    i, r[i].vaddr, r[i].nr_pages, kind_name(v[k].kind),
					    v[k].start,
					    (v[k].flags & MAP_SHARED) ? " (mapped MAP_SHARED)" : "");
			if (end <= v[k].end)
				break;
			if (k + 1 == nv || v[k + 1].start != v[k].end)
				return fail(err, errlen,
					    "pagemap entry %zu (0x%" PRIx64 ", %" PRIu64
					    " pages): runs past the vma ending at 0x%" PRIx64,
					    i, r[i].vaddr, r[i].nr_pages, v[k].end);
		}
		if (r[i].flags & PE_PRESENT)
			present += r[i].nr_pages;
		prev = end;
	}
	*ret_present = present;
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct rst_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

int rst_find_gap(struct rst_range *busy, size_t n, uint64_t size, uint64_t guard, uint64_t lo,
		 uint64_t hi, uint64_t *ret)
{
	uint64_t cur = lo;

	if (!size || size > hi || lo > hi - size)
		return -ENOMEM;
	if (n > 1)
		qsort(busy, n, sizeof(*busy), cmp_range);
	for (size_t i = 0; i < n; i++) {
		uint64_t s = busy[i].start > guard ? busy[i].start - guard : 0;
		uint64_t e = busy[i].end > UINT64_MAX - guard ? UINT64_MAX : busy[i].end + guard;

		if (e <= cur)
			continue;
		if (s >= cur && s - cur >= size)
			break;
		cur = e;
		if (cur > hi - size)
			return -ENOMEM;
	}
	if (cur > hi - size)
		return -ENOMEM;
	*ret = cur;
	return 0;
}

void rst_maps_fini(struct rst_maps *m)
{
	free(m->ranges);
	m->ranges = NULL;
	m->nr = 0;
}

static int maps_add(struct rst_maps *m, size_t *cap, uint64_t s, uint64_t e)
{
	if (m->nr == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct rst_range *nr = realloc(m->ranges, ncap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		m->ranges = nr;
		*cap = ncap;
	}
	m->ranges[m->nr].start = s;
	m->ranges[m->nr++].end = e;
	return 0;
}

int rst_parse_maps(const char *text, struct rst_maps *ret)
{
	struct rst_maps m = { 0 };
	const char *line = text;
	size_t cap = 0;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		unsigned long long s, e;
		char name[32] = "";
		int r;

		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s %31s", &s, &e, name) < 2 || s >= e) {
			rst_maps_fini(&m);
			return -EINVAL;
		}
		if (e <= RST_TASK_SIZE) {
			r = maps_add(&m, &cap, s, e);
			if (r) {
				rst_maps_fini(&m);
				return r;
			}
		}
		uint32_t kind = UINT32_MAX;
		if (!strcmp(name, "[vdso]"))
			kind = VMA_KIND__VMA_VDSO;
		else if (!strcmp(name, "[vvar]"))
			kind = VMA_KIND__VMA_VVAR;
		else if (!strcmp(name, "[vvar_vclock]"))
			kind = VMA_KIND__VMA_VVAR_VCLOCK;
		if (kind != UINT32_MAX) {
			if (m.nr_vdso == RST_MAX_VDSO) {
				rst_maps_fini(&m);
				return -EINVAL;
			}
			m.vdso[m.nr_vdso].start = s;
			m.vdso[m.nr_vdso].end = e;
			m.vdso_kind[m.nr_vdso++] = kind;
		}
		line = nl ? nl + 1 : NULL;
	}
	*ret = m;
	return 0;
}

static const char *special_name(uint32_t kind)
{
	switch (kind) {
	case VMA_KIND__VMA_VDSO:
		return "[vdso]";
	case VMA_KIND__VMA_VVAR:
		return "[vvar]";
	case VMA_KIND__VMA_VVAR_VCLOCK:
		return "[vvar_vclock]";
	default:
		return "?";
	}
}

int rst_plan_vdso(const struct rst_vma *v, size_t nv, const struct rst_maps *cur,
		  struct rst_blob_move *moves, uint32_t *ret_n, char *err, size_t errlen)
{
	const struct rst_vma *d[RST_MAX_VDSO];
	uint32_t n = 0;

	for (size_t i = 0; i < nv; i++) {
		if (v[i].kind != VMA_KIND__VMA_VDSO && v[i].kind != VMA_KIND__VMA_VVAR &&
		    v[i].kind != VMA_KIND__VMA_VVAR_VCLOCK)
			continue;
		if (n == RST_MAX_VDSO)
			return fail(err, errlen, "more than %d vdso/vvar vmas", RST_MAX_VDSO);
		d[n++] = &v[i];
	}
	if (n == 0) {
		*ret_n = 0; /* no vdso at dump time: the current one is simply unmapped */
		return 0;
	}
	if (n != cur->nr_vdso)
		return fail(err, errlen,
			    "vdso layout differs: %u vdso/vvar vmas at dump time, %u on this kernel",
			    n, cur->nr_vdso);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t dlen = d[i]->end - d[i]->start;
		uint64_t clen = cur->vdso[i].end - cur->vdso[i].start;

		if (d[i]->kind != cur->vdso_kind[i] || dlen != clen ||
		    d[i]->start - d[0]->start != cur->vdso[i].start - cur->vdso[0].start)
			return fail(err, errlen,
				    "vdso layout differs: dumped %s of 0x%" PRIx64
				    " bytes at +0x%" PRIx64 ", this kernel has %s of 0x%" PRIx64
				    " bytes at +0x%" PRIx64 " (a different kernel?)",
				    special_name(d[i]->kind), dlen, d[i]->start - d[0]->start,
				    special_name(cur->vdso_kind[i]), clen,
				    cur->vdso[i].start - cur->vdso[0].start);
		moves[i].cur = cur->vdso[i].start;
		moves[i].dst = d[i]->start;
		moves[i].len = dlen;
	}
	*ret_n = n;
	return 0;
}

uint64_t rst_madv_bits(uint64_t m)
{
	static const struct {
		uint64_t bit;
		int advice;
	} map[] = {
		{ VMA_MADV_DONTFORK, MADV_DONTFORK },	  { VMA_MADV_DONTDUMP, MADV_DONTDUMP },
		{ VMA_MADV_HUGEPAGE, MADV_HUGEPAGE },	  { VMA_MADV_NOHUGEPAGE, MADV_NOHUGEPAGE },
		{ VMA_MADV_MERGEABLE, MADV_MERGEABLE },	  { VMA_MADV_WIPEONFORK, MADV_WIPEONFORK },
		{ VMA_MADV_SEQUENTIAL, MADV_SEQUENTIAL }, { VMA_MADV_RANDOM, MADV_RANDOM },
	};
	uint64_t out = 0;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (m & map[i].bit)
			out |= 1ULL << map[i].advice;
	if (m & VMA_LOCKED)
		out |= RST_VMA_MLOCK;
	return out;
}

size_t rst_lazy_ranges(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		       struct rst_blob_range *out)
{
	size_t n = 0, vi = 0;

	for (size_t i = 0; i < nr; i++) {
		uint64_t end = r[i].vaddr + r[i].nr_pages * PG;

		if (!(r[i].flags & PE_LAZY))
			continue;
		while (vi < nv && v[vi].end <= r[i].vaddr)
			vi++;
		/* A run may span adjacent VMAs: each one it touches is registered once. */
		for (size_t k = vi; k < nv && v[k].start < end; k++) {
			if (n && out[n - 1].start == v[k].start)
				continue;
			out[n].start = v[k].start;
			out[n++].end = v[k].end;
		}
	}
	return n;
}

uint64_t rst_lazy_features(uint64_t supported)
{
	const uint64_t want = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
			      UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
			      UFFD_FEATURE_THREAD_ID;

	return want & supported;
}

size_t rst_build_runs(const struct rst_vma *v, size_t nv, const struct rst_run *r, size_t nr,
		      struct rst_blob_run *out, bool *filled)
{
	uint64_t page = 0;
	size_t n = 0, vi = 0;

	for (size_t i = 0; i < nv; i++)
		filled[i] = false;
	for (size_t i = 0; i < nr; i++) {
		uint64_t len = r[i].nr_pages * PG, off = img_pages_offset(page);

		if (!(r[i].flags & PE_PRESENT))
			continue;
		page += r[i].nr_pages;
		while (vi < nv && v[vi].end <= r[i].vaddr)
			vi++;
		/* Pages of a shared file mapping are in the file: writing them is a no-op at best. */
		if (vi < nv && v[vi].kind == VMA_KIND__VMA_FILE_SHARED)
			continue;
		for (size_t k = vi; k < nv && v[k].start < r[i].vaddr + len; k++)
			filled[k] = true;
		if (n && out[n - 1].vaddr + out[n - 1].len == r[i].vaddr &&
		    out[n - 1].off + out[n - 1].len == off) {
			out[n - 1].len += len;
			continue;
		}
		out[n].vaddr = r[i].vaddr;
		out[n].len = len;
		out[n++].off = off;
	}
	return n;
}
