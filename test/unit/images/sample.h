/*
 * Sample images for the image tests: one fully populated image of every
 * kind (every optional field set, repeated fields with several elements,
 * strings that need JSON escaping), and the writer that puts them on disk.
 * Shared by test_img.c and the mkimages helper of the `relive show` test.
 */
#ifndef RELIVE_TEST_SAMPLE_H
#define RELIVE_TEST_SAMPLE_H

#include "img.h"

#define SAMPLE_MAX_ENTRIES 4
#define SAMPLE_NR_PAGES 3
/* inventory hostname: quote, backslash, newline, a control char, é, two bytes of bad UTF-8 */
#define SAMPLE_HOSTNAME "ho\"st\\\n\x01\xc3\xa9\xff\xfe"

struct sample_img {
	enum img_kind kind;
	uint32_t id;
	size_t nr_entries;
	const ProtobufCMessage *entries[SAMPLE_MAX_ENTRIES];
};

/* The samples, one per kind, indexed by enum img_kind. */
const struct sample_img *sample_get(enum img_kind kind);

/* Byte I of page P of the sample pages image. */
static inline uint8_t sample_page_byte(unsigned p, unsigned i)
{
	return (uint8_t)(p * 37 + i * 7 + 1);
}

/* Write the sample of KIND into DIRFD; 0 or -errno with the reason in ERR. */
int sample_write(int dirfd, enum img_kind kind, char *err, size_t errlen);

#endif
