/*
 * dkim.h - DKIM signatures (RFC 6376) with rsa-sha256 and ed25519-sha256
 * (RFC 8463): keys, canonicalisation, body hash, header signature.
 *
 * Pure apart from OpenSSL: no clock reads (the caller passes `now`), no
 * I/O except dkim_key_load() reading a key file at start-up. Every
 * function is reentrant; a loaded struct dkim_key is only read while
 * signing, so worker threads may sign with the same keys concurrently.
 *
 * Message forms. Every function that reads message bytes takes `flags`:
 *   0             raw RFC 5322 bytes; CRLF, bare LF and bare CR each end a
 *                 line and a last line without an end gets one, exactly as
 *                 msg_body_new() normalises them for the wire;
 *   DKIM_STUFFED  the data of a struct msg_body (CRLF, dot-stuffed, ending
 *                 in the ".\r\n" terminator): a leading ".." reads as "."
 *                 and the line "." ends the message.
 * Both give the same hashes for the same message, so a body stored once
 * for the wire is hashed and signed without a copy.
 *
 * How a sender uses it (once per distinct body, never once per recipient):
 *   dkim_split(data, len, DKIM_STUFFED, &hlen, &boff);
 *   dkim_from_domain(data, hlen, DKIM_STUFFED, dom, sizeof dom);
 *   s = dkim_signer_select(signers, n, dom);      NULL: no key, send unsigned
 *   dkim_body_hash(s->bcanon, data + boff, len - boff, DKIM_STUFFED, bh);
 *   sig = dkim_sign(s, data, hlen, DKIM_STUFFED, NULL, 0, bh, now, &siglen);
 * and sends sig (one "DKIM-Signature: ...\r\n" field per key) before the
 * headers it adds per job (the job id header), which are not signed.
 * dkim_sign_message() does those five steps in one call, with the body
 * hashes cached beside the body (struct dkim_body_hashes).
 */
#ifndef VOLLEY_DKIM_H
#define VOLLEY_DKIM_H

#include <stddef.h>
#include <time.h>

struct buf;

#define DKIM_BH_SIZE	45	/* base64 of a SHA-256 digest (44) and a NUL */
#define DKIM_MAX_KEYS	2	/* signatures per signing domain: one per algorithm */
#define DKIM_MAX_INSTANCES 16	/* at most this many instances of one header name are signed */
#define DKIM_DOMAIN_MAX	254	/* a domain name and its NUL */

#define DKIM_STUFFED	1	/* flags: the input is struct msg_body data */

enum dkim_alg {
	DKIM_ALG_NONE = 0,
	DKIM_RSA_SHA256,
	DKIM_ED25519_SHA256,
};

/* relaxed is the zero value: the default for header and body */
enum dkim_canon {
	DKIM_CANON_RELAXED = 0,
	DKIM_CANON_SIMPLE,
};

enum dkim_status {
	DKIM_SIGNED = 0,	/* *sig holds the DKIM-Signature field(s) */
	DKIM_NO_KEY,		/* no signer for the From domain and no default */
	DKIM_ERROR,		/* OpenSSL refused to sign (logged by the caller) */
};

/* A parsed private key and its algorithm (opaque). */
struct dkim_key;

struct dkim_signer_key {
	char *selector;		/* s= */
	struct dkim_key *key;
};

/*
 * One signing domain: d= with one or two keys (one per algorithm); every
 * key signs, so a message gets one DKIM-Signature per key. Built by the
 * config loader; read-only afterwards.
 */
struct dkim_signer {
	char *domain;		/* d=, lower-case A-label, no trailing dot */
	struct dkim_signer_key keys[DKIM_MAX_KEYS];
	size_t nkeys;		/* 1..DKIM_MAX_KEYS */
	char **headers;		/* names to sign (any case); NULL: dkim_default_headers */
	size_t nheaders;
	enum dkim_canon hcanon, bcanon;	/* c=hcanon/bcanon, relaxed/relaxed by default */
	int subdomains;		/* also signs mail from any subdomain of domain */
	int is_default;		/* signs mail whose From domain has no signer */
};

/* The signed-header list used when a signer has none of its own. */
extern const char *const dkim_default_headers[];
extern const size_t dkim_ndefault_headers;

/* "rsa-sha256" / "ed25519-sha256" (NULL for DKIM_ALG_NONE) and back (-1 if unknown). */
const char *dkim_alg_name(enum dkim_alg a);
int dkim_alg_parse(const char *s, enum dkim_alg *out);
/* "relaxed" / "simple" */
const char *dkim_canon_name(enum dkim_canon c);
const char *dkim_status_text(enum dkim_status st);

/*
 * dkim_key_load - read and parse a private key file once, at start-up.
 * Accepts PEM (PKCS#8 "PRIVATE KEY" or "RSA PRIVATE KEY"; never prompts
 * for a pass phrase: an encrypted key is an error) and, for Ed25519, the
 * base64 32-byte seed that RFC 8463 and dknewkey use. alg NONE takes the
 * algorithm from the key; otherwise the key must match it. RSA keys must
 * have at least 1024 bits (RFC 8301). On failure returns NULL and writes
 * a one-line reason (without the path) to err.
 */
struct dkim_key *dkim_key_load(const char *path, enum dkim_alg alg, char *err, size_t errlen);
/* dkim_key_parse - the same from memory. */
struct dkim_key *dkim_key_parse(const char *text, size_t len, enum dkim_alg alg, char *err,
    size_t errlen);
void dkim_key_free(struct dkim_key *k);
/* dkim_key_dup - a second handle on the same key (the key material is
 * shared and reference counted); free each with dkim_key_free. */
struct dkim_key *dkim_key_dup(const struct dkim_key *k);
enum dkim_alg dkim_key_alg(const struct dkim_key *k);
/* dkim_key_bits - RSA modulus bits, 256 for Ed25519. */
int dkim_key_bits(const struct dkim_key *k);
/*
 * dkim_key_dns_txt - the TXT record to publish at SELECTOR._domainkey.DOMAIN:
 * "v=DKIM1; k=rsa; p=BASE64(SubjectPublicKeyInfo)" or
 * "v=DKIM1; k=ed25519; p=BASE64(32-byte public key)". Malloc'd.
 */
char *dkim_key_dns_txt(const struct dkim_key *k);
/*
 * dkim_key_sign - the b= value (base64) over data[0..len), which must
 * already be the data RFC 6376 3.7 signs (canonical selected fields, then
 * the canonical DKIM-Signature field with b= empty and no CRLF).
 * Malloc'd; NULL if OpenSSL fails. dkim_sign() uses it; so do the tests.
 */
char *dkim_key_sign(const struct dkim_key *k, const char *data, size_t len);

/*
 * dkim_split - find the end of the header block: *hlen is the length of
 * the header fields (each with its line end, without the empty line that
 * ends them), *body_off where the body starts (after that empty line).
 * Without an empty line the whole message is headers and the body is
 * empty (*body_off then points at the end, or at the terminator when
 * DKIM_STUFFED).
 */
void dkim_split(const char *msg, size_t len, unsigned flags, size_t *hlen, size_t *body_off);

/*
 * dkim_from_domain - the domain of the (first) address in the one From
 * field of headers[0..hlen), lower-case, without a trailing dot, a UTF-8
 * domain in its IDNA A-label form. Returns 0, or -1 when there is no From
 * field, more than one, no address in it, or the domain is not a host
 * name (an address literal, or UTF-8 that IDNA refuses).
 */
int dkim_from_domain(const char *headers, size_t hlen, unsigned flags, char *out, size_t outlen);

/*
 * dkim_signer_select - who signs mail from from_domain: the signer for
 * exactly that domain, else the nearest parent domain whose signer has
 * subdomains set, else the default signer; NULL when none (no key: the
 * message goes out unsigned, and the caller says so). from_domain may be
 * NULL or "" (no usable From): then only the default applies.
 */
const struct dkim_signer *dkim_signer_select(const struct dkim_signer *v, size_t n,
    const char *from_domain);

/*
 * dkim_body_hash - bh= of body[0..len) (the part after the empty line)
 * under body canonicalisation bc: base64(SHA-256), NUL-terminated, in bh.
 * Depends only on the body and bc: compute it once per distinct body.
 */
void dkim_body_hash(enum dkim_canon bc, const char *body, size_t len, unsigned flags,
    char bh[DKIM_BH_SIZE]);

/*
 * dkim_sign - one "DKIM-Signature: ...\r\n" field per key of s,
 * concatenated, malloc'd, lines folded at 78 columns; *siglen gets its
 * length. headers[0..hlen) is the message's header block (read with
 * flags); extra[0..extra_len) (raw CRLF fields, may be NULL) are fields
 * the caller will send above the message's own and wants signed too
 * (per-job List-Unsubscribe, say). Fields sent but given in neither are
 * not signed. bh is dkim_body_hash() of the body under s->bcanon. now
 * goes into t= (now <= 0: no t= tag). The signed names are s->headers or
 * the default list, each listed once per instance present (the last
 * DKIM_MAX_INSTANCES of them) and From once more than present
 * (over-signed, so no From can be added; not when there are more From
 * fields than DKIM_MAX_INSTANCES). Returns NULL only when OpenSSL
 * fails to sign.
 */
char *dkim_sign(const struct dkim_signer *s, const char *headers, size_t hlen, unsigned flags,
    const char *extra, size_t extra_len, const char *bh, time_t now, size_t *siglen);

/*
 * The body hashes of one body, kept with it (beside a struct msg_body):
 * each canonicalisation's bh= is computed on first use, then reused by
 * every job that shares the body. Zero it before first use. Filling it is
 * not locked: fill it on one thread (the loop) before others read it.
 */
struct dkim_body_hashes {
	unsigned have;			/* bit (1u << canon) set: bh[canon] is valid */
	char bh[2][DKIM_BH_SIZE];	/* indexed by enum dkim_canon */
};

/* dkim_body_hash_cached - bh= of body under bc from c, computing it on first use. */
const char *dkim_body_hash_cached(struct dkim_body_hashes *c, enum dkim_canon bc,
    const char *body, size_t len, unsigned flags);

/* What dkim_sign_message() signs. */
struct dkim_request {
	const char *msg;	/* the message, headers and body, read with flags */
	size_t len;
	unsigned flags;		/* 0 or DKIM_STUFFED */
	const char *extra;	/* per-job fields sent above msg and signed too, or NULL */
	size_t extra_len;
	struct dkim_body_hashes *bh;	/* the body's cached hashes, or NULL: hash now */
	time_t now;		/* t= (<= 0: none) */
};

/*
 * dkim_sign_message - the whole recipe above: split, From domain (from
 * msg's headers, else from extra), signer, body hash (cached in rq->bh
 * when given), signature. DKIM_SIGNED: *sig (malloc'd) and *siglen are
 * set and *signer (if not NULL) says who signed. DKIM_NO_KEY: *sig is
 * NULL. For a body shared by many jobs without per-job signed fields,
 * call it once and keep *sig with the body.
 */
enum dkim_status dkim_sign_message(const struct dkim_signer *v, size_t n,
    const struct dkim_request *rq, char **sig, size_t *siglen, const struct dkim_signer **signer);

/*
 * Canonicalisation (RFC 6376 3.4), exposed for the tests: append the
 * canonical form of body[0..len), or of one header field (its lines,
 * continuation lines included, with their line ends), to out.
 */
void dkim_canon_body(enum dkim_canon c, const char *body, size_t len, unsigned flags,
    struct buf *out);
void dkim_canon_header(enum dkim_canon c, const char *field, size_t len, unsigned flags,
    struct buf *out);

#endif
