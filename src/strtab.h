/* strtab.h: a string table: texts interned to dense ids (0, 1, 2, ... in
 * order of first appearance) over one text arena.
 *
 * prepare keeps its queries and documents in two tables (each distinct text
 * once), the BEIR reader its ids. Memory is the distinct text plus about 20
 * bytes a text: one NUL-terminated arena, an offset and a hash per text, an
 * open-addressing slot table at most half full. Texts are compared by bytes
 * (equal hashes are resolved by memcmp), so ids never depend on the hash.
 *
 * A zero-initialised strtab is empty and ready; cb_strtab_free releases it.
 * Pointers from cb_strtab_get stay valid until the next insertion.
 */
#ifndef CB_STRTAB_H
#define CB_STRTAB_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

#define STRTAB_NONE UINT32_MAX   /* cb_strtab_find: absent */

typedef struct strtab {
    char *buf;          /* texts, each NUL-terminated */
    uint64_t nbuf, capbuf;
    uint64_t *off;      /* [n + 1] text i is buf[off[i] .. off[i + 1] - 1) */
    uint32_t *hlo;      /* [n] low hash bits, to re-insert when the slots grow */
    size_t n, cap;      /* texts, and room for them */
    uint64_t *slots;    /* [mask + 1]: hash high bits << 32 | (id + 1); 0 = empty */
    size_t mask;
} strtab;

void cb_strtab_free(strtab *t);

/* The id of s[0..n) in *id: the existing one (*is_new = 0) or a new one
 * appended (*is_new = 1); is_new may be NULL. Returns 0, or -1 with err when
 * out of memory or past 2^31 texts. */
int cb_strtab_intern(strtab *t, const char *s, size_t n, uint32_t *id, int *is_new, cb_err *err);

/* Append s[0..n) as a new text without interning (for a table of texts
 * that is only read by id, such as BEIR's query texts; cb_strtab_find does not
 * see them). Returns 0 with *id (may be NULL), or -1 with err. */
int cb_strtab_append(strtab *t, const char *s, size_t n, uint32_t *id, cb_err *err);

/* Id of s[0..n) if interned, else STRTAB_NONE. */
uint32_t cb_strtab_find(const strtab *t, const char *s, size_t n);

/* Text id (NUL-terminated) and its length in bytes. */
static inline const char *cb_strtab_get(const strtab *t, size_t id) { return t->buf + t->off[id]; }
static inline size_t cb_strtab_len(const strtab *t, size_t id) {
    return (size_t)(t->off[id + 1] - t->off[id] - 1);
}
#endif
