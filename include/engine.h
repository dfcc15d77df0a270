/*
 * engine.h - `volley run`: jobs from Redis, destinations, sessions.
 *
 * The engine owns the live jobs (keyed by stream entry ID, so a job read
 * twice is held once), the destinations (pool + recipient domain), and the
 * sessions. Data flows one way (design.md): Redis -> decode/validate ->
 * suppression -> body -> destination queue -> session -> outcome ->
 * settling write (final event + ack, or deferral) back to Redis.
 */
#ifndef VOLLEY_ENGINE_H
#define VOLLEY_ENGINE_H

struct config;

struct engine_opts {
	int drain;		/* exit 0 once nothing is left to do */
	int progress;		/* live progress line on stderr */
};

/* Runs until SIGTERM/SIGINT (or drained). Returns the exit code. */
int engine_run(struct config *cfg, const char *config_path, const struct engine_opts *o);

#endif
