/*
 * listener.h - the inbound SMTP server on the engine's loop (inbound.listen):
 * a durable front door for DSNs and ARF reports addressed to the configured
 * inbound.domains. It never relays and never parses a report: after the
 * final dot it appends the raw message to the Redis stream PREFIXinbound
 * (rq_inbound_add) and answers 250 only once Redis has it, 451 4.3.0 when
 * Redis failed (the sender retries). The protocol is engine/smtp_server.c.
 *
 * API: listener_new() binds and starts accepting (fatal when the address
 * cannot be bound: a config error); listener_stop() at SIGTERM stops
 * accepting, closes idle sessions and lets transactions finish;
 * listener_abort() drops what is left (at the stop deadline);
 * listener_sessions() counts the sessions still open; listener_free()
 * frees it all once that count is 0 (else returns -1 and leaves the memory
 * to process exit, as the scheduler does). A reload (SIGHUP) keeps the
 * listener and its settings as they were at start.
 */
#ifndef VOLLEY_LISTENER_H
#define VOLLEY_LISTENER_H

struct config;
struct loop;
struct rq;
struct listener;

struct listener *listener_new(struct loop *l, struct rq *q, const struct config *cfg);
void listener_stop(struct listener *ls);
void listener_abort(struct listener *ls);
unsigned listener_sessions(const struct listener *ls);
int listener_free(struct listener *ls);

#endif
