/*
 * rtp_parse.h - the RTP header, its RFC 8285 extensions and codec keyframe
 * detection, in C: the same results and the same refusals as
 * edge/media/rtp.py RtpHeader.parse and edge/media/codecs.py is_keyframe.
 */
#ifndef EDGE_RTP_PARSE_H
#define EDGE_RTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Extensions a parse reports (by the negotiated ids the caller gives). */
enum { EN_EXT_MID, EN_EXT_RID, EN_EXT_RRID, EN_EXT_AST, EN_EXT_TWCC, EN_EXT_LEVEL, EN_EXT_COUNT };

/* Errors, one per ValueError message of RtpHeader.parse (en_rtp_error_message). */
enum {
    EN_RTP_OK = 0,
    EN_RTP_TOO_SHORT,
    EN_RTP_VERSION,
    EN_RTP_CSRC,
    EN_RTP_EXT_LENGTH,
    EN_RTP_EXT_ELEMENT,
    EN_RTP_PADDING,
};

#define EN_CODEC_NONE 0
#define EN_CODEC_VP8 1
#define EN_CODEC_H264 2

typedef struct {
    int marker;
    unsigned payload_type;
    uint16_t sequence_number;
    uint32_t timestamp, ssrc;
    unsigned csrc_count;
    unsigned extension_profile;
    size_t payload_offset, padding_length;
    /* per EN_EXT_*: offset into the packet and length; offset 0 = absent */
    size_t ext_off[EN_EXT_COUNT];
    unsigned ext_len[EN_EXT_COUNT];
} en_rtp;

/* ext_slot[id] = EN_EXT_* + 1 for a wanted id (1..255), else 0. */
int en_rtp_parse(const uint8_t *data, size_t len, const uint8_t ext_slot[256], en_rtp *out);
const char *en_rtp_error_message(int err);

/* codecs.is_keyframe(codec, payload) for EN_CODEC_VP8 / EN_CODEC_H264 (else 0). */
int en_is_keyframe(int codec, const uint8_t *payload, size_t len);

#endif
