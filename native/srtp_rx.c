/*
 * srtp_rx.c - SRTP/SRTCP unprotect with OpenSSL libcrypto, accepting and
 * refusing what libsrtp 2.7 does (see srtp_rx.h). The order of the checks is
 * libsrtp's, so a bad packet gets the same error number.
 */
#include "srtp_rx.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define RTCP_WINDOW 128

static void keys_free(en_srtp_keys *k)
{
    if (k->ctx != NULL)
        EVP_CIPHER_CTX_free(k->ctx);
    memset(k, 0, sizeof *k);
}

/* Session keys for RTP (labels 0, 1, 2) or RTCP (3, 4, 5), RFC 3711 section 4.3. */
static int keys_init(en_srtp_keys *k, int profile, const uint8_t *master, int rtcp)
{
    unsigned key_len, salt_len;
    uint8_t salt14[14] = {0}, session_key[32], auth_key[20];
    uint8_t base = rtcp ? 3 : 0;
    const EVP_CIPHER *cipher;
    int ok = 0;

    memset(k, 0, sizeof *k);
    if (!en_srtp_master_lengths(profile, &key_len, &salt_len))
        return 0;
    memcpy(salt14, master + key_len, salt_len);
    k->aead = profile == EN_SRTP_AEAD_AES_128_GCM || profile == EN_SRTP_AEAD_AES_256_GCM;
    if (!en_srtp_kdf(master, key_len, salt14, base, session_key, key_len) ||
        !en_srtp_kdf(master, key_len, salt14, base + 2, k->salt, k->aead ? 12 : 14))
        goto done;
    k->ctx = EVP_CIPHER_CTX_new();
    if (k->ctx == NULL)
        goto done;
    if (k->aead) {
        k->tag_len = 16;
        cipher = key_len == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
        if (EVP_DecryptInit_ex(k->ctx, cipher, NULL, session_key, NULL) != 1)
            goto done;
    } else {
        /* SRTCP keeps the 80-bit tag with the _32 profile (libsrtp, RFC 3711). */
        k->tag_len = (profile == EN_SRTP_AES128_CM_SHA1_32 && !rtcp) ? 4 : 10;
        if (!en_srtp_kdf(master, key_len, salt14, base + 1, auth_key, 20))
            goto done;
        en_hmac_sha1_init(&k->hmac_inner, &k->hmac_outer, auth_key);
        /* Counter mode: decryption is encryption. */
        if (EVP_EncryptInit_ex(k->ctx, EVP_aes_128_ctr(), NULL, session_key, NULL) != 1)
            goto done;
    }
    ok = 1;
done:
    memset(session_key, 0, sizeof session_key);
    memset(auth_key, 0, sizeof auth_key);
    if (!ok)
        keys_free(k);
    return ok;
}

int en_srtp_rx_init(en_srtp_rx *rx, int profile, const uint8_t *master, size_t master_len,
                    unsigned window_size)
{
    unsigned key_len, salt_len;
    memset(rx, 0, sizeof *rx);
    if (!en_srtp_master_lengths(profile, &key_len, &salt_len) || master_len < key_len + salt_len ||
        window_size == 0 || window_size > (1u << 15))
        return 0;
    rx->profile = profile;
    rx->window = (window_size + 31u) & ~31u; /* libsrtp's bitvector_alloc rounding */
    if (!keys_init(&rx->rtp, profile, master, 0) || !keys_init(&rx->rtcp, profile, master, 1)) {
        en_srtp_rx_free(rx);
        return 0;
    }
    return 1;
}

void en_srtp_rx_free(en_srtp_rx *rx)
{
    size_t i;
    keys_free(&rx->rtp);
    keys_free(&rx->rtcp);
    for (i = 0; i < rx->nstreams; i++)
        free(rx->streams[i].bits);
    free(rx->streams);
    memset(rx, 0, sizeof *rx);
}

static en_srtp_rx_stream *find_stream(en_srtp_rx *rx, uint32_t ssrc)
{
    size_t i;
    if (rx->last < rx->nstreams && rx->streams[rx->last].ssrc == ssrc)
        return &rx->streams[rx->last];
    for (i = 0; i < rx->nstreams; i++)
        if (rx->streams[i].ssrc == ssrc) {
            rx->last = i;
            return &rx->streams[i];
        }
    return NULL;
}

/* srtp_stream_clone: a fresh stream for an SSRC whose first packet authenticated. */
static en_srtp_rx_stream *add_stream(en_srtp_rx *rx, uint32_t ssrc)
{
    en_srtp_rx_stream *s;
    if (rx->nstreams == rx->cap) {
        size_t cap = rx->cap ? rx->cap * 2 : 4;
        en_srtp_rx_stream *grown = realloc(rx->streams, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        rx->streams = grown;
        rx->cap = cap;
    }
    s = &rx->streams[rx->nstreams];
    memset(s, 0, sizeof *s);
    s->bits = calloc(rx->window / 32, sizeof(uint32_t));
    if (s->bits == NULL)
        return NULL;
    s->ssrc = ssrc;
    rx->last = rx->nstreams++;
    return s;
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* --- SRTP replay database (libsrtp rdbx) ------------------------------------------ */

static inline int rdbx_bit(const en_srtp_rx *rx, const en_srtp_rx_stream *s, uint64_t idx)
{
    uint32_t pos = (uint32_t)(idx % rx->window);
    return (s->bits[pos >> 5] >> (pos & 31)) & 1;
}

/* srtp_rdbx_check */
static int rdbx_check(const en_srtp_rx *rx, const en_srtp_rx_stream *s, int32_t delta)
{
    if (delta > 0)
        return EN_SRTP_OK;
    if ((int64_t)rx->window - 1 + delta < 0)
        return EN_SRTP_ERR_REPLAY_OLD;
    if (rdbx_bit(rx, s, s->index + (int64_t)delta))
        return EN_SRTP_ERR_REPLAY_FAIL;
    return EN_SRTP_OK;
}

/* srtp_rdbx_add_index */
static void rdbx_add(const en_srtp_rx *rx, en_srtp_rx_stream *s, int32_t delta)
{
    uint64_t idx;
    uint32_t pos;
    if (delta > 0) {
        uint32_t k, clear = (uint32_t)delta < rx->window ? (uint32_t)delta : rx->window;
        for (k = 1; k <= clear; k++) {
            pos = (uint32_t)((s->index + k) % rx->window);
            s->bits[pos >> 5] &= ~(1u << (pos & 31));
        }
        s->index += (uint16_t)delta;
        idx = s->index;
    } else {
        idx = s->index + (int64_t)delta;
    }
    pos = (uint32_t)(idx % rx->window);
    s->bits[pos >> 5] |= 1u << (pos & 31);
}

/* --- SRTCP replay database (libsrtp rdb) ------------------------------------------ */

static int rdb_check(const en_srtp_rx_stream *s, uint32_t idx)
{
    if ((uint64_t)idx >= (uint64_t)s->rtcp_start + RTCP_WINDOW)
        return EN_SRTP_OK;
    if (idx < s->rtcp_start)
        return EN_SRTP_ERR_REPLAY_OLD;
    if ((s->rtcp_bits >> (idx - s->rtcp_start)) & 1)
        return EN_SRTP_ERR_REPLAY_FAIL;
    return EN_SRTP_OK;
}

static void rdb_add(en_srtp_rx_stream *s, uint32_t idx)
{
    uint32_t delta;
    if (idx < s->rtcp_start)
        return;
    delta = idx - s->rtcp_start;
    if (delta < RTCP_WINDOW) {
        s->rtcp_bits |= (unsigned __int128)1 << delta;
    } else {
        delta -= RTCP_WINDOW - 1;
        s->rtcp_bits = delta >= RTCP_WINDOW ? 0 : s->rtcp_bits >> delta;
        s->rtcp_bits |= (unsigned __int128)1 << (RTCP_WINDOW - 1);
        s->rtcp_start += delta;
    }
}

/* --- crypto ------------------------------------------------------------------------- */

/* HMAC-SHA1 over a then b (b may be empty), compared in constant time with tag. */
static int hmac_ok(const en_srtp_keys *k, const uint8_t *a, size_t a_len, const uint8_t *b,
                   size_t b_len, const uint8_t *tag)
{
    uint8_t mac[SHA_DIGEST_LENGTH];
    en_hmac_sha1(&k->hmac_inner, &k->hmac_outer, a, a_len, b, b_len, mac);
    return CRYPTO_memcmp(mac, tag, k->tag_len) == 0;
}

static int ctr_xor(const en_srtp_keys *k, const uint8_t ctr[16], uint8_t *data, size_t len)
{
    int n = 0;
    if (EVP_EncryptInit_ex(k->ctx, NULL, NULL, NULL, ctr) != 1)
        return EN_SRTP_ERR_CIPHER;
    if (len && EVP_EncryptUpdate(k->ctx, data, &n, data, (int)len) != 1)
        return EN_SRTP_ERR_CIPHER;
    return EN_SRTP_OK;
}

/* GCM open: aad1 (+ aad2), data[0:len] in place, tag; EN_SRTP_ERR_AUTH if it does not verify. */
static int gcm_open(const en_srtp_keys *k, const uint8_t iv[12], const uint8_t *aad1, size_t aad1_len,
                    const uint8_t *aad2, size_t aad2_len, uint8_t *data, size_t len,
                    const uint8_t *tag)
{
    int n = 0;
    uint8_t tag_copy[16];
    memcpy(tag_copy, tag, 16);
    if (EVP_DecryptInit_ex(k->ctx, NULL, NULL, NULL, iv) != 1)
        return EN_SRTP_ERR_CIPHER;
    if (EVP_CIPHER_CTX_ctrl(k->ctx, EVP_CTRL_GCM_SET_TAG, 16, tag_copy) != 1)
        return EN_SRTP_ERR_AUTH;
    if (aad1_len && EVP_DecryptUpdate(k->ctx, NULL, &n, aad1, (int)aad1_len) != 1)
        return EN_SRTP_ERR_CIPHER;
    if (aad2_len && EVP_DecryptUpdate(k->ctx, NULL, &n, aad2, (int)aad2_len) != 1)
        return EN_SRTP_ERR_CIPHER;
    if (len && EVP_DecryptUpdate(k->ctx, data, &n, data, (int)len) != 1)
        return EN_SRTP_ERR_CIPHER;
    if (EVP_DecryptFinal_ex(k->ctx, data + len, &n) <= 0)
        return EN_SRTP_ERR_AUTH;
    return EN_SRTP_OK;
}

/* --- SRTP ----------------------------------------------------------------------------- */

int en_srtp_unprotect(en_srtp_rx *rx, uint8_t *buf, size_t len)
{
    const en_srtp_keys *k = &rx->rtp;
    en_srtp_rx_stream *s;
    size_t hdr_len;
    uint32_t ssrc, roc;
    uint16_t seq;
    uint64_t est;
    int32_t delta;
    int err;

    /* srtp_validate_rtp_header */
    if (len < 12)
        return -EN_SRTP_ERR_BAD_PARAM;
    hdr_len = en_srtp_rtp_header_len(buf, len);
    if (hdr_len == 0)
        return -EN_SRTP_ERR_BAD_PARAM;

    ssrc = get_be32(buf + 8);
    seq = (uint16_t)((buf[2] << 8) | buf[3]);
    s = find_stream(rx, ssrc);
    if (s == NULL) {
        est = seq; /* the provisional (template) stream: index = seq, no replay check */
        delta = (int32_t)seq;
    } else {
        delta = en_srtp_estimate_index(s->index, &est, seq);
        err = rdbx_check(rx, s, delta);
        if (err)
            return -err;
    }
    roc = (uint32_t)(est >> 16);
    /* libsrtp's unsigned arithmetic: with len < tag the position check passes
     * and the AEAD path then refuses a ciphertext shorter than its tag. */
    if (len >= k->tag_len && hdr_len > len - k->tag_len)
        return -EN_SRTP_ERR_PARSE;
    if (len - hdr_len < k->tag_len)
        return -EN_SRTP_ERR_CIPHER;

    if (k->aead) {
        uint8_t iv[12];
        int i;
        iv[0] = iv[1] = 0;
        memcpy(iv + 2, buf + 8, 4);
        put_be32(iv + 6, roc);
        iv[10] = buf[2];
        iv[11] = buf[3];
        for (i = 0; i < 12; i++)
            iv[i] ^= k->salt[i];
        err = gcm_open(k, iv, buf, hdr_len, NULL, 0, buf + hdr_len, len - hdr_len - 16,
                       buf + len - 16);
        if (err)
            return -err;
    } else {
        uint8_t ctr[16] = {0}, roc_be[4];
        int i;
        put_be32(roc_be, roc);
        if (!hmac_ok(k, buf, len - k->tag_len, roc_be, 4, buf + len - k->tag_len))
            return -EN_SRTP_ERR_AUTH;
        memcpy(ctr + 4, buf + 8, 4);
        put_be32(ctr + 8, roc);
        ctr[12] = buf[2];
        ctr[13] = buf[3];
        for (i = 0; i < 14; i++)
            ctr[i] ^= k->salt[i];
        err = ctr_xor(k, ctr, buf + hdr_len, len - hdr_len - k->tag_len);
        if (err)
            return -err;
    }
    if (s == NULL) {
        s = add_stream(rx, ssrc);
        if (s == NULL)
            return -EN_SRTP_ERR_FAIL;
    }
    rdbx_add(rx, s, delta);
    return (int)(len - k->tag_len);
}

/* --- SRTCP ---------------------------------------------------------------------------- */

int en_srtp_unprotect_rtcp(en_srtp_rx *rx, uint8_t *buf, size_t len)
{
    const en_srtp_keys *k = &rx->rtcp;
    en_srtp_rx_stream *s;
    uint32_t ssrc, trailer, idx;
    const uint8_t *trailer_p;
    int encrypted, err;

    if (len < 8 + 4)
        return -EN_SRTP_ERR_BAD_PARAM;
    ssrc = get_be32(buf + 4);
    s = find_stream(rx, ssrc);
    if (len < 8 + k->tag_len + 4)
        return -EN_SRTP_ERR_BAD_PARAM;

    if (k->aead) {
        /* RFC 7714 section 9: header | ciphertext | tag | E + index */
        uint8_t iv[12];
        int i;
        trailer_p = buf + len - 4;
        trailer = get_be32(trailer_p);
        encrypted = (trailer_p[0] & 0x80) != 0;
        idx = trailer & 0x7FFFFFFF;
        if (s != NULL && (err = rdb_check(s, idx)) != 0)
            return -err;
        iv[0] = iv[1] = 0;
        memcpy(iv + 2, buf + 4, 4);
        iv[6] = iv[7] = 0;
        put_be32(iv + 8, idx);
        for (i = 0; i < 12; i++)
            iv[i] ^= k->salt[i];
        if (encrypted)
            err = gcm_open(k, iv, buf, 8, trailer_p, 4, buf + 8, len - 8 - 16 - 4, buf + len - 4 - 16);
        else
            err = gcm_open(k, iv, buf, len - 16 - 4, trailer_p, 4, NULL, 0, buf + len - 4 - 16);
        if (err)
            return -err;
        len -= 16 + 4;
    } else {
        /* RFC 3711 section 3.4: header | ciphertext | E + index | tag */
        uint8_t ctr[16] = {0};
        int i;
        trailer_p = buf + len - k->tag_len - 4;
        trailer = get_be32(trailer_p);
        encrypted = (trailer_p[0] & 0x80) != 0;
        if (!encrypted) /* the session asks for confidentiality */
            return -EN_SRTP_ERR_CANT_CHECK;
        idx = trailer & 0x7FFFFFFF;
        if (s != NULL && (err = rdb_check(s, idx)) != 0)
            return -err;
        if (!hmac_ok(k, buf, len - k->tag_len, NULL, 0, buf + len - k->tag_len))
            return -EN_SRTP_ERR_AUTH;
        memcpy(ctr + 4, buf + 4, 4);
        put_be32(ctr + 10, idx);
        for (i = 0; i < 14; i++)
            ctr[i] ^= k->salt[i];
        err = ctr_xor(k, ctr, buf + 8, len - 8 - k->tag_len - 4);
        if (err)
            return -err;
        len -= k->tag_len + 4;
    }
    if (s == NULL) {
        s = add_stream(rx, ssrc);
        if (s == NULL)
            return -EN_SRTP_ERR_FAIL;
    }
    rdb_add(s, idx);
    return (int)len;
}
