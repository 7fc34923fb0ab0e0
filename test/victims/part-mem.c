/*
 * The memory part of the victims: --mib N spread over every kind of mapping
 * an ordinary glibc program has (anonymous private rw and read-only, file
 * private with clean and written pages, file shared, shared anonymous, heap
 * through big and small malloc, stack, .data/.bss, a PROT_NONE guard) plus
 * the vdso. Each 8-byte word holds a mix of its own address (or, for clean
 * file pages, its file offset) and a per-region seed, so a page at a wrong
 * address fails as surely as a page with wrong content. The check also
 * compares each region's VMA (permissions, backing file) with what was set
 * up, that the shared file mapping is still the file's page cache, that
 * malloc/brk still work and that the vdso clock agrees with the syscall.
 */
#include "victim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

enum fill { FILL_ADDR, FILL_FILE_ODD_WRITTEN };

struct region {
	const char *name;
	uint64_t *addr;
	size_t len;
	uint64_t seed;
	uint64_t seed2;		/* FILL_FILE_ODD_WRITTEN: seed of the written (odd) pages */
	enum fill fill;
	const char *perms;	/* expected in /proc/self/maps */
	const char *file;	/* expected backing file name, NULL: not checked */
};

struct heap_node {
	struct heap_node *next;
	size_t words;
	uint64_t data[];
};

#define MAX_REGIONS 12
static struct region regions[MAX_REGIONS];
static int nr_regions;
static struct heap_node *heap_list;
static size_t heap_nodes;
static int shared_fd = -1;
static char shared_path[PATH_MAX];

static uint64_t bss_area[64 * 1024 / 8];
static uint64_t data_area[16 * 1024 / 8] = { 1, 2, 3 };

static size_t round_pages(size_t n)
{
	n = (n + PAGE - 1) & ~(PAGE - 1);
	return n ? n : PAGE;
}

static void fill_words(uint64_t *p, size_t words, uint64_t seed)
{
	for (size_t i = 0; i < words; i++)
		p[i] = victim_mix((uint64_t)(uintptr_t)&p[i], seed);
}

/* First wrong word in [p, p + words), or NULL. */
static uint64_t *bad_word(uint64_t *p, size_t words, uint64_t seed)
{
	for (size_t i = 0; i < words; i++)
		if (p[i] != victim_mix((uint64_t)(uintptr_t)&p[i], seed))
			return &p[i];
	return NULL;
}

static struct region *add_region(const char *name, void *addr, size_t len, uint64_t seed,
				 const char *perms, const char *file)
{
	struct region *r = &regions[nr_regions++];

	*r = (struct region){ .name = name, .addr = addr, .len = len, .seed = seed,
			      .fill = FILL_ADDR, .perms = perms, .file = file };
	return r;
}

static int map_anon(const char *name, size_t len, int shared, const char *perms, uint64_t seed,
		    char *err, size_t elen)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return victim_fail(err, elen, "mmap %s of %zu bytes: %s", name, len,
				   strerror(errno));
	fill_words(p, len / 8, seed);
	if (perms[1] == '-' && mprotect(p, len, PROT_READ))
		return victim_fail(err, elen, "mprotect %s at %p: %s", name, p, strerror(errno));
	add_region(name, p, len, seed, perms, NULL);
	return 0;
}

/* A file whose word at offset o is mix(o, seed), then mapped private; odd pages rewritten. */
static int map_file_private(struct victim_ctx *ctx, size_t len, char *err, size_t elen)
{
	static char path[PATH_MAX];
	uint64_t buf[PAGE / 8];
	struct region *r;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/mem-private.dat", ctx->workdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return victim_fail(err, elen, "open %s: %s", path, strerror(errno));
	for (size_t off = 0; off < len; off += PAGE) {
		for (size_t i = 0; i < PAGE / 8; i++)
			buf[i] = victim_mix(off + i * 8, 0xf11e);
		if (pwrite(fd, buf, PAGE, off) != PAGE) {
			close(fd);
			return victim_fail(err, elen, "write %s: %s", path, strerror(errno));
		}
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return victim_fail(err, elen, "mmap private %s: %s", path, strerror(errno));
	for (size_t off = PAGE; off < len; off += 2 * PAGE)
		fill_words((uint64_t *)((char *)p + off), PAGE / 8, 0xc0de);
	r = add_region("file-private", p, len, 0xf11e, "rw-p", path);
	r->fill = FILL_FILE_ODD_WRITTEN;
	r->seed2 = 0xc0de;
	return 0;
}

static int map_file_shared(struct victim_ctx *ctx, size_t len, char *err, size_t elen)
{
	void *p;

	snprintf(shared_path, sizeof(shared_path), "%s/mem-shared.dat", ctx->workdir);
	shared_fd = open(shared_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (shared_fd < 0)
		return victim_fail(err, elen, "open %s: %s", shared_path, strerror(errno));
	if (ftruncate(shared_fd, len))
		return victim_fail(err, elen, "ftruncate %s: %s", shared_path, strerror(errno));
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
	if (p == MAP_FAILED)
		return victim_fail(err, elen, "mmap shared %s: %s", shared_path, strerror(errno));
	fill_words(p, len / 8, 0x5a5e);
	add_region("file-shared", p, len, 0x5a5e, "rw-s", shared_path);
	return 0;
}

static int setup_heap(size_t big, size_t small, char *err, size_t elen)
{
	struct heap_node **tail = &heap_list;
	uint64_t *b = malloc(big);
	size_t used = 0;

	if (!b)
		return victim_fail(err, elen, "malloc(%zu) failed", big);
	fill_words(b, big / 8, 0xb16);
	add_region("heap-big", b, big, 0xb16, "rw-p", NULL);
	/* Sizes from 16 to ~2 KiB: all from the brk heap, never mmap'd by malloc. */
	while (used < small) {
		size_t words = 2 + (heap_nodes * 37) % 250;
		struct heap_node *n = malloc(sizeof(*n) + words * 8);

		if (!n)
			return victim_fail(err, elen, "malloc of heap node %zu failed", heap_nodes);
		n->next = NULL;
		n->words = words;
		fill_words(n->data, words, 0x5a11);
		*tail = n;
		tail = &n->next;
		used += sizeof(*n) + words * 8;
		heap_nodes++;
	}
	return 0;
}

static int mem_setup(struct victim_ctx *ctx, char *err, size_t elen)
{
	size_t total = (size_t)ctx->mib << 20;
	void *guard;

	if (map_anon("anon-private", round_pages(total / 100 * 40), 0, "rw-p", 0xa17, err, elen) ||
	    map_anon("anon-readonly", round_pages(total / 100 * 2), 0, "r--p", 0x20, err, elen) ||
	    map_anon("anon-shared", round_pages(total / 100 * 13), 1, "rw-s", 0x5a, err, elen) ||
	    map_file_private(ctx, round_pages(total / 100 * 15), err, elen) ||
	    map_file_shared(ctx, round_pages(total / 100 * 15), err, elen) ||
	    setup_heap(round_pages(total / 100 * 10), total / 100 * 5, err, elen))
		return -1;
	guard = mmap(NULL, 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard == MAP_FAILED)
		return victim_fail(err, elen, "mmap guard: %s", strerror(errno));
	add_region("guard", guard, 2 * PAGE, 0, "---p", NULL);
	fill_words(ctx->stack_area, ctx->stack_size / 8, 0x57ac);
	add_region("stack", ctx->stack_area, ctx->stack_size, 0x57ac, "rw-p", "[stack]");
	fill_words(bss_area, sizeof(bss_area) / 8, 0xb55);
	add_region("bss", bss_area, sizeof(bss_area), 0xb55, NULL, NULL);
	fill_words(data_area, sizeof(data_area) / 8, 0xda7a);
	add_region("data", data_area, sizeof(data_area), 0xda7a, NULL, NULL);
	printf("mem: %lu MiB in %d regions, %zu small heap nodes\n", ctx->mib, nr_regions,
	       heap_nodes);
	return 0;
}

static int check_region(const struct region *r, char *err, size_t elen)
{
	char perms[5], path[PATH_MAX];
	uint64_t *bad = NULL;
	const char *base;

	if (victim_find_vma(r->addr, r->len, perms, path, sizeof(path)))
		return victim_fail(err, elen, "%s: no single VMA covers %p-%p", r->name,
				   (void *)r->addr, (void *)((char *)r->addr + r->len));
	if (r->perms && strcmp(perms, r->perms))
		return victim_fail(err, elen, "%s at %p: permissions %s, expected %s", r->name,
				   (void *)r->addr, perms, r->perms);
	base = r->file && r->file[0] == '/' && !strstr(r->file, "(deleted)") ? r->file : NULL;
	if ((base && strcmp(path, base)) || (r->file && !base && strcmp(path, r->file)))
		return victim_fail(err, elen, "%s at %p: mapped from '%s', expected '%s'", r->name,
				   (void *)r->addr, path, r->file);
	if (!strcmp(r->name, "guard"))
		return 0;
	if (r->fill == FILL_ADDR) {
		bad = bad_word(r->addr, r->len / 8, r->seed);
	} else {
		for (size_t off = 0; off < r->len && !bad; off += PAGE) {
			uint64_t *p = (uint64_t *)((char *)r->addr + off);

			if ((off / PAGE) & 1) {
				bad = bad_word(p, PAGE / 8, r->seed2);
				continue;
			}
			for (size_t i = 0; i < PAGE / 8; i++) {
				if (p[i] != victim_mix(off + i * 8, r->seed)) {
					bad = &p[i];
					break;
				}
			}
		}
	}
	if (bad)
		return victim_fail(err, elen, "%s: wrong word 0x%016" PRIx64 " at %p (region %p+%zu)",
				   r->name, *bad, (void *)bad, (void *)r->addr, r->len);
	return 0;
}

/* Writes through the mapping must reach the file, and writes to the file the mapping. */
static int check_shared_file(const struct region *r, char *err, size_t elen)
{
	uint64_t v = 0x1234567890abcdefULL, got = 0, old = r->addr[1];

	r->addr[1] = v;
	if (pread(shared_fd, &got, 8, 8) != 8 || got != v)
		return victim_fail(err, elen, "file-shared: store at %p not seen in %s (read 0x%"
				   PRIx64 ")", (void *)&r->addr[1], shared_path, got);
	if (pwrite(shared_fd, &old, 8, 8) != 8)
		return victim_fail(err, elen, "pwrite %s: %s", shared_path, strerror(errno));
	if (r->addr[1] != old)
		return victim_fail(err, elen, "file-shared: write to %s not seen at %p",
				   shared_path, (void *)&r->addr[1]);
	return 0;
}

static int check_heap(char *err, size_t elen)
{
	char perms[5], path[PATH_MAX];
	size_t n = 0;
	void *fresh[256];

	for (struct heap_node *h = heap_list; h; h = h->next, n++) {
		uint64_t *bad = bad_word(h->data, h->words, 0x5a11);

		if (bad)
			return victim_fail(err, elen, "heap node %zu at %p: wrong word at %p", n,
					   (void *)h, (void *)bad);
	}
	if (n != heap_nodes)
		return victim_fail(err, elen, "heap list has %zu nodes, expected %zu", n,
				   heap_nodes);
	if (heap_list && (victim_find_vma(heap_list, 16, perms, path, sizeof(path)) ||
			  strcmp(path, "[heap]")))
		return victim_fail(err, elen, "first heap node %p is not in [heap]",
				   (void *)heap_list);
	/* The allocator must still work, brk included. */
	for (int i = 0; i < 256; i++) {
		fresh[i] = malloc(4096 + i * 64);
		if (!fresh[i])
			return victim_fail(err, elen, "malloc after restore failed");
		memset(fresh[i], i, 4096 + i * 64);
	}
	for (int i = 0; i < 256; i++)
		free(fresh[i]);
	return 0;
}

static int64_t ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* The vdso is where the auxv says, and its clocks agree with the syscalls. */
static int check_vdso(char *err, size_t elen)
{
	unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
	static const clockid_t clocks[] = { CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME };
	char perms[5], path[PATH_MAX];

	if (!vdso || victim_find_vma((void *)vdso, PAGE, perms, path, sizeof(path)) ||
	    strcmp(path, "[vdso]"))
		return victim_fail(err, elen, "AT_SYSINFO_EHDR %#lx is not the [vdso] mapping",
				   vdso);
	for (unsigned i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
		struct timespec a, b, c;

		if (clock_gettime(clocks[i], &a) || syscall(SYS_clock_gettime, clocks[i], &b) ||
		    clock_gettime(clocks[i], &c))
			return victim_fail(err, elen, "clock_gettime(%d): %s", clocks[i],
					   strerror(errno));
		if (ns(&a) > ns(&b) || ns(&b) > ns(&c) || ns(&c) - ns(&a) > 100000000LL)
			return victim_fail(err, elen, "vdso clock %d disagrees with the syscall: "
					   "%" PRId64 " / %" PRId64 " / %" PRId64 " ns", clocks[i],
					   ns(&a), ns(&b), ns(&c));
	}
	return 0;
}

static int mem_check(struct victim_ctx *ctx, char *err, size_t elen)
{
	for (int i = 0; i < nr_regions; i++) {
		if (check_region(&regions[i], err, elen))
			return -1;
		if (!strcmp(regions[i].name, "file-shared") &&
		    check_shared_file(&regions[i], err, elen))
			return -1;
	}
	return check_heap(err, elen) || check_vdso(err, elen) ? -1 : 0;
}

const struct victim_part victim_part_mem = {
	.name = "mem",
	.setup = mem_setup,
	.check = mem_check,
};
