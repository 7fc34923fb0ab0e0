/*
 * Decoding of image files to JSON (the engine of `relive show`, our crit).
 * The writer walks protobuf-c descriptors, so a field added to a .proto
 * shows up without a change here. It owns the JSON text only: opening
 * directories, choosing files and reporting errors belong to the caller.
 * Like the rest of images/, it never logs: errors come back as -errno with
 * the reason in img->err (file name and byte offset for image errors).
 */
#ifndef RELIVE_IMAGES_SHOW_H
#define RELIVE_IMAGES_SHOW_H

#include <stdio.h>

#include "img.h"

/*
 * Write one image, open for reading, as a JSON object:
 *   {"file": NAME, "kind": KIND, "entries": [...]}  for message images,
 *   {"file": NAME, "kind": "pages", "nr_pages": N}  for the pages image.
 * Reads every entry. On error the output is incomplete: callers that must
 * emit valid JSON write to a buffer (open_memstream) and discard it.
 */
int img_show(struct img *img, FILE *out);

/* One decoded message as a JSON object; 0 or -EIO if OUT failed. */
int img_show_msg(const ProtobufCMessage *msg, FILE *out);

/*
 * A JSON string literal (with the quotes) for LEN bytes at S. Control
 * characters are escaped; bytes that are not valid UTF-8 become U+FFFD.
 */
void img_show_string(FILE *out, const char *s, size_t len);

#endif
