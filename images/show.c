/*
 * JSON rendering of images for `relive show`. A generic walk over the
 * protobuf-c descriptors: field labels, has_/n_ quantifiers, oneofs, enums
 * by name, nested messages, bytes as hex strings and 64-bit integers as
 * plain JSON numbers. It renders what img.c decoded and never reads image
 * bytes itself; the directory walk and error reporting live in cli/show.c.
 */
#include "show.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

static int show_value(FILE *out, const ProtobufCFieldDescriptor *f, const void *p);

/* Length of the well-formed UTF-8 sequence at S (1..4), or 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0; /* continuation byte, overlong lead (c0, c1) or beyond U+10FFFF */
	if (left < n)
		return 0;
	/* Second-byte ranges that exclude overlongs, surrogates and > U+10FFFF (RFC 3629). */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void img_show_string(FILE *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	fputc('"', out);
	while (i < len) {
		unsigned char c = p[i];

		if (c == '"' || c == '\\') {
			fputc('\\', out);
			fputc(c, out);
			i++;
		} else if (c == '\n') {
			fputs("\\n", out);
			i++;
		} else if (c == '\t') {
			fputs("\\t", out);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(out, "\\u%04x", c);
			i++;
		} else if ((n = utf8_seq_len(p + i, len - i)) > 0) {
			fwrite(p + i, 1, n, out);
			i += n;
		} else {
			fputs("\\ufffd", out);
			i++;
		}
	}
	fputc('"', out);
}

static void show_hex(FILE *out, const ProtobufCBinaryData *b)
{
	static const char digits[] = "0123456789abcdef";

	fputc('"', out);
	for (size_t i = 0; i < b->len; i++) {
		fputc(digits[b->data[i] >> 4], out);
		fputc(digits[b->data[i] & 0xf], out);
	}
	fputc('"', out);
}

static void show_double(FILE *out, double d)
{
	/* JSON has no NaN or infinity. */
	if (isfinite(d))
		fprintf(out, "%.17g", d);
	else
		fputs("null", out);
}

static void show_enum(FILE *out, const ProtobufCEnumDescriptor *ed, int v)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, v);

	/* A value this build does not know (a newer writer) stays a number. */
	if (ev)
		img_show_string(out, ev->name, strlen(ev->name));
	else
		fprintf(out, "%d", v);
}

static int show_value(FILE *out, const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		fprintf(out, "%" PRId32, *(const int32_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		fprintf(out, "%" PRIu32, *(const uint32_t *)p);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		fprintf(out, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		fprintf(out, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		show_double(out, *(const float *)p);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		show_double(out, *(const double *)p);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		fputs(*(const protobuf_c_boolean *)p ? "true" : "false", out);
		break;
	case PROTOBUF_C_TYPE_ENUM:
		show_enum(out, f->descriptor, *(const int *)p);
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;

		if (s)
			img_show_string(out, s, strlen(s));
		else
			fputs("null", out);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES:
		show_hex(out, p);
		break;
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;

		if (m)
			return img_show_msg(m, out);
		fputs("null", out);
		break;
	}
	default:
		return -EINVAL;
	}
	return 0;
}

static size_t field_elem_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	default:
		return 4;
	}
}

/* Whether an optional or oneof field holds a value (as protobuf-c's packer decides). */
static bool field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg;
	const void *p = base + f->offset;

	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->label != PROTOBUF_C_LABEL_OPTIONAL)
		return true;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING) {
		const void *ptr = *(const void *const *)p;

		return ptr && ptr != f->default_value;
	}
	return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
}

static int show_repeated(FILE *out, const ProtobufCMessage *msg,
			 const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg;
	size_t n = *(const size_t *)(base + f->quantifier_offset);
	const char *arr = *(const char *const *)(base + f->offset);
	size_t sz = field_elem_size(f->type);
	int r;

	fputc('[', out);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputs(", ", out);
		r = show_value(out, f, arr + i * sz);
		if (r)
			return r;
	}
	fputc(']', out);
	return 0;
}

int img_show_msg(const ProtobufCMessage *msg, FILE *out)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	bool first = true;
	int r;

	fputc('{', out);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (f->label != PROTOBUF_C_LABEL_REPEATED && !field_present(msg, f))
			continue;
		if (!first)
			fputs(", ", out);
		first = false;
		img_show_string(out, f->name, strlen(f->name));
		fputs(": ", out);
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			r = show_repeated(out, msg, f);
		else
			r = show_value(out, f, (const char *)msg + f->offset);
		if (r)
			return r;
	}
	/* Fields of a newer format that this build cannot name: say that they exist. */
	if (msg->n_unknown_fields)
		fprintf(out, "%s\"unknown_fields\": %u", first ? "" : ", ",
			msg->n_unknown_fields);
	fputc('}', out);
	return ferror(out) ? -EIO : 0;
}

static int show_fail_output(struct img *img)
{
	snprintf(img->err, sizeof(img->err), "%s: writing the JSON output failed", img->name);
	return -EIO;
}

static int show_entries(struct img *img, FILE *out)
{
	ProtobufCMessage *msg;
	uint64_t n = 0;
	int r;

	fputs(", \"entries\": [", out);
	while ((r = img_read(img, &msg)) > 0) {
		fputs(n++ ? ",\n    " : "\n    ", out);
		r = img_show_msg(msg, out);
		img_msg_free(msg);
		if (r)
			return show_fail_output(img);
	}
	if (r < 0)
		return r;
	fputs(n ? "\n  ]" : "]", out);
	return 0;
}

int img_show(struct img *img, FILE *out)
{
	const struct img_kind_desc *d = img_kind_desc(img->kind);
	uint64_t nr_pages;
	int r;

	if (!d) {
		snprintf(img->err, sizeof(img->err), "%s: unknown image kind %d", img->name,
			 (int)img->kind);
		return -EINVAL;
	}
	fputs("{\"file\": ", out);
	img_show_string(out, img->name, strlen(img->name));
	fputs(", \"kind\": ", out);
	img_show_string(out, d->name, strlen(d->name));
	if (!d->msg) {
		r = img_pages_count(img, &nr_pages);
		if (r)
			return r;
		fprintf(out, ", \"nr_pages\": %" PRIu64, nr_pages);
	} else {
		r = show_entries(img, out);
		if (r)
			return r;
	}
	fputc('}', out);
	if (ferror(out))
		return show_fail_output(img);
	return 0;
}
