/*
 * map.c - string-keyed open-addressing hash map (FNV-1a).
 */
#include "map.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static char tomb;
#define MAP_TOMB (&tomb)

static unsigned long
map_hash(const char *s)
{
	unsigned long h = 1469598103934665603UL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211UL;
	}
	return h;
}

static struct map_slot *
map_find(const struct map *m, const char *key, unsigned long h)
{
	size_t mask, i;

	if (m->cap == 0)
		return NULL;
	mask = m->cap - 1;
	for (i = h & mask;; i = (i + 1) & mask) {
		struct map_slot *s = &m->slots[i];
		if (s->key == NULL)
			return NULL;
		if (s->key != MAP_TOMB && s->hash == h && strcmp(s->key, key) == 0)
			return s;
	}
}

static void
map_grow(struct map *m)
{
	struct map_slot *old = m->slots;
	size_t oldcap = m->cap;

	m->cap = m->cap ? (m->len * 4 >= m->cap ? m->cap * 2 : m->cap) : 16;
	m->slots = xcalloc(m->cap, sizeof *m->slots);
	m->len = m->used = 0;
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].key == NULL || old[i].key == MAP_TOMB)
			continue;
		size_t mask = m->cap - 1, j;
		for (j = old[i].hash & mask; m->slots[j].key; j = (j + 1) & mask)
			;
		m->slots[j] = old[i];
		m->len++;
		m->used++;
	}
	free(old);
}

void *
map_get(const struct map *m, const char *key)
{
	struct map_slot *s = map_find(m, key, map_hash(key));

	return s ? s->val : NULL;
}

void
map_put(struct map *m, const char *key, void *val)
{
	unsigned long h = map_hash(key);
	struct map_slot *s = map_find(m, key, h);
	size_t mask, i;

	if (s) {
		s->val = val;
		return;
	}
	if ((m->used + 1) * 4 >= m->cap * 3)
		map_grow(m);
	mask = m->cap - 1;
	for (i = h & mask; m->slots[i].key && m->slots[i].key != MAP_TOMB; i = (i + 1) & mask)
		;
	if (m->slots[i].key == NULL)
		m->used++;
	m->slots[i].key = xstrdup(key);
	m->slots[i].val = val;
	m->slots[i].hash = h;
	m->len++;
}

void *
map_del(struct map *m, const char *key)
{
	struct map_slot *s = map_find(m, key, map_hash(key));
	void *v;

	if (s == NULL)
		return NULL;
	v = s->val;
	free(s->key);
	s->key = MAP_TOMB;
	s->val = NULL;
	m->len--;
	return v;
}

void
map_free(struct map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key && m->slots[i].key != MAP_TOMB)
			free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof *m);
}

int
map_iter(const struct map *m, size_t *i, const char **key, void **val)
{
	for (; *i < m->cap; (*i)++) {
		struct map_slot *s = &m->slots[*i];
		if (s->key && s->key != MAP_TOMB) {
			*key = s->key;
			*val = s->val;
			(*i)++;
			return 1;
		}
	}
	return 0;
}
