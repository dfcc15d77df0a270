/*
 * dkim.c - DKIM signing keys and signatures (RFC 6376, RFC 8463, RFC 8301).
 *
 * Owns: struct dkim_key (dkim_key_load/parse/free/dns_txt/sign), the
 * default signed-header list, dkim_signer_select(), dkim_body_hash() and
 * its per-body cache, dkim_sign() and dkim_sign_message(). Canonicalisation and message parsing live in
 * dkim_canon.c.
 *
 * Signing, as RFC 6376 5 has it: the canonical forms of the selected
 * header fields (for each name in h=, the bottom-most instance not yet
 * used), then the DKIM-Signature field itself with an empty b= and no
 * final CRLF, make the data signed:
 *   rsa-sha256      RSASSA-PKCS1-v1_5 with SHA-256 over that data;
 *   ed25519-sha256  PureEd25519 over SHA-256(data) (RFC 8463 3).
 * The field is built folded (lines of at most 78 columns, folds are
 * "\r\n "), and the same folded text with b= empty is what is signed, so
 * simple header canonicalisation verifies too.
 *
 * OpenSSL notes: keys are parsed once at start-up (PKCS#8 decoding is
 * slow in OpenSSL 3.0); SHA-256 is fetched once (EVP_MD_fetch is much
 * cheaper per call than EVP_sha256()'s implicit fetch); Ed25519 only
 * signs one-shot (EVP_DigestSign; EVP_DigestSignUpdate fails for it).
 * Every call makes its own EVP_MD_CTX, so any thread may sign.
 */
#include "dkim.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim_canon.h"
#include "util.h"

#define KEY_FILE_MAX	65536	/* a 16384-bit RSA PEM is about 13 KiB */
#define LINE_MAX_COLS	78	/* RFC 5322 2.1.1 */

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_alg alg;
	int bits;
};

const char *const dkim_default_headers[] = {
	"from", "to", "subject", "date", "message-id", "mime-version", "content-type",
	"content-transfer-encoding", "reply-to", "list-unsubscribe", "list-unsubscribe-post",
	"feedback-id", "in-reply-to", "references", "cc",
};
const size_t dkim_ndefault_headers = sizeof dkim_default_headers / sizeof dkim_default_headers[0];

/* ------------------------------------------------------------------ */
/* names                                                                */

const char *
dkim_alg_name(enum dkim_alg a)
{
	switch (a) {
	case DKIM_RSA_SHA256: return "rsa-sha256";
	case DKIM_ED25519_SHA256: return "ed25519-sha256";
	default: return NULL;
	}
}

int
dkim_alg_parse(const char *s, enum dkim_alg *out)
{
	if (strcasecmp(s, "rsa-sha256") == 0)
		*out = DKIM_RSA_SHA256;
	else if (strcasecmp(s, "ed25519-sha256") == 0)
		*out = DKIM_ED25519_SHA256;
	else
		return -1;
	return 0;
}

const char *
dkim_canon_name(enum dkim_canon c)
{
	return c == DKIM_CANON_SIMPLE ? "simple" : "relaxed";
}

const char *
dkim_status_text(enum dkim_status st)
{
	switch (st) {
	case DKIM_SIGNED: return "signed";
	case DKIM_NO_KEY: return "no key";
	default: return "signing failed";
	}
}

/* ------------------------------------------------------------------ */
/* SHA-256, fetched once                                                */

static pthread_once_t sha_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha_md;

static void
sha_fetch(void)
{
	sha_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha_md == NULL)
		fatal("dkim: OpenSSL has no SHA256");
}

static const EVP_MD *
sha256(void)
{
	pthread_once(&sha_once, sha_fetch);
	return sha_md;
}

static EVP_MD_CTX *
md_new(void)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	if (m == NULL)
		fatal("dkim: out of memory");
	return m;
}

/* b64 - base64 of in[0..n) into a malloc'd string, no line breaks. */
static char *
b64(const unsigned char *in, size_t n)
{
	char *out = xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* ------------------------------------------------------------------ */
/* keys                                                                 */

static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;	/* never prompt: an encrypted key is an error */
}


/*
 * raw_ed25519 - text is the base64 of a 32-byte Ed25519 seed (white space
 * around it allowed): the key, else NULL.
 */
static EVP_PKEY *
raw_ed25519(const char *text, size_t len)
{
	unsigned char in[64], out[64];
	size_t n = 0;
	int dl, pad = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (isspace(ch))
			continue;
		if (n == sizeof in)
			return NULL;
		in[n++] = ch;
	}
	if (n != 44)
		return NULL;
	if (in[43] == '=')
		pad++;
	if (in[42] == '=')
		pad++;
	dl = EVP_DecodeBlock(out, in, (int)n);
	if (dl < 0 || dl - pad != 32)
		return NULL;
	return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, out, 32);
}

struct dkim_key *
dkim_key_parse(const char *text, size_t len, enum dkim_alg alg, char *err, size_t errlen)
{
	EVP_PKEY *pk = NULL;
	struct dkim_key *k;
	enum dkim_alg have;
	BIO *bio;

	if (len == 0 || len > KEY_FILE_MAX) {
		errbuf_set(err, errlen, "%s", len == 0 ? "the key file is empty" : "the key file is too large");
		return NULL;
	}
	bio = BIO_new_mem_buf(text, (int)len);
	if (bio == NULL)
		fatal("dkim: out of memory");
	pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pk == NULL) {
		unsigned long e = ERR_peek_last_error();
		char why[200];

		ERR_error_string_n(e, why, sizeof why);
		ERR_clear_error();
		if (memmem(text, len, "-----BEGIN", 10) != NULL) {
			if (memmem(text, len, "ENCRYPTED", 9) != NULL)
				errbuf_set(err, errlen, "%s", "the key is encrypted (volley needs it without a pass phrase)");
			else
				errbuf_set(err, errlen, "not a usable PEM private key (%s)", why);
			return NULL;
		}
		pk = raw_ed25519(text, len);
		if (pk == NULL) {
			errbuf_set(err, errlen, "%s",
			    "not a private key (PEM, or the base64 32-byte seed of an Ed25519 key)");
			return NULL;
		}
	}
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		have = DKIM_RSA_SHA256;
		break;
	case EVP_PKEY_ED25519:
		have = DKIM_ED25519_SHA256;
		break;
	default:
		EVP_PKEY_free(pk);
		errbuf_set(err, errlen, "%s", "unsupported key type (DKIM signs with RSA or Ed25519 keys)");
		return NULL;
	}
	if (alg != DKIM_ALG_NONE && alg != have) {
		EVP_PKEY_free(pk);
		errbuf_set(err, errlen, "an %s key cannot sign %s",
		    have == DKIM_RSA_SHA256 ? "RSA" : "Ed25519", dkim_alg_name(alg));
		return NULL;
	}
	if (have == DKIM_RSA_SHA256 && EVP_PKEY_get_bits(pk) < 1024) {
		EVP_PKEY_free(pk);
		errbuf_set(err, errlen, "%s", "the RSA key is shorter than 1024 bits (RFC 8301; use 2048)");
		return NULL;
	}
	k = xcalloc(1, sizeof *k);
	k->pkey = pk;
	k->alg = have;
	k->bits = EVP_PKEY_get_bits(pk);
	return k;
}

struct dkim_key *
dkim_key_load(const char *path, enum dkim_alg alg, char *err, size_t errlen)
{
	char *text = xmalloc(KEY_FILE_MAX + 1);
	size_t len;
	struct dkim_key *k;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		errbuf_set(err, errlen, "cannot open the key file: %s", strerror(errno));
		free(text);
		return NULL;
	}
	len = fread(text, 1, KEY_FILE_MAX + 1, f);
	if (ferror(f)) {
		errbuf_set(err, errlen, "cannot read the key file: %s", strerror(errno));
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	k = dkim_key_parse(text, len, alg, err, errlen);
	OPENSSL_cleanse(text, KEY_FILE_MAX + 1);
	free(text);
	return k;
}

struct dkim_key *
dkim_key_dup(const struct dkim_key *k)
{
	struct dkim_key *d = xmalloc(sizeof *d);

	*d = *k;
	if (EVP_PKEY_up_ref(d->pkey) != 1)
		fatal("dkim: cannot take a reference on a key");
	return d;
}

void
dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

enum dkim_alg
dkim_key_alg(const struct dkim_key *k)
{
	return k->alg;
}

int
dkim_key_bits(const struct dkim_key *k)
{
	return k->bits;
}

char *
dkim_key_dns_txt(const struct dkim_key *k)
{
	char *p, *txt;

	if (k->alg == DKIM_RSA_SHA256) {
		unsigned char *der = NULL;
		int n = i2d_PUBKEY(k->pkey, &der);

		if (n <= 0)
			fatal("dkim: cannot encode the public key");
		p = b64(der, (size_t)n);
		OPENSSL_free(der);
		txt = xasprintf("v=DKIM1; k=rsa; p=%s", p);
	} else {
		unsigned char raw[32];
		size_t n = sizeof raw;

		if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) != 1 || n != 32)
			fatal("dkim: cannot encode the public key");
		p = b64(raw, n);
		txt = xasprintf("v=DKIM1; k=ed25519; p=%s", p);
	}
	free(p);
	return txt;
}

/* ------------------------------------------------------------------ */
/* who signs                                                            */

static const struct dkim_signer *
find_domain(const struct dkim_signer *v, size_t n, const char *d, int need_sub)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(v[i].domain, d) == 0 && (!need_sub || v[i].subdomains))
			return &v[i];
	return NULL;
}

const struct dkim_signer *
dkim_signer_select(const struct dkim_signer *v, size_t n, const char *from_domain)
{
	const struct dkim_signer *s;

	if (from_domain != NULL && from_domain[0] != '\0') {
		if ((s = find_domain(v, n, from_domain, 0)) != NULL)
			return s;
		for (const char *p = strchr(from_domain, '.'); p != NULL; p = strchr(p + 1, '.'))
			if (p[1] != '\0' && (s = find_domain(v, n, p + 1, 1)) != NULL)
				return s;
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].is_default)
			return &v[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* body hash                                                            */

void
dkim_body_hash(enum dkim_canon bc, const char *body, size_t len, unsigned flags,
    char bh[DKIM_BH_SIZE])
{
	struct dkim_out *o = xmalloc(sizeof *o);
	unsigned char dig[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;

	o->buf = NULL;
	o->n = 0;
	o->md = md_new();
	if (EVP_DigestInit_ex(o->md, sha256(), NULL) != 1)
		panic("dkim: EVP_DigestInit_ex failed");
	dkim_canon_body_out(bc, body, len, flags, o);
	if (EVP_DigestFinal_ex(o->md, dig, &dl) != 1 || dl != 32)
		panic("dkim: EVP_DigestFinal_ex failed");
	EVP_MD_CTX_free(o->md);
	free(o);
	EVP_EncodeBlock((unsigned char *)bh, dig, 32);
}

/* ------------------------------------------------------------------ */
/* the DKIM-Signature field                                             */

/* A field being built and folded at LINE_MAX_COLS. */
struct fold {
	struct buf b;
	size_t col;
};

static void
fold_break(struct fold *f)
{
	buf_append(&f->b, "\r\n", 2);
	f->col = 0;
}

/* fold_tag - " tag;" (or " tag" when last) on this line if it fits, else on the next. */
static void
fold_tag(struct fold *f, const char *tag, int last)
{
	size_t n = strlen(tag), need = 1 + n + (last ? 0 : 1);

	if (f->col + need > LINE_MAX_COLS)
		fold_break(f);
	buf_appendf(&f->b, " %s%s", tag, last ? "" : ";");
	f->col += need;
}

/* fold_names - " h=a:b:c;" broken after a colon where a line would overflow. */
static void
fold_names(struct fold *f, const char *const *names, size_t n)
{
	size_t first = strlen(names[0]) + 1;

	if (f->col + 3 + first > LINE_MAX_COLS)
		fold_break(f);
	buf_append(&f->b, " h=", 3);
	f->col += 3;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]);

		if (i > 0 && f->col + l + 1 > LINE_MAX_COLS) {
			buf_append(&f->b, "\r\n ", 3);
			f->col = 1;
		}
		buf_append(&f->b, names[i], l);
		buf_append(&f->b, i + 1 < n ? ":" : ";", 1);
		f->col += l + 1;
	}
}

/* fold_value - append v, breaking it wherever a line would overflow (base64 allows FWS). */
static void
fold_value(struct fold *f, const char *v)
{
	size_t n = strlen(v);

	while (n > 0) {
		size_t room = f->col < LINE_MAX_COLS ? LINE_MAX_COLS - f->col : 0;

		if (room == 0) {
			buf_append(&f->b, "\r\n ", 3);
			f->col = 1;
			continue;
		}
		if (room > n)
			room = n;
		buf_append(&f->b, v, room);
		f->col += room;
		v += room;
		n -= room;
	}
}

char *
dkim_key_sign(const struct dkim_key *k, const char *data, size_t n)
{
	EVP_MD_CTX *m = md_new();
	unsigned char dig[32];
	unsigned char *sig = NULL;
	size_t sl = 0;
	char *out = NULL;
	int ok;

	if (k->alg == DKIM_RSA_SHA256) {
		ok = EVP_DigestSignInit(m, NULL, sha256(), NULL, k->pkey) == 1 &&
		    EVP_DigestSign(m, NULL, &sl, (const unsigned char *)data, n) == 1;
		if (ok) {
			sig = xmalloc(sl);
			ok = EVP_DigestSign(m, sig, &sl, (const unsigned char *)data, n) == 1;
		}
	} else {
		ok = EVP_Digest(data, n, dig, NULL, sha256(), NULL) == 1 &&
		    EVP_DigestSignInit(m, NULL, NULL, NULL, k->pkey) == 1 &&
		    EVP_DigestSign(m, NULL, &sl, dig, sizeof dig) == 1;
		if (ok) {
			sig = xmalloc(sl);
			ok = EVP_DigestSign(m, sig, &sl, dig, sizeof dig) == 1;
		}
	}
	if (ok)
		out = b64(sig, sl);
	else
		ERR_clear_error();
	free(sig);
	EVP_MD_CTX_free(m);
	return out;
}

static int
name_is(const struct dkim_field *f, const char *name)
{
	size_t l = strlen(name);

	return f->name != NULL && f->name_len == l && strncasecmp(f->name, name, l) == 0;
}

char *
dkim_sign(const struct dkim_signer *s, const char *headers, size_t hlen, unsigned flags,
    const char *extra, size_t extra_len, const char *bh, time_t now, size_t *siglen)
{
	const char *const *want = s->headers ? (const char *const *)s->headers : dkim_default_headers;
	size_t nwant = s->headers ? s->nheaders : dkim_ndefault_headers;
	struct dkim_field *f = NULL;
	size_t nf = 0, fcap = 0;
	const char **h = NULL;	/* h= entries */
	size_t nh = 0, hcap = 0;
	struct buf base = { 0 }, out = { 0 };
	struct dkim_out *o = xmalloc(sizeof *o);
	char **lower = xcalloc(nwant + 1, sizeof *lower);
	size_t nlower = 0;
	int have_from = 0;

	if (extra != NULL && extra_len > 0)
		dkim_fields(extra, extra_len, 0, &f, &nf, &fcap);
	dkim_fields(headers, hlen, flags, &f, &nf, &fcap);

	/* the names, lower-case and once each; From always */
	for (size_t i = 0; i <= nwant; i++) {
		const char *nm = i < nwant ? want[i] : "from";
		int dup = 0;

		if (i == nwant && have_from)
			break;
		for (size_t j = 0; j < nlower; j++)
			if (strcasecmp(lower[j], nm) == 0)
				dup = 1;
		if (dup || nm[0] == '\0')
			continue;
		lower[nlower++] = str_lower(xstrdup(nm));
		if (strcasecmp(nm, "from") == 0)
			have_from = 1;
	}

	/* h= and the canonical selected fields, bottom-most instance first */
	o->buf = &base;
	o->md = NULL;
	o->n = 0;
	for (size_t i = 0; i < nlower; i++) {
		size_t k = 0, total = 0;

		for (size_t j = nf; j-- > 0;) {
			if (!name_is(&f[j], lower[i]))
				continue;
			if (k < DKIM_MAX_INSTANCES) {
				dkim_canon_header_out(s->hcanon, f[j].p, f[j].len, f[j].flags, o);
				k++;
			}
			total++;
		}
		/* over-signed: one entry more than there are From fields, so
		 * none may be added; only when all of them are listed (else the
		 * extra entry would name an unsigned, present instance) */
		if (strcmp(lower[i], "from") == 0 && total == k)
			k++;
		for (; k > 0; k--) {
			if (nh == hcap) {
				hcap = hcap ? hcap * 2 : 32;
				h = xrealloc(h, hcap * sizeof *h);
			}
			h[nh++] = lower[i];
		}
	}

	for (size_t ki = 0; ki < s->nkeys; ki++) {
		const struct dkim_key *key = s->keys[ki].key;
		struct fold fd = { { 0 }, 0 };
		struct buf data = { 0 };
		char tag[DKIM_DOMAIN_MAX + 80], *b;

		buf_append(&fd.b, "DKIM-Signature:", 15);
		fd.col = 15;
		fold_tag(&fd, "v=1", 0);
		snprintf(tag, sizeof tag, "a=%s", dkim_alg_name(key->alg));
		fold_tag(&fd, tag, 0);
		snprintf(tag, sizeof tag, "c=%s/%s", dkim_canon_name(s->hcanon),
		    dkim_canon_name(s->bcanon));
		fold_tag(&fd, tag, 0);
		snprintf(tag, sizeof tag, "d=%s", s->domain);
		fold_tag(&fd, tag, 0);
		snprintf(tag, sizeof tag, "s=%s", s->keys[ki].selector);
		fold_tag(&fd, tag, 0);
		if (now > 0) {
			snprintf(tag, sizeof tag, "t=%lld", (long long)now);
			fold_tag(&fd, tag, 0);
		}
		fold_names(&fd, h, nh);
		snprintf(tag, sizeof tag, "bh=%s", bh);
		fold_tag(&fd, tag, 0);
		/* " b=" and at least a few characters of the value on this line */
		if (fd.col + 3 + 8 > LINE_MAX_COLS)
			fold_break(&fd);
		buf_append(&fd.b, " b=", 3);
		fd.col += 3;

		/* data = selected fields + this field with b= empty, no CRLF */
		if (base.len > 0)
			buf_append(&data, base.data, base.len);
		buf_append(&fd.b, "\r\n", 2);
		o->buf = &data;
		o->n = 0;
		dkim_canon_header_out(s->hcanon, fd.b.data, fd.b.len, 0, o);
		fd.b.len -= 2;
		data.len -= 2;
		b = dkim_key_sign(key, data.data, data.len);
		buf_free(&data);
		if (b == NULL) {
			buf_free(&fd.b);
			buf_free(&out);
			out.data = NULL;
			break;
		}
		fold_value(&fd, b);
		free(b);
		buf_append(&fd.b, "\r\n", 2);
		buf_append(&out, fd.b.data, fd.b.len);
		buf_free(&fd.b);
	}

	for (size_t i = 0; i < nlower; i++)
		free(lower[i]);
	free(lower);
	free(h);
	free(f);
	free(o);
	buf_free(&base);
	if (out.data == NULL)
		return NULL;
	*siglen = out.len;
	buf_append(&out, "", 1);	/* NUL-terminated for logs and tests */
	return out.data;
}

const char *
dkim_body_hash_cached(struct dkim_body_hashes *c, enum dkim_canon bc, const char *body,
    size_t len, unsigned flags)
{
	unsigned bit = 1u << bc;

	if (!(c->have & bit)) {
		dkim_body_hash(bc, body, len, flags, c->bh[bc]);
		c->have |= bit;
	}
	return c->bh[bc];
}

enum dkim_status
dkim_sign_message(const struct dkim_signer *v, size_t n, const struct dkim_request *rq,
    char **sig, size_t *siglen, const struct dkim_signer **signer)
{
	char dom[DKIM_DOMAIN_MAX], bhbuf[DKIM_BH_SIZE];
	const char *bh;
	size_t hlen, boff;
	const struct dkim_signer *s;

	*sig = NULL;
	*siglen = 0;
	if (signer != NULL)
		*signer = NULL;
	dkim_split(rq->msg, rq->len, rq->flags, &hlen, &boff);
	if (dkim_from_domain(rq->msg, hlen, rq->flags, dom, sizeof dom) < 0 &&
	    (rq->extra == NULL ||
	    dkim_from_domain(rq->extra, rq->extra_len, 0, dom, sizeof dom) < 0))
		dom[0] = '\0';
	s = dkim_signer_select(v, n, dom);
	if (s == NULL)
		return DKIM_NO_KEY;
	if (rq->bh != NULL) {
		bh = dkim_body_hash_cached(rq->bh, s->bcanon, rq->msg + boff, rq->len - boff, rq->flags);
	} else {
		dkim_body_hash(s->bcanon, rq->msg + boff, rq->len - boff, rq->flags, bhbuf);
		bh = bhbuf;
	}
	*sig = dkim_sign(s, rq->msg, hlen, rq->flags, rq->extra, rq->extra_len, bh, rq->now, siglen);
	if (*sig == NULL)
		return DKIM_ERROR;
	if (signer != NULL)
		*signer = s;
	return DKIM_SIGNED;
}
