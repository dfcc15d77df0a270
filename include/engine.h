/*
 * engine.h - `volley run`: jobs from Redis, destinations, sessions.
 *
 * engine_run() wires the parts (engine.c lists which file owns each step
 * of a job's life) and runs the loop. Data flows one way: Redis ->
 * decode/validate -> suppression -> body -> destination queue -> session
 * -> outcome -> settling write (final event + ack, or deferral) -> Redis.
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
