/* prepare_export.c: the export of a prepared set (prepare.h): the three
 * ColBERT training files and their manifest (sizes and content hashes),
 * written so that a kill leaves the old set or files the manifest does
 * not match; and the check of a set against its manifest. */
#include "prepare_read.h"
#include "fsutil.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

static const char *const OUT_NAMES[3] = {
    "queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl"};

/* File k of OUT_NAMES into f (named path in messages); its size and
 * content hash into *bytes, *hash. Returns 0, or -1. */
static int write_out(const prepare *p, int k, FILE *f, const char *path, uint64_t *bytes, uint64_t *hash,
                     cb_err *err) {
    data_writer w;
    if (cb_data_writer_init(&w, f, err)) return -1;
    if (k == 0) {
        for (size_t q = 0; q < p->q.n; q++)
            cb_data_write_text_line(&w, q, cb_strtab_get(&p->q, q), cb_strtab_len(&p->q, q));
    } else if (k == 1) {
        for (size_t pid = 0; pid < p->d.n; pid++) {
            uint32_t i = p->iid_of[pid];
            cb_data_write_text_line(&w, pid, cb_strtab_get(&p->d, i), cb_strtab_len(&p->d, i));
        }
    } else {
        for (size_t t = 0; t < p->ntrip; t++) cb_data_write_id_array(&w, p->trip + 3 * t, 3);
    }
    int bad = cb_data_writer_flush(&w), e = w.err_no;
    *bytes = w.hash.bytes;
    *hash = cb_data_hash_final(&w.hash);
    cb_data_writer_free(&w);
    return bad ? cb_err_set(err, "%s: write failed: %s", path, strerror(e)) : 0;
}

/* The manifest of a set of files: {"format", "version", "files": {name:
 * {"bytes", "hash"}}}. */
static json_t *manifest_json(const uint64_t *bytes, const uint64_t *hash) {
    json_t *files = json_object();
    for (int k = 0; k < 3; k++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash[k]);
        json_object_set_new(files, OUT_NAMES[k], json_pack("{s:I, s:s}", "bytes", (json_int_t)bytes[k], "hash", hex));
    }
    return json_pack("{s:s, s:i, s:o}", "format", "colbert.c prepare manifest", "version", 1, "files", files);
}

int cb_prepare_export(prepare *p, const char *out_dir, cb_err *err) {
    CB_ASSERT(p->ran);
    int created, ret = -1, k;
    if (cb_mkdirs(out_dir, &created, err)) return -1;
    char *final[3] = {NULL, NULL, NULL}, *tmp[3] = {NULL, NULL, NULL};
    char *man = cb_path_new(out_dir, CB_PREPARE_MANIFEST, err);
    uint64_t bytes[3], hash[3];
    /* what a killed prepare left here */
    for (k = 0; k < 3 && man; k++) {
        if (!(final[k] = cb_path_new(out_dir, OUT_NAMES[k], err)) || cb_out_remove_stale(final[k], err)) break;
    }
    if (k < 3 || !man || cb_out_remove_stale(man, err)) goto done;
    /* The set is replaced as a whole: all three under temporary names
     * (each fsync'd), then the manifest of the new set, then the renames.
     * A kill at any point leaves the old set, or files that disagree with
     * the manifest, which `colbert train` refuses (cb_prepare_check). */
    for (k = 0; k < 3; k++) {
        FILE *f = cb_out_open(final[k], &tmp[k], err);
        if (!f) break;
        if (write_out(p, k, f, final[k], &bytes[k], &hash[k], err)) {
            cb_out_abort(f, tmp[k]);
            tmp[k] = NULL;
            break;
        }
        if (cb_out_close(f, tmp[k], final[k], err)) break;   /* it removed tmp[k] */
    }
    if (k == 3) {
        json_t *j = manifest_json(bytes, hash);
        ret = j ? cb_json_write(man, j, err) : cb_err_set(err, "out of memory: the manifest");
        json_decref(j);
        for (int i = 0; i < 3 && !ret; i++) ret = cb_out_rename(tmp[i], final[i], err);
    }
done:
    for (int i = 0; i < 3; i++) {
        if (ret && tmp[i]) remove(tmp[i]);
        free(final[i]);
        free(tmp[i]);
    }
    free(man);
    if (ret && created) rmdir(out_dir);
    return ret;
}

/* Hash of the file at path into *hash (and its size into *bytes). */
static int hash_file(const char *path, uint64_t *bytes, uint64_t *hash, cb_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cb_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    char *buf = cb_malloc(1 << 20, "a read buffer", err);
    if (!buf) {
        fclose(f);
        return -1;
    }
    data_hash h;
    cb_data_hash_init(&h);
    size_t got;
    while ((got = fread(buf, 1, 1 << 20, f)) > 0) cb_data_hash_update(&h, buf, got);
    int bad = ferror(f);
    free(buf);
    fclose(f);
    if (bad) return cb_err_set(err, "%s: read error", path);
    *bytes = h.bytes;
    *hash = cb_data_hash_final(&h);
    return 0;
}

int cb_prepare_check(const char *dir, cb_err *err) {
    char *man = cb_path_new(dir, CB_PREPARE_MANIFEST, err);
    if (!man) return -1;
    if (!cb_file_exists(man)) {
        free(man);
        return 0;
    }
    int rc = -1;
    json_t *j = cb_json_load(man, JSON_REJECT_DUPLICATES, err);
    json_t *files = json_object_get(j, "files");
    if (!j) goto done;
    if (!json_is_object(files) || json_integer_value(json_object_get(j, "version")) != 1) {
        cb_err_set(err, "%s: not a prepare manifest of version 1 (no \"files\" object) (HINT: re-run `colbert "
                   "prepare --out %s`, or delete the manifest to use the files as they are)", man, dir);
        goto done;
    }
    for (int k = 0; k < 3; k++) {
        json_t *e = json_object_get(files, OUT_NAMES[k]);
        json_t *jb = json_object_get(e, "bytes"), *jh = json_object_get(e, "hash");
        const char *hs = json_string_value(jh);
        char *end = NULL;
        unsigned long long want_hash = hs ? strtoull(hs, &end, 16) : 0;
        if (!json_is_integer(jb) || json_integer_value(jb) < 0 || !hs || strlen(hs) != 16 || *end ||
            strspn(hs, "0123456789abcdef") != 16) {
            cb_err_set(err, "%s: files.\"%s\" must be {\"bytes\": integer >= 0, \"hash\": 16 hex digits} "
                       "(HINT: re-run `colbert prepare --out %s`, or delete the manifest to use the files as they "
                       "are)", man, OUT_NAMES[k], dir);
            goto done;
        }
        char *path = cb_path_new(dir, OUT_NAMES[k], err);
        uint64_t bytes = 0, hash = 0;
        int hr = path ? hash_file(path, &bytes, &hash, err) : -1;
        if (!hr && (bytes != (uint64_t)json_integer_value(jb) || hash != want_hash))
            hr = cb_err_set(err, "%s does not match %s (%llu bytes, the manifest says %lld%s): these files are "
                            "not one set (a `colbert prepare` was interrupted while replacing them, or a file "
                            "changed since) (HINT: re-run `colbert prepare --out %s`, or delete the manifest to "
                            "use the files as they are)", path, CB_PREPARE_MANIFEST, (unsigned long long)bytes,
                            (long long)json_integer_value(jb),
                            bytes == (uint64_t)json_integer_value(jb) ? ", with other contents" : "", dir);
        free(path);
        if (hr) goto done;
    }
    rc = 0;
done:
    json_decref(j);
    free(man);
    return rc;
}
