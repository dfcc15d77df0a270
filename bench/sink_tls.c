/*
 * sink_tls.c - volley-sink's server SSL_CTX.
 *
 * API (sink.h): sink_tls_ctx(cert, key). With both NULL it makes a
 * self-signed P-256 certificate in memory (CN = "volley-sink", valid for a
 * year), so `--tls` works with no files; a test MTA must then not verify
 * certificates, which is what opportunistic STARTTLS does. Failures are
 * fatal: this runs once at start-up.
 */
#include "sink.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static void
tls_fatal(const char *what)
{
	char e[256];

	ERR_error_string_n(ERR_get_error(), e, sizeof e);
	fatal("tls: %s: %s", what, e);
}

static void
self_signed(SSL_CTX *ctx)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;

	if (pkey == NULL || x == NULL)
		tls_fatal("cannot generate a key");
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"volley-sink",
	    -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, pkey, EVP_sha256()) == 0)
		tls_fatal("cannot sign the self-signed certificate");
	if (SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, pkey) != 1)
		tls_fatal("cannot use the self-signed certificate");
	X509_free(x);
	EVP_PKEY_free(pkey);
}

SSL_CTX *
sink_tls_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		tls_fatal("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* A sink sees many short sessions from the same client: let them resume. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"volley-sink", 11);
	if (cert == NULL && key == NULL) {
		self_signed(ctx);
	} else {
		if (cert == NULL || key == NULL)
			fatal("tls: give both a certificate and a key (or neither, for a "
			    "self-signed one)");
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
			tls_fatal(cert);
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
			tls_fatal(key);
	}
	if (SSL_CTX_check_private_key(ctx) != 1)
		tls_fatal("the key does not match the certificate");
	return ctx;
}
