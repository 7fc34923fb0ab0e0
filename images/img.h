/*
 * The on-disk image format, and the only code that touches image bytes.
 *
 * Every image file starts with a header {u32 magic; u32 version} (per-kind
 * magic, IMG_FORMAT_VERSION). Message images then hold entries of
 * {u32 length (little-endian) | protobuf bytes}. The pages image pads its
 * header to a whole page and then holds raw page data, page-aligned, so it
 * can be spliced, read or mapped in large runs.
 *
 * The caller owns a struct img (embedded, no allocation behind its back).
 * Functions return 0 / -errno; on error img->err holds one line naming the
 * file, the byte offset and what was expected. This module never logs.
 */
#ifndef RELIVE_IMAGES_IMG_H
#define RELIVE_IMAGES_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "core.pb-c.h"
#include "fdinfo.pb-c.h"
#include "files.pb-c.h"
#include "inventory.pb-c.h"
#include "locks.pb-c.h"
#include "mm.pb-c.h"
#include "pagemap.pb-c.h"
#include "pstree.pb-c.h"
#include "stats.pb-c.h"
#include "task.pb-c.h"

#define IMG_FORMAT_VERSION 1
/* No single entry may be larger than this: a bigger length is corruption. */
#define IMG_MAX_ENTRY (16U << 20)
#define IMG_PAGE_SIZE 4096U
#define IMG_SESSION_TOKEN_LEN 32

/* inventory_entry.flags */
#define INV_FLAG_LAZY (1U << 0)
#define INV_FLAG_LEAVE_RUNNING (1U << 1)
#define INV_FLAG_PIDNS (1U << 2)

/* pagemap_entry.flags */
#define PE_PRESENT (1U << 0) /* data in the pages image */
#define PE_LAZY (1U << 1) /* data served by the page server */
#define PE_ZERO (1U << 2) /* known to be zero: nothing to fetch */

/* vma_entry.madv: VmFlags from smaps that restore re-applies with madvise */
#define VMA_MADV_DONTFORK (1ULL << 0)
#define VMA_MADV_DONTDUMP (1ULL << 1)
#define VMA_MADV_HUGEPAGE (1ULL << 2)
#define VMA_MADV_NOHUGEPAGE (1ULL << 3)
#define VMA_MADV_MERGEABLE (1ULL << 4)
#define VMA_MADV_WIPEONFORK (1ULL << 5)
#define VMA_MADV_SEQUENTIAL (1ULL << 6)
#define VMA_MADV_RANDOM (1ULL << 7)
#define VMA_LOCKED (1ULL << 8)
#define VMA_GROWSDOWN (1ULL << 9)

enum img_kind {
	IMG_INVENTORY,
	IMG_PSTREE,
	IMG_CORE,
	IMG_TASK,
	IMG_MM,
	IMG_PAGEMAP,
	IMG_PAGES,
	IMG_FILES,
	IMG_FDINFO,
	IMG_STATS_DUMP,
	IMG_STATS_RESTORE,
	IMG_FILE_LOCKS,
	IMG_KIND_MAX,
};

struct img_kind_desc {
	const char *name; /* "core" */
	const char *file_fmt; /* "core-%u.img" or "inventory.img" */
	uint32_t magic;
	bool per_id; /* file name carries an id (pid, tid, pages id) */
	/* message type of every entry; NULL for the raw pages image */
	const ProtobufCMessageDescriptor *msg;
	/* pagemap: type of the first entry, which differs from the rest */
	const ProtobufCMessageDescriptor *head;
};

const struct img_kind_desc *img_kind_desc(enum img_kind kind);
/* Which kind has this magic; -ENOENT if none. */
int img_kind_by_magic(uint32_t magic, enum img_kind *ret);

enum img_mode { IMG_READ, IMG_WRITE };

struct img {
	int fd;
	enum img_kind kind;
	enum img_mode mode;
	uint32_t id;
	uint64_t off; /* file offset of the next byte read or written */
	uint64_t nr_entries;
	char name[256];
	char err[512];
	/* write buffer */
	uint8_t *wbuf;
	size_t wlen;
};

/* Open DIRFD/<file of kind and id> for reading or writing (0600, truncated). */
int img_open(struct img *img, int dirfd, enum img_kind kind, uint32_t id, enum img_mode mode);
/* Open any image file by path for reading; its kind comes from the magic. */
int img_open_path(struct img *img, const char *path);
/* Flush, fsync (when writing) and close. Returns the first write error. */
int img_close(struct img *img);

/*
 * Read the next entry. Returns 1 with *ret_msg set, 0 at a clean end of file,
 * or -errno (img->err says why). The first entry of a pagemap image is a
 * PagemapHead, the rest PagemapEntry. Free the message with img_msg_free().
 */
int img_read(struct img *img, ProtobufCMessage **ret_msg);
/* Read exactly one entry, as for single-entry images (inventory, mm, ...). */
int img_read_one(struct img *img, ProtobufCMessage **ret_msg);
void img_msg_free(ProtobufCMessage *msg);

int img_write(struct img *img, const ProtobufCMessage *msg);

/*
 * Raw pages images: after img_open, pages follow the one-page header.
 * img_pages_fd() gives the descriptor for splice/pread/mmap; page N of the
 * image lies at img_pages_offset(N). Writers report what they appended with
 * img_pages_advance() so that offsets stay in step.
 */
int img_pages_fd(const struct img *img);
static inline uint64_t img_pages_offset(uint64_t page_index)
{
	return IMG_PAGE_SIZE + page_index * IMG_PAGE_SIZE;
}
int img_pages_write(struct img *img, const void *buf, size_t len);
void img_pages_advance(struct img *img, uint64_t len);
/* Number of whole pages in a pages image opened for reading. */
int img_pages_count(struct img *img, uint64_t *ret);

/* File name of an image kind+id into buf (for error messages and show -D). */
void img_file_name(enum img_kind kind, uint32_t id, char *buf, size_t len);

#endif
