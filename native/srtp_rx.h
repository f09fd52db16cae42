/*
 * srtp_rx.h - the receiving half of SRTP and SRTCP (RFC 3711, RFC 7714) on
 * OpenSSL libcrypto.
 *
 * Accepts and refuses exactly what libsrtp 2.7's srtp_unprotect() and
 * srtp_unprotect_rtcp() do for an SSRC_ANY_INBOUND session (aiortc's
 * _rx_srtp: window 1024), with the same error numbers:
 *
 *  - per SSRC, a stream created by the first packet that authenticates;
 *  - SRTP: RFC 3711 section 3.3.1 index estimation (libsrtp's
 *    srtp_rdbx_estimate_index: the rollover counter is guessed from the
 *    highest index seen and the packet's sequence number) and a replay window
 *    of `window` packets (1024 in aiortc) behind the highest index; a packet
 *    seen before or older than the window is refused before any crypto;
 *  - SRTCP: the 31-bit SRTCP index from the packet's E-flag word and
 *    libsrtp's 128-entry replay window (srtp_rdb);
 *  - the profiles of srtp_tx.h; with AES128_CM_SHA1_32 SRTCP keeps the
 *    80-bit tag (libsrtp follows RFC 3711 there).
 *
 * Not thread-safe: the caller serializes use of one en_srtp_rx.
 */
#ifndef EDGE_SRTP_RX_H
#define EDGE_SRTP_RX_H

#include "srtp_tx.h"

#define EN_SRTP_ERR_AUTH 7         /* "authentication failure" */
#define EN_SRTP_ERR_REPLAY_FAIL 9  /* "replay check failed (bad index)" */
#define EN_SRTP_ERR_CANT_CHECK 14  /* "unable to perform desired validation" */
#define EN_SRTP_ERR_PARSE 21       /* "error parsing data" */

/* One direction's session keys (RTP or RTCP) for decryption. */
typedef struct {
    int aead;
    unsigned tag_len;
    uint8_t salt[14];
    EVP_CIPHER_CTX *ctx;
    SHA_CTX hmac_inner, hmac_outer;
} en_srtp_keys;

typedef struct {
    uint32_t ssrc;
    /* SRTP: libsrtp's rdbx, as in srtp_tx.h (ring of window bits). */
    uint64_t index;
    uint32_t *bits;
    /* SRTCP: libsrtp's rdb, bit i = index window_start + i. */
    uint32_t rtcp_start;
    unsigned __int128 rtcp_bits;
} en_srtp_rx_stream;

typedef struct {
    int profile;
    unsigned window;
    en_srtp_keys rtp, rtcp;
    en_srtp_rx_stream *streams;
    size_t nstreams, cap, last;
} en_srtp_rx;

int en_srtp_rx_init(en_srtp_rx *rx, int profile, const uint8_t *master, size_t master_len,
                    unsigned window_size);
void en_srtp_rx_free(en_srtp_rx *rx);

/* Unprotect the SRTP packet buf[0:len] in place; returns the RTP length or -error. */
int en_srtp_unprotect(en_srtp_rx *rx, uint8_t *buf, size_t len);

/* Unprotect the SRTCP packet buf[0:len] in place; returns the RTCP length or -error. */
int en_srtp_unprotect_rtcp(en_srtp_rx *rx, uint8_t *buf, size_t len);

#endif
