/*
 * Framing of image files: headers, length-prefixed protobuf entries and the
 * raw pages image. Every read is bounded and every failure is described in
 * img->err with the file name and byte offset; nothing here logs or aborts.
 */
#include "img.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMG_WBUF_SIZE (256U << 10)

static const struct img_kind_desc kinds[IMG_KIND_MAX] = {
	[IMG_INVENTORY] = { "inventory", "inventory.img", 0x52564e49, false,
			    &inventory_entry__descriptor, NULL },
	[IMG_PSTREE] = { "pstree", "pstree.img", 0x52545350, false, &pstree_entry__descriptor,
			 NULL },
	[IMG_CORE] = { "core", "core-%u.img", 0x45524f43, true, &core_entry__descriptor, NULL },
	[IMG_TASK] = { "task", "task-%u.img", 0x4b534154, true, &task_entry__descriptor, NULL },
	[IMG_MM] = { "mm", "mm-%u.img", 0x20204d4d, true, &mm_entry__descriptor, NULL },
	[IMG_PAGEMAP] = { "pagemap", "pagemap-%u.img", 0x4d474150, true,
			  &pagemap_entry__descriptor, &pagemap_head__descriptor },
	[IMG_PAGES] = { "pages", "pages-%u.img", 0x53474150, true, NULL, NULL },
	[IMG_FILES] = { "files", "files.img", 0x534c4946, false, &file_entry__descriptor, NULL },
	[IMG_FDINFO] = { "fdinfo", "fdinfo-%u.img", 0x4f464446, true, &fdinfo_entry__descriptor,
			 NULL },
	[IMG_STATS_DUMP] = { "stats-dump", "stats-dump.img", 0x50445453, false,
			     &stats_entry__descriptor, NULL },
	[IMG_STATS_RESTORE] = { "stats-restore", "stats-restore.img", 0x53525453, false,
				&stats_entry__descriptor, NULL },
	[IMG_FILE_LOCKS] = { "file-locks", "file-locks.img", 0x4b434f4c, false,
			     &file_lock_entry__descriptor, NULL },
};

const struct img_kind_desc *img_kind_desc(enum img_kind kind)
{
	if ((unsigned)kind >= IMG_KIND_MAX)
		return NULL;
	return &kinds[kind];
}

int img_kind_by_magic(uint32_t magic, enum img_kind *ret)
{
	for (int k = 0; k < IMG_KIND_MAX; k++) {
		if (kinds[k].magic == magic) {
			*ret = (enum img_kind)k;
			return 0;
		}
	}
	return -ENOENT;
}

void img_file_name(enum img_kind kind, uint32_t id, char *buf, size_t len)
{
	const struct img_kind_desc *d = img_kind_desc(kind);

	if (!d) {
		snprintf(buf, len, "(bad kind %d)", (int)kind);
		return;
	}
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (d->per_id)
		snprintf(buf, len, d->file_fmt, id);
	else
		snprintf(buf, len, "%s", d->file_fmt);
#pragma GCC diagnostic pop
}

__attribute__((format(printf, 3, 4))) static int img_fail(struct img *img, int err,
							    const char *fmt, ...)
{
	int n;
	va_list ap;

	n = snprintf(img->err, sizeof(img->err), "%s: offset %llu: ", img->name,
		     (unsigned long long)img->off);
	if (n < 0 || n >= (int)sizeof(img->err))
		return err;
	va_start(ap, fmt);
	vsnprintf(img->err + n, sizeof(img->err) - n, fmt, ap);
	va_end(ap);
	return err;
}

static void img_reset(struct img *img)
{
	memset(img, 0, sizeof(*img));
	img->fd = -1;
}

/* Read up to len bytes; returns bytes read (short only at EOF) or -errno. */
static ssize_t read_upto(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += n;
	}
	return (ssize_t)got;
}

static int write_all(struct img *img, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(img->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return img_fail(img, -errno, "write of %zu bytes failed: %s", len,
					strerror(errno));
		}
		p += n;
		len -= n;
	}
	return 0;
}

static int read_header(struct img *img, bool kind_known)
{
	uint32_t hdr[2];
	ssize_t n = read_upto(img->fd, hdr, sizeof(hdr));
	enum img_kind kind;

	if (n < 0)
		return img_fail(img, (int)n, "reading the header failed: %s", strerror((int)-n));
	if (n == 0)
		return img_fail(img, -EINVAL, "empty file, expected an image header");
	if (n < (ssize_t)sizeof(hdr))
		return img_fail(img, -EINVAL, "truncated header: %zd of %zu bytes", n,
				sizeof(hdr));
	if (kind_known && hdr[0] != kinds[img->kind].magic)
		return img_fail(img, -EINVAL, "bad magic 0x%08x, expected 0x%08x (%s image)",
				hdr[0], kinds[img->kind].magic, kinds[img->kind].name);
	if (!kind_known) {
		if (img_kind_by_magic(hdr[0], &kind))
			return img_fail(img, -EINVAL, "bad magic 0x%08x: not a relive image",
					hdr[0]);
		img->kind = kind;
	}
	if (hdr[1] != IMG_FORMAT_VERSION)
		return img_fail(img, -EINVAL, "format version %u, this relive reads version %u",
				hdr[1], IMG_FORMAT_VERSION);
	img->off = sizeof(hdr);
	if (img->kind == IMG_PAGES) {
		/* The header of a pages image fills one page so that data stays aligned. */
		if (lseek(img->fd, IMG_PAGE_SIZE, SEEK_SET) < 0)
			return img_fail(img, -errno, "seek past the pages header failed: %s",
					strerror(errno));
		img->off = IMG_PAGE_SIZE;
	}
	return 0;
}

static int write_header(struct img *img)
{
	uint8_t page[IMG_PAGE_SIZE];
	uint32_t hdr[2] = { kinds[img->kind].magic, IMG_FORMAT_VERSION };
	size_t len = sizeof(hdr);
	int r;

	if (img->kind == IMG_PAGES) {
		memset(page, 0, sizeof(page));
		memcpy(page, hdr, sizeof(hdr));
		len = sizeof(page);
		r = write_all(img, page, len);
	} else {
		r = write_all(img, hdr, len);
	}
	if (r)
		return r;
	img->off = len;
	return 0;
}

int img_open(struct img *img, int dirfd, enum img_kind kind, uint32_t id, enum img_mode mode)
{
	int flags = O_CLOEXEC | (mode == IMG_WRITE ? O_WRONLY | O_CREAT | O_TRUNC : O_RDONLY);
	int r;

	img_reset(img);
	if ((unsigned)kind >= IMG_KIND_MAX) {
		snprintf(img->err, sizeof(img->err), "unknown image kind %d", (int)kind);
		return -EINVAL;
	}
	img->kind = kind;
	img->mode = mode;
	img->id = id;
	img_file_name(kind, id, img->name, sizeof(img->name));
	img->fd = openat(dirfd, img->name, flags, 0600);
	if (img->fd < 0) {
		r = -errno;
		snprintf(img->err, sizeof(img->err), "%s: cannot open: %s", img->name,
			 strerror(errno));
		return r;
	}
	if (mode == IMG_WRITE) {
		if (kind != IMG_PAGES) {
			img->wbuf = malloc(IMG_WBUF_SIZE);
			if (!img->wbuf) {
				r = img_fail(img, -ENOMEM, "out of memory for the write buffer");
				goto out_close;
			}
		}
		r = write_header(img);
	} else {
		r = read_header(img, true);
	}
	if (r)
		goto out_close;
	return 0;
out_close:
	close(img->fd);
	img->fd = -1;
	free(img->wbuf);
	img->wbuf = NULL;
	return r;
}

int img_open_path(struct img *img, const char *path)
{
	const char *base = strrchr(path, '/');
	int r;

	img_reset(img);
	img->mode = IMG_READ;
	snprintf(img->name, sizeof(img->name), "%s", base ? base + 1 : path);
	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0) {
		r = -errno;
		snprintf(img->err, sizeof(img->err), "%s: cannot open: %s", path,
			 strerror(errno));
		return r;
	}
	r = read_header(img, false);
	if (r) {
		close(img->fd);
		img->fd = -1;
	}
	return r;
}

static int flush_wbuf(struct img *img)
{
	int r;

	if (!img->wlen)
		return 0;
	r = write_all(img, img->wbuf, img->wlen);
	img->wlen = 0;
	return r;
}

int img_close(struct img *img)
{
	int r = 0;

	if (img->fd < 0)
		return 0;
	if (img->mode == IMG_WRITE) {
		r = flush_wbuf(img);
		if (!r && fsync(img->fd))
			r = img_fail(img, -errno, "fsync failed: %s", strerror(errno));
	}
	if (close(img->fd) && !r && img->mode == IMG_WRITE)
		r = img_fail(img, -errno, "close failed: %s", strerror(errno));
	img->fd = -1;
	free(img->wbuf);
	img->wbuf = NULL;
	return r;
}

static const ProtobufCMessageDescriptor *entry_desc(struct img *img)
{
	const struct img_kind_desc *d = &kinds[img->kind];

	if (d->head && img->nr_entries == 0)
		return d->head;
	return d->msg;
}

int img_read(struct img *img, ProtobufCMessage **ret_msg)
{
	const ProtobufCMessageDescriptor *desc = entry_desc(img);
	ProtobufCMessage *msg;
	uint8_t lenbuf[4];
	uint32_t len;
	uint8_t *buf;
	ssize_t n;

	if (!desc)
		return img_fail(img, -EINVAL, "a %s image holds raw pages, not entries",
				kinds[img->kind].name);
	n = read_upto(img->fd, lenbuf, sizeof(lenbuf));
	if (n < 0)
		return img_fail(img, (int)n, "read failed: %s", strerror((int)-n));
	if (n == 0)
		return 0;
	if (n < (ssize_t)sizeof(lenbuf))
		return img_fail(img, -EINVAL,
				"truncated entry length: %zd of 4 bytes (expected a %s entry)", n,
				desc->short_name);
	len = (uint32_t)lenbuf[0] | (uint32_t)lenbuf[1] << 8 | (uint32_t)lenbuf[2] << 16 |
	      (uint32_t)lenbuf[3] << 24;
	if (len > IMG_MAX_ENTRY)
		return img_fail(img, -EINVAL, "entry length %u exceeds the limit of %u bytes", len,
				IMG_MAX_ENTRY);
	buf = malloc(len ? len : 1);
	if (!buf)
		return img_fail(img, -ENOMEM, "out of memory for a %u-byte entry", len);
	n = read_upto(img->fd, buf, len);
	if (n < 0 || (size_t)n < len) {
		free(buf);
		if (n < 0)
			return img_fail(img, (int)n, "read failed: %s", strerror((int)-n));
		return img_fail(img, -EINVAL, "truncated %s entry: %zd of %u bytes",
				desc->short_name, n, len);
	}
	msg = protobuf_c_message_unpack(desc, NULL, len, buf);
	free(buf);
	if (!msg)
		return img_fail(img, -EINVAL, "cannot decode a %s entry of %u bytes",
				desc->short_name, len);
	img->off += 4 + (uint64_t)len;
	img->nr_entries++;
	*ret_msg = msg;
	return 1;
}

int img_read_one(struct img *img, ProtobufCMessage **ret_msg)
{
	int r = img_read(img, ret_msg);

	if (r == 0)
		return img_fail(img, -EINVAL, "no %s entry in the file", kinds[img->kind].name);
	return r < 0 ? r : 0;
}

void img_msg_free(ProtobufCMessage *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

int img_write(struct img *img, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *desc = entry_desc(img);
	size_t len;
	uint8_t *p;
	int r;

	if (!desc || msg->descriptor != desc)
		return img_fail(img, -EINVAL, "entry of type %s does not belong in a %s image",
				msg->descriptor->short_name, kinds[img->kind].name);
	len = protobuf_c_message_get_packed_size(msg);
	if (len > IMG_MAX_ENTRY)
		return img_fail(img, -E2BIG, "a %s entry of %zu bytes exceeds the limit",
				desc->short_name, len);
	if (img->wlen + 4 + len > IMG_WBUF_SIZE) {
		r = flush_wbuf(img);
		if (r)
			return r;
	}
	if (4 + len > IMG_WBUF_SIZE) {
		/* Too big for the buffer: write it through. */
		uint8_t *tmp = malloc(4 + len);

		if (!tmp)
			return img_fail(img, -ENOMEM, "out of memory for a %zu-byte entry", len);
		tmp[0] = len & 0xff;
		tmp[1] = (len >> 8) & 0xff;
		tmp[2] = (len >> 16) & 0xff;
		tmp[3] = (len >> 24) & 0xff;
		protobuf_c_message_pack(msg, tmp + 4);
		r = write_all(img, tmp, 4 + len);
		free(tmp);
		if (r)
			return r;
	} else {
		p = img->wbuf + img->wlen;
		p[0] = len & 0xff;
		p[1] = (len >> 8) & 0xff;
		p[2] = (len >> 16) & 0xff;
		p[3] = (len >> 24) & 0xff;
		protobuf_c_message_pack(msg, p + 4);
		img->wlen += 4 + len;
	}
	img->off += 4 + len;
	img->nr_entries++;
	return 0;
}

int img_pages_fd(const struct img *img)
{
	return img->fd;
}

int img_pages_write(struct img *img, const void *buf, size_t len)
{
	int r;

	if (img->kind != IMG_PAGES || img->mode != IMG_WRITE)
		return img_fail(img, -EINVAL, "not a pages image open for writing");
	r = write_all(img, buf, len);
	if (r)
		return r;
	img->off += len;
	return 0;
}

void img_pages_advance(struct img *img, uint64_t len)
{
	img->off += len;
}

int img_pages_count(struct img *img, uint64_t *ret)
{
	struct stat st;

	if (fstat(img->fd, &st))
		return img_fail(img, -errno, "fstat failed: %s", strerror(errno));
	if ((uint64_t)st.st_size < IMG_PAGE_SIZE || st.st_size % IMG_PAGE_SIZE)
		return img_fail(img, -EINVAL, "size %lld is not a whole number of pages",
				(long long)st.st_size);
	*ret = ((uint64_t)st.st_size - IMG_PAGE_SIZE) / IMG_PAGE_SIZE;
	return 0;
}
