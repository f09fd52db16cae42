/*
 * srtp_tx.h - the sending half of SRTP (RFC 3711, RFC 7714) on OpenSSL libcrypto.
 *
 * Produces the same bytes as libsrtp 2.7's srtp_protect() for one SSRC of an
 * SSRC_ANY_OUTBOUND session with allow_repeat_tx (what aiortc's _tx_srtp is):
 * same key derivation, same packet index estimation and replay window, same
 * IVs, same tags. Profiles (libsrtp's srtp_profile_t numbers, which pylibsrtp's
 * Policy.SRTP_PROFILE_* constants and aiortc's srtp_keys()["profile"] use):
 *
 *   1  AES128_CM_SHA1_80   AES-128 counter mode + HMAC-SHA1, 80-bit tag
 *   2  AES128_CM_SHA1_32   AES-128 counter mode + HMAC-SHA1, 32-bit tag
 *   7  AEAD_AES_128_GCM    AES-128-GCM, 16-byte tag (RFC 7714)
 *   8  AEAD_AES_256_GCM    AES-256-GCM, 16-byte tag (RFC 7714)
 *
 * Not thread-safe: the caller serializes use of one en_srtp_tx (the native
 * consumer does it with its own mutex).
 */
#ifndef EDGE_SRTP_TX_H
#define EDGE_SRTP_TX_H

#define OPENSSL_SUPPRESS_DEPRECATED 1 /* SHA1_Init & co: cheap HMAC state copies */

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stddef.h>
#include <stdint.h>

#define EN_SRTP_AES128_CM_SHA1_80 1
#define EN_SRTP_AES128_CM_SHA1_32 2
#define EN_SRTP_AEAD_AES_128_GCM 7
#define EN_SRTP_AEAD_AES_256_GCM 8

#define EN_SRTP_MAX_TAG 16

/* Errors, numbered like libsrtp's srtp_err_status_t (pylibsrtp's messages). */
#define EN_SRTP_OK 0
#define EN_SRTP_ERR_FAIL 1        /* "unspecified failure" */
#define EN_SRTP_ERR_BAD_PARAM 2   /* "unsupported parameter" (bad RTP header) */
#define EN_SRTP_ERR_CIPHER 8      /* "cipher failure" */
#define EN_SRTP_ERR_REPLAY_OLD 10 /* "replay check failed (index too old)" */

typedef struct {
    int profile;
    int aead;           /* GCM */
    unsigned tag_len;   /* bytes appended */
    uint8_t salt[14];   /* session salt: 14 bytes (CM), 12 (GCM) */
    EVP_CIPHER_CTX *ctx; /* session cipher, keyed once */
    SHA_CTX hmac_inner;  /* HMAC-SHA1 state after the ipad block */
    SHA_CTX hmac_outer;  /* ... and after the opad block */
    /* The replay window of libsrtp's rdbx: the highest packet index sent and
     * one bit per index of the last `window` indices (ring, index % window). */
    uint64_t index;
    uint32_t window;
    uint32_t *bits;
} en_srtp_tx;

/* Key lengths (master key, master salt) of a profile; 0 if unsupported. */
int en_srtp_master_lengths(int profile, unsigned *key_len, unsigned *salt_len);

/* The RFC 3711 key derivation function (rate 0): `label` XORed into the salt,
 * AES-CM keystream of out_len (<= 64) bytes. */
int en_srtp_kdf(const uint8_t *master_key, unsigned key_len, const uint8_t salt14[14],
                uint8_t label, uint8_t *out, unsigned out_len);

/* Derive the session keys from master key + salt (key_len + salt_len bytes).
 * window_size is the replay window (libsrtp rounds it up to a multiple of 32). */
/* The RTP header's length, or 0 if `len` (>= 12) cannot hold it. */
size_t en_srtp_rtp_header_len(const uint8_t *buf, size_t len);

/* HMAC-SHA1 with precomputed pad states (SRTP auth, both directions). */
void en_hmac_sha1_init(SHA_CTX *inner, SHA_CTX *outer, const uint8_t key[20]);
void en_hmac_sha1(const SHA_CTX *inner, const SHA_CTX *outer, const uint8_t *a, size_t a_len,
                  const uint8_t *b, size_t b_len, uint8_t mac[20]);

/* RFC 3711 3.3.1: the 48-bit packet index of sequence number `seq` given the
 * newest index so far; returns its distance from that index (send and receive). */
int32_t en_srtp_estimate_index(uint64_t index, uint64_t *guess, uint16_t seq);

int en_srtp_tx_init(en_srtp_tx *tx, int profile, const uint8_t *master, size_t master_len,
                    unsigned window_size);
void en_srtp_tx_free(en_srtp_tx *tx);

/* Protect the RTP packet in buf[0:len] in place; buf must have room for
 * len + EN_SRTP_MAX_TAG bytes. Returns the protected length, or -error. */
int en_srtp_protect(en_srtp_tx *tx, uint8_t *buf, size_t len);

/* The error message pylibsrtp uses for an error number. */
const char *en_srtp_error_message(int err);

#endif
