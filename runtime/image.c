/* runtime/image.c -- 8-bit grayscale images as model inputs: PGM (P5 binary and
 * P2 ASCII, parsed here) and PNG (8-bit gray or RGB, through libpng's simplified
 * API, which converts colour to gray by luminance). Each becomes an f32 array
 * [1, H, W] of the values 0..255 (a PGM with maxval < 255 is stretched to that
 * range) passed through scale/shift like any loaded features. */
#include "runtime/internal.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMAGE_MAX_SIDE 65536               /* larger sides are rejected before allocating */
#define IMAGE_MAX_PIXELS ((size_t)1 << 28) /* and so are more pixels than this (1 GiB of f32) */
/* Deflate expands at most 1032:1 and a PNG row holds at least w/8 bytes and a
 * filter byte, so a PNG of len bytes has at most len * 8 * 1032 pixels. */
#define PNG_MAX_PIXELS_PER_BYTE (8 * 1032)

static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

int nrt_image_kind(const unsigned char *d, size_t len) {
    if (len >= 8 && memcmp(d, png_magic, 8) == 0) return 2;
    if (len >= 3 && d[0] == 'P' && (d[1] == '5' || d[1] == '2') &&
        (d[2] == ' ' || d[2] == '\t' || d[2] == '\n' || d[2] == '\r' || d[2] == '#'))
        return 1;
    return 0;
}

/* Skips whitespace and # comments of a PGM header. */
static size_t pgm_skip(const unsigned char *d, size_t len, size_t at) {
    while (at < len) {
        if (d[at] == '#')
            while (at < len && d[at] != '\n') at++;
        else if (d[at] == ' ' || d[at] == '\t' || d[at] == '\n' || d[at] == '\r' || d[at] == '\v' ||
                 d[at] == '\f')
            at++;
        else
            break;
    }
    return at;
}

/* A decimal number of a PGM file at *at; -1 if there is none or it is huge. */
static long pgm_number(const unsigned char *d, size_t len, size_t *at) {
    size_t i = pgm_skip(d, len, *at);
    long v = 0;
    size_t start = i;
    while (i < len && d[i] >= '0' && d[i] <= '9' && v <= 100000000) v = v * 10 + (d[i++] - '0');
    if (i == start || v > 100000000 || (i < len && !strchr(" \t\n\r\v\f#", d[i]))) return -1;
    *at = i;
    return v;
}

static int pgm_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                     const struct nrt_load_opts *opts) {
    int ascii = d[1] == '2';
    size_t at = 2;
    long w = pgm_number(d, len, &at), h = w < 0 ? -1 : pgm_number(d, len, &at);
    long maxval = h < 0 ? -1 : pgm_number(d, len, &at);
    if (w < 0 || h < 0 || maxval < 0)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: malformed PGM header (expected width, height and maxval)",
                             name);
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: PGM size %ldx%ld is out of range", name, w, h);
    if (maxval < 1 || maxval > 255)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: PGM maxval %ld is not supported (8-bit images only: 1..255)", name, maxval);
    size_t count = (size_t)w * (size_t)h;
    if (count > IMAGE_MAX_PIXELS)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: PGM size %ldx%ld is more than %zu pixels", name, w, h,
                             IMAGE_MAX_PIXELS);
    /* Check the size against the file before allocating: P5 has one byte per
     * pixel after one whitespace byte, P2 at least a separator and a digit. */
    if (!ascii && (at >= len || len - at - 1 < count))
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: truncated PGM: %ldx%ld needs %zu bytes of pixels, the file has %zu", name,
                             w, h, count, at < len ? len - at - 1 : 0);
    if (ascii && (len - at) / 2 < count)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: truncated PGM: %ldx%ld needs %zu pixels, the file has room for %zu", name,
                             w, h, count, (len - at) / 2);
    unsigned char *px = nrt_alloc(count, 0);
    if (!px) return nrt_error_prefix(NRT_ERR_NOMEM, name);
    int rc = NRT_OK;
    if (ascii) {
        for (size_t i = 0; i < count && !rc; i++) {
            long v = pgm_number(d, len, &at);
            if (v < 0)
                rc = nrt_error_set(NRT_ERR_FORMAT, "%s: PGM pixel %zu of %zu is missing or malformed", name,
                                   i + 1, count);
            else if (v > maxval)
                rc = nrt_error_set(NRT_ERR_FORMAT, "%s: PGM pixel %zu is %ld, above maxval %ld", name, i + 1,
                                   v, maxval);
            else
                px[i] = (unsigned char)((v * 255 + maxval / 2) / maxval);
        }
        if (!rc && pgm_skip(d, len, at) != len)
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s: data after the PGM's %zu pixels", name, count);
    } else {
        const unsigned char *src = d + at + 1; /* one whitespace byte ends the header */
        for (size_t i = 0; i < count && !rc; i++) {
            if (src[i] > maxval)
                rc = nrt_error_set(NRT_ERR_FORMAT, "%s: PGM pixel %zu is %d, above maxval %ld", name, i + 1,
                                   src[i], maxval);
            px[i] = (unsigned char)((src[i] * 255 + maxval / 2) / maxval);
        }
        if (!rc && len - at - 1 != count)
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s: %zu bytes after the PGM's pixels", name,
                               len - at - 1 - count);
    }
    int64_t dims[3] = {1, h, w};
    if (!rc) rc = nrt_array_convert(out, name, NRT_DT_U8, 0, px, 3, dims, opts);
    nrt_free(px);
    return rc;
}

static int png_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                     const struct nrt_load_opts *opts) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, d, len))
        return nrt_error_set(NRT_ERR_FORMAT, "%s: bad PNG: %s", name, img.message);
    size_t count = (size_t)img.width * img.height;
    if (img.width > IMAGE_MAX_SIDE || img.height > IMAGE_MAX_SIDE || count > IMAGE_MAX_PIXELS) {
        png_image_free(&img);
        return nrt_error_set(NRT_ERR_FORMAT, "%s: PNG size %ux%u is out of range", name, img.width,
                             img.height);
    }
    if (count / PNG_MAX_PIXELS_PER_BYTE > len) {
        png_image_free(&img);
        return nrt_error_set(NRT_ERR_FORMAT, "%s: truncated PNG: %ux%u pixels cannot fit in %zu bytes", name,
                             img.width, img.height, len);
    }
    img.format = PNG_FORMAT_GRAY;
    unsigned char *px = nrt_alloc(count, 0);
    if (!px) {
        png_image_free(&img);
        return nrt_error_prefix(NRT_ERR_NOMEM, name);
    }
    int rc = NRT_OK;
    if (!png_image_finish_read(&img, NULL, px, 0, NULL))
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s: bad PNG: %s", name, img.message);
    int64_t dims[3] = {1, img.height, img.width};
    if (!rc) rc = nrt_array_convert(out, name, NRT_DT_U8, 0, px, 3, dims, opts);
    png_image_free(&img);
    nrt_free(px);
    return rc;
}

int nrt_image_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                    const struct nrt_load_opts *opts) {
    memset(out, 0, sizeof *out);
    if (opts && opts->dtype != NRT_DT_F32)
        return nrt_error_set(NRT_ERR_ARG, "%s: images load as f32 features, not labels", name);
    switch (nrt_image_kind(d, len)) {
    case 1:
        return pgm_parse(out, name, d, len, opts);
    case 2:
        return png_parse(out, name, d, len, opts);
    default:
        return nrt_error_set(NRT_ERR_FORMAT, "%s: not a PGM (P5, P2) or PNG image", name);
    }
}

int nrt_image_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts) {
    unsigned char *d;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = nrt_file_read(path, &d, &len);
    if (rc) return rc;
    rc = nrt_image_parse(out, path, d, len, opts);
    nrt_free(d);
    return rc;
}
