/*
 * map.h - a string-keyed hash map (open addressing, linear probing,
 * tombstones), for the engine's job, destination and body tables.
 * Keys are copied; values are the caller's.
 */
#ifndef VOLLEY_MAP_H
#define VOLLEY_MAP_H

#include <stddef.h>

struct map_slot {
	char *key;		/* NULL empty; MAP_TOMB deleted */
	void *val;
	unsigned long hash;
};

struct map {
	struct map_slot *slots;
	size_t cap, len, used;	/* used = len + tombstones */
};

void *map_get(const struct map *m, const char *key);
/* Insert or replace. */
void map_put(struct map *m, const char *key, void *val);
/* Remove; returns the old value or NULL. */
void *map_del(struct map *m, const char *key);
void map_free(struct map *m);
/* Iterate: for (size_t i = 0; map_iter(m, &i, &key, &val); ) */
int map_iter(const struct map *m, size_t *i, const char **key, void **val);

#endif
