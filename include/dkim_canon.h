/*
 * dkim_canon.h - what dkim.c needs from dkim_canon.c beyond dkim.h: an
 * output that is either a buffer or a running SHA-256, the index of a
 * header block's fields, and line iteration. Not for other modules.
 */
#ifndef VOLLEY_DKIM_CANON_H
#define VOLLEY_DKIM_CANON_H

#include <stddef.h>

#include "dkim.h"

struct buf;
typedef struct evp_md_ctx_st EVP_MD_CTX;

/* Canonical bytes go to a buffer (tests) or a digest (hashing), batched. */
struct dkim_out {
	struct buf *buf;	/* one of buf and md */
	EVP_MD_CTX *md;
	size_t n;
	char pend[16384];
};

void dkim_out_write(struct dkim_out *o, const char *p, size_t n);
void dkim_out_flush(struct dkim_out *o);

void dkim_canon_body_out(enum dkim_canon c, const char *body, size_t len, unsigned flags,
    struct dkim_out *o);
void dkim_canon_header_out(enum dkim_canon c, const char *field, size_t len, unsigned flags,
    struct dkim_out *o);

/* One header field: its bytes (first line to the end of its last line). */
struct dkim_field {
	const char *p;
	size_t len;
	unsigned flags;		/* how p reads (DKIM_STUFFED or 0) */
	const char *name;	/* field name without trailing WSP; NULL: no colon */
	size_t name_len;
};

/*
 * dkim_fields - append the fields of hdr[0..hlen) to *v (xrealloc'd,
 * *n counts, *cap its room). A continuation line before any field makes
 * a field without a name.
 */
void dkim_fields(const char *hdr, size_t hlen, unsigned flags, struct dkim_field **v,
    size_t *n, size_t *cap);

#endif
