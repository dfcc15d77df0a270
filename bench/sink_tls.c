/*
 * sink_tls.c - volley-sink's server TLS context, made with the project's
 * one TLS module (engine/tls.c), which also runs each session's TLS.
 *
 * API (sink.h): sink_tls_ctx(cert, key). With both NULL the context has a
 * self-signed P-256 certificate made in memory (CN = "volley-sink", valid
 * for a year), so `--tls` works with no files; a test MTA must then not
 * verify certificates, which is what opportunistic STARTTLS does.
 * Failures are fatal: this runs once at start-up.
 */
#include "sink.h"

struct tls_ctx *
sink_tls_ctx(const char *cert, const char *key)
{
	char err[512];
	struct tls_ctx *x = tls_ctx_server(cert, key, "volley-sink", err, sizeof err);

	if (x == NULL)
		fatal("tls: %s", err);
	return x;
}
