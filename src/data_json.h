/* data_json.h: a small strict JSON parser for one line of a JSONL file
 * (RFC 8259) into a flat array of nodes. Strings are decoded in place in the
 * line buffer and checked to be valid UTF-8; long plain-ASCII strings are
 * scanned 16 or 32 bytes at a time. Used for training records, BEIR files
 * and triples, where jansson's tree of allocations per value is too slow.
 */
#ifndef CB_DATA_JSON_H
#define CB_DATA_JSON_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef enum {
    DJ_NULL, DJ_FALSE, DJ_TRUE, DJ_NUMBER, DJ_STRING, DJ_ARRAY, DJ_OBJECT
} dj_type;   /* prefixed: jansson.h owns the JSON_ names */

/* One node of a parsed value, in document order. An array node is followed
 * by its elements, an object node by key, value, key, value... (each key a
 * DJ_STRING node); `next` is the index just past this node's subtree, so
 * children are walked with `for (i = first child; ...; i = nodes[i].next)`. */
typedef struct dj_node {
    dj_type type;
    uint32_t n;         /* elements of an array, members of an object */
    uint32_t next;
    const char *s;      /* string: decoded UTF-8 (in the line buffer); number: its text */
    size_t len;
    double num;         /* number value */
    int64_t i;          /* number value when is_int */
    int is_int;         /* number without fraction or exponent that fits int64 */
} dj_node;

typedef struct data_json {
    dj_node *nodes;
    size_t n, cap;
} data_json;

/* Parse the whole of line[0..len) as one JSON value (surrounding white space
 * allowed, nothing else). Strings are decoded in place, so line is modified
 * and must outlive the nodes. Returns 0, or -1 with err = "invalid JSON at
 * column C: expected X, found Y" or "invalid UTF-8 at column C" (the caller
 * prefixes FILE:LINE), or "out of memory: ..." for the node array. Nodes are
 * in j->nodes[0..j->n), the root at 0. j starts zeroed and is reused line
 * after line; cb_data_json_free releases it. */
int cb_data_json_parse(data_json *j, char *line, size_t len, cb_err *err);
void cb_data_json_free(data_json *j);
/* Value of member `key` of the object at index obj, or -1 when absent. */
int64_t cb_data_json_get(const data_json *j, size_t obj, const char *key);
/* "string", "number", ... for messages. */
const char *cb_data_json_type_name(dj_type t);
#endif
