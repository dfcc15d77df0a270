/*
 * signer.h - the DKIM signing worker pool: RSA signatures off the loop.
 *
 * RSA-2048 costs about 0.3 ms of CPU a signature; a message that needs
 * its own signature (a per-recipient List-Unsubscribe URL) would make the
 * loop pay it per message. The pool runs dkim_sign_message() on a few
 * threads instead:
 *
 *   loop:    signer_submit()  -> bounded request queue (mutex + condvar)
 *   worker:  dkim_sign_message() on owned copies -> result queue, and a
 *            write to an eventfd when that queue was empty
 *   loop:    a read of the eventfd completes on the ring -> every result
 *            is handed to its done() callback, on the loop thread
 *
 * A request carries what it needs by value: a reference on the body
 * (taken and dropped on the loop thread only; the worker reads the
 * body's immutable data), a copy of the extra fields and of the body's
 * cached hashes (the result's hashes are merged back into the body on
 * the loop), and a reference on the signer's own copy of the signers
 * (a key set: the configuration's array is copied at the first submit
 * that names it, the keys shared by reference). A reloaded configuration
 * may free its signers at once: signer_rekey() makes the next submit copy
 * the new ones, and requests in flight finish with the old copy, freed by
 * the last of them. A reload never waits for a worker.
 *
 * Workers only compute and write the eventfd: no logging, no loop, no
 * reference counts. Every submitted request ends exactly once: its done()
 * runs on the loop, or it was cancelled (signer_cancel, signer_free) and
 * done() never runs.
 */
#ifndef VOLLEY_SIGNER_H
#define VOLLEY_SIGNER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dkim.h"

struct loop;
struct msg_body;
struct signer;
struct signer_req;

/*
 * done - on the loop thread: st and, when DKIM_SIGNED, sig (malloc'd,
 * the callee owns it) of siglen bytes. The body's cached hashes were
 * already updated.
 */
typedef void (*signer_done_fn)(void *arg, enum dkim_status st, char *sig, size_t siglen);

/*
 * signer_new - nthreads workers (>= 1) and room for max_queue requests
 * queued or in progress. Fails with fatal() when a thread or the eventfd
 * cannot be created.
 */
struct signer *signer_new(struct loop *l, unsigned nthreads, unsigned max_queue);

/*
 * signer_submit - sign body b (DKIM_STUFFED data) with the signers
 * v[0..n), extra[0..extra_len) being the fields sent above it and signed
 * too, t= now. Returns a handle for signer_cancel, valid until done()
 * runs; NULL when the queue is full (sign on the caller's thread then).
 */
struct signer_req *signer_submit(struct signer *s, const struct dkim_signer *v, size_t n,
    struct msg_body *b, const char *extra, size_t extra_len, time_t now, signer_done_fn done,
    void *arg);

/* signer_cancel - done() will not run for r; its result, if any, is dropped. */
void signer_cancel(struct signer *s, struct signer_req *r);

/*
 * signer_rekey - the configuration's signers changed (a reload): the next
 * submit copies the array it is given even if it sits where the old one
 * was. Does not wait: requests in flight keep their key set.
 */
void signer_rekey(struct signer *s);

/*
 * signer_quiesce - block until no request is queued or being signed (the
 * results may still wait for the loop). At most the queue's length of
 * signatures. Tests only: a reload does not need it (signer_rekey).
 */
void signer_quiesce(struct signer *s);

/* Requests queued or signed but not yet handed back. */
size_t signer_pending(const struct signer *s);
/* Requests queued or being signed (not yet signed): a snapshot. */
size_t signer_to_sign(struct signer *s);
unsigned signer_threads(const struct signer *s);

/*
 * signer_free - cancel every request (no done() runs), join the workers.
 * The eventfd read in flight completes on a later loop turn, which frees
 * what is left; turn the loop a few times before loop_free().
 */
void signer_free(struct signer *s);

#endif
