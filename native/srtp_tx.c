/*
 * srtp_tx.c - SRTP protect (RFC 3711 AES-CM + HMAC-SHA1, RFC 7714 AES-GCM) with
 * OpenSSL libcrypto, byte-compatible with libsrtp 2.7 (see srtp_tx.h).
 */
#include "srtp_tx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEQ_NUM_MEDIAN (1 << 15)
#define SEQ_NUM_MAX (1 << 16)

int en_srtp_master_lengths(int profile, unsigned *key_len, unsigned *salt_len)
{
    switch (profile) {
    case EN_SRTP_AES128_CM_SHA1_80:
    case EN_SRTP_AES128_CM_SHA1_32:
        *key_len = 16;
        *salt_len = 14;
        return 1;
    case EN_SRTP_AEAD_AES_128_GCM:
        *key_len = 16;
        *salt_len = 12;
        return 1;
    case EN_SRTP_AEAD_AES_256_GCM:
        *key_len = 32;
        *salt_len = 12;
        return 1;
    default:
        return 0;
    }
}

/* libsrtp's srtp_err_status_t messages as pylibsrtp words them (its ERRORS). */
static const char *const error_messages[] = {
    "nothing to report",
    "unspecified failure",
    "unsupported parameter",
    "couldn't allocate memory",
    "couldn't deallocate properly",
    "couldn't initialize",
    "can't process as much data as requested",
    "authentication failure",
    "cipher failure",
    "replay check failed (bad index)",
    "replay check failed (index too old)",
    "algorithm failed test routine",
    "unsupported operation",
    "no appropriate context found",
    "unable to perform desired validation",
    "can't use key any more",
    "error in use of socket",
    "error in use POSIX signals",
    "nonce check failed",
    "couldn't read data",
    "couldn't write data",
    "error parsing data",
};

const char *en_srtp_error_message(int err)
{
    if (err < 0 || err >= (int)(sizeof error_messages / sizeof error_messages[0]))
        return "unspecified failure";
    return error_messages[err];
}

/*
 * The SRTP key derivation function (RFC 3711 section 4.3.1, key derivation
 * rate 0): AES in counter mode keyed with the master key, the counter block
 * being the master salt (zero-padded to 14 bytes: RFC 7714 section 11 keeps
 * the 112-bit KDF for its 96-bit salts) with the label XORed into byte 7.
 */
int en_srtp_kdf(const uint8_t *master_key, unsigned key_len, const uint8_t salt14[14],
               uint8_t label, uint8_t *out, unsigned out_len)
{
    uint8_t iv[16] = {0};
    uint8_t zeros[64] = {0};
    int n = 0, ok;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || out_len > sizeof zeros)
        return 0;
    memcpy(iv, salt14, 14);
    iv[7] ^= label;
    ok = EVP_EncryptInit_ex(ctx, key_len == 32 ? EVP_aes_256_ctr() : EVP_aes_128_ctr(), NULL,
                            master_key, iv) == 1 &&
         EVP_EncryptUpdate(ctx, out, &n, zeros, (int)out_len) == 1 && n == (int)out_len;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

int en_srtp_tx_init(en_srtp_tx *tx, int profile, const uint8_t *master, size_t master_len,
                    unsigned window_size)
{
    unsigned key_len, salt_len;
    uint8_t salt14[14] = {0};
    uint8_t session_key[32];
    uint8_t auth_key[20];
    const EVP_CIPHER *cipher;

    memset(tx, 0, sizeof *tx);
    if (!en_srtp_master_lengths(profile, &key_len, &salt_len) || master_len < key_len + salt_len ||
        window_size == 0 || window_size > (1u << 15))
        return 0;
    memcpy(salt14, master + key_len, salt_len);
    tx->profile = profile;
    tx->aead = profile == EN_SRTP_AEAD_AES_128_GCM || profile == EN_SRTP_AEAD_AES_256_GCM;

    if (!en_srtp_kdf(master, key_len, salt14, 0x00, session_key, key_len) ||
        !en_srtp_kdf(master, key_len, salt14, 0x02, tx->salt, tx->aead ? 12 : 14))
        goto fail;

    if (tx->aead) {
        tx->tag_len = 16;
        cipher = key_len == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
    } else {
        tx->tag_len = profile == EN_SRTP_AES128_CM_SHA1_80 ? 10 : 4;
        cipher = EVP_aes_128_ctr();
        if (!en_srtp_kdf(master, key_len, salt14, 0x01, auth_key, 20))
            goto fail;
        en_hmac_sha1_init(&tx->hmac_inner, &tx->hmac_outer, auth_key);
    }
    tx->ctx = EVP_CIPHER_CTX_new();
    if (tx->ctx == NULL || EVP_EncryptInit_ex(tx->ctx, cipher, NULL, session_key, NULL) != 1)
        goto fail;

    /* libsrtp's bitvector_alloc rounds the window up to whole 32-bit words. */
    tx->window = (window_size + 31u) & ~31u;
    tx->bits = calloc(tx->window / 32, sizeof(uint32_t));
    if (tx->bits == NULL)
        goto fail;
    tx->index = 0;
    memset(session_key, 0, sizeof session_key);
    memset(auth_key, 0, sizeof auth_key);
    return 1;

fail:
    memset(session_key, 0, sizeof session_key);
    memset(auth_key, 0, sizeof auth_key);
    en_srtp_tx_free(tx);
    return 0;
}

void en_srtp_tx_free(en_srtp_tx *tx)
{
    if (tx->ctx != NULL)
        EVP_CIPHER_CTX_free(tx->ctx);
    free(tx->bits);
    memset(tx, 0, sizeof *tx);
}

/* --- the replay database (libsrtp crypto/replay/rdbx.c, 64-bit math) ------------ */

static inline int bit_get(const en_srtp_tx *tx, uint64_t idx)
{
    uint32_t pos = (uint32_t)(idx % tx->window);
    return (tx->bits[pos >> 5] >> (pos & 31)) & 1;
}

static inline void bit_set(en_srtp_tx *tx, uint64_t idx)
{
    uint32_t pos = (uint32_t)(idx % tx->window);
    tx->bits[pos >> 5] |= 1u << (pos & 31);
}

static inline void bit_clear(en_srtp_tx *tx, uint64_t idx)
{
    uint32_t pos = (uint32_t)(idx % tx->window);
    tx->bits[pos >> 5] &= ~(1u << (pos & 31));
}

/* srtp_validate_rtp_header: the RTP header's length (fixed part, CSRCs, extension
 * block), or 0 when the packet (len >= 12) is too short to hold it. */
size_t en_srtp_rtp_header_len(const uint8_t *buf, size_t len)
{
    size_t hdr_len = 12 + 4 * (size_t)(buf[0] & 0x0F);
    if (len < hdr_len)
        return 0;
    if (buf[0] & 0x10) {
        if (len < hdr_len + 4)
            return 0;
        hdr_len += 4 * ((size_t)((buf[hdr_len + 2] << 8) | buf[hdr_len + 3]) + 1);
        if (len < hdr_len)
            return 0;
    }
    return hdr_len;
}

/* HMAC-SHA1 (RFC 2104) with the inner and outer pad blocks hashed once per key. */
void en_hmac_sha1_init(SHA_CTX *inner, SHA_CTX *outer, const uint8_t key[20])
{
    uint8_t pad[64];
    int i;
    memset(pad, 0x36, sizeof pad);
    for (i = 0; i < 20; i++)
        pad[i] ^= key[i];
    SHA1_Init(inner);
    SHA1_Update(inner, pad, sizeof pad);
    memset(pad, 0x5c, sizeof pad);
    for (i = 0; i < 20; i++)
        pad[i] ^= key[i];
    SHA1_Init(outer);
    SHA1_Update(outer, pad, sizeof pad);
    memset(pad, 0, sizeof pad);
}

/* The MAC of a then b (b may be empty) from the prepared pad states. */
void en_hmac_sha1(const SHA_CTX *inner, const SHA_CTX *outer, const uint8_t *a, size_t a_len,
                  const uint8_t *b, size_t b_len, uint8_t mac[20])
{
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA_CTX sha = *inner;
    SHA1_Update(&sha, a, a_len);
    if (b_len)
        SHA1_Update(&sha, b, b_len);
    SHA1_Final(digest, &sha);
    sha = *outer;
    SHA1_Update(&sha, digest, sizeof digest);
    SHA1_Final(mac, &sha);
}

/* srtp_rdbx_estimate_index / srtp_index_guess: the 48-bit index of `s`, given the
 * newest index seen so far (RFC 3711 section 3.3.1); shared by the send and
 * receive sides (srtp_rx.c). Returns `s`'s distance from that newest index. */
int32_t en_srtp_estimate_index(uint64_t index, uint64_t *guess, uint16_t s)
{
    uint32_t local_roc, guess_roc;
    uint16_t local_seq;
    int32_t difference;

    if (index <= SEQ_NUM_MEDIAN) {
        *guess = s;
        return (int32_t)s - (int32_t)(uint16_t)index;
    }
    local_roc = (uint32_t)(index >> 16);
    local_seq = (uint16_t)index;
    if (local_seq < SEQ_NUM_MEDIAN) {
        if ((int32_t)s - (int32_t)local_seq > SEQ_NUM_MEDIAN) {
            guess_roc = local_roc - 1;
            difference = (int32_t)s - (int32_t)local_seq - SEQ_NUM_MAX;
        } else {
            guess_roc = local_roc;
            difference = (int32_t)s - (int32_t)local_seq;
        }
    } else {
        if ((int32_t)local_seq - SEQ_NUM_MEDIAN > (int32_t)s) {
            guess_roc = local_roc + 1;
            difference = (int32_t)s - (int32_t)local_seq + SEQ_NUM_MAX;
        } else {
            guess_roc = local_roc;
            difference = (int32_t)s - (int32_t)local_seq;
        }
    }
    *guess = (((uint64_t)guess_roc) << 16) | s;
    return difference;
}

/* srtp_rdbx_check + srtp_rdbx_add_index, with allow_repeat_tx (a repeated
 * index is re-sent, an index older than the window is refused). */
static int replay_update(en_srtp_tx *tx, int32_t delta)
{
    if (delta > 0) {
        uint32_t k, clear = (uint32_t)delta < tx->window ? (uint32_t)delta : tx->window;
        for (k = 1; k <= clear; k++)
            bit_clear(tx, tx->index + k);
        tx->index += (uint16_t)delta;
        bit_set(tx, tx->index);
        return EN_SRTP_OK;
    }
    if ((int64_t)tx->window - 1 + delta < 0)
        return EN_SRTP_ERR_REPLAY_OLD;
    bit_set(tx, tx->index + (int64_t)delta); /* already set: a repeat, allowed */
    return EN_SRTP_OK;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int en_srtp_protect(en_srtp_tx *tx, uint8_t *buf, size_t len)
{
    size_t hdr_len;
    uint16_t seq;
    uint64_t est;
    uint32_t roc;
    int32_t delta;
    int err, n = 0;
    size_t enc_len;

    /* srtp_validate_rtp_header */
    if (len < 12 || len > (1u << 20))
        return -EN_SRTP_ERR_BAD_PARAM;
    hdr_len = en_srtp_rtp_header_len(buf, len);
    if (hdr_len == 0)
        return -EN_SRTP_ERR_BAD_PARAM;

    seq = (uint16_t)((buf[2] << 8) | buf[3]);
    delta = en_srtp_estimate_index(tx->index, &est, seq);
    err = replay_update(tx, delta);
    if (err)
        return -err;
    roc = (uint32_t)(est >> 16);
    enc_len = len - hdr_len;

    if (tx->aead) {
        /* RFC 7714 section 8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt. */
        uint8_t iv[12];
        int i;
        iv[0] = iv[1] = 0;
        memcpy(iv + 2, buf + 8, 4);
        put_be32(iv + 6, roc);
        iv[10] = buf[2];
        iv[11] = buf[3];
        for (i = 0; i < 12; i++)
            iv[i] ^= tx->salt[i];
        if (EVP_EncryptInit_ex(tx->ctx, NULL, NULL, NULL, iv) != 1 ||
            EVP_EncryptUpdate(tx->ctx, NULL, &n, buf, (int)hdr_len) != 1 ||
            (enc_len && EVP_EncryptUpdate(tx->ctx, buf + hdr_len, &n, buf + hdr_len,
                                          (int)enc_len) != 1) ||
            EVP_EncryptFinal_ex(tx->ctx, buf + len, &n) != 1 ||
            EVP_CIPHER_CTX_ctrl(tx->ctx, EVP_CTRL_GCM_GET_TAG, 16, buf + len) != 1)
            return -EN_SRTP_ERR_CIPHER;
        return (int)(len + 16);
    } else {
        /* RFC 3711 section 4.1.1: counter = salt XOR (SSRC << 64) XOR (index << 16). */
        uint8_t ctr[16] = {0};
        uint8_t roc_be[4], mac[SHA_DIGEST_LENGTH];
        int i;
        memcpy(ctr + 4, buf + 8, 4);
        put_be32(ctr + 8, roc);
        ctr[12] = buf[2];
        ctr[13] = buf[3];
        for (i = 0; i < 14; i++)
            ctr[i] ^= tx->salt[i];
        if (EVP_EncryptInit_ex(tx->ctx, NULL, NULL, NULL, ctr) != 1 ||
            (enc_len && EVP_EncryptUpdate(tx->ctx, buf + hdr_len, &n, buf + hdr_len,
                                          (int)enc_len) != 1))
            return -EN_SRTP_ERR_CIPHER;
        /* Tag: HMAC-SHA1 over the whole packet then the ROC, truncated. */
        put_be32(roc_be, roc);
        en_hmac_sha1(&tx->hmac_inner, &tx->hmac_outer, buf, len, roc_be, 4, mac);
        memcpy(buf + len, mac, tx->tag_len);
        return (int)(len + tx->tag_len);
    }
}
