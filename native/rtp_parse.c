/*
 * rtp_parse.c - RtpHeader.parse and codecs.is_keyframe in C (see rtp_parse.h).
 * Every branch mirrors the Python code it replaces, in the same order, so a
 * malformed packet is refused with the same message.
 */
#include "rtp_parse.h"

#include <string.h>

const char *en_rtp_error_message(int err)
{
    switch (err) {
    case EN_RTP_TOO_SHORT:
        return "RTP packet is too short";
    case EN_RTP_VERSION:
        return "RTP version is not 2";
    case EN_RTP_CSRC:
        return "RTP CSRC list is truncated";
    case EN_RTP_EXT_LENGTH:
        return "RTP header extension length is invalid";
    case EN_RTP_EXT_ELEMENT:
        return "RTP header extension element is truncated";
    case EN_RTP_PADDING:
        return "RTP padding length is invalid";
    default:
        return "RTP packet is invalid";
    }
}

static inline void keep(en_rtp *out, const uint8_t ext_slot[256], unsigned id, size_t off,
                        unsigned size)
{
    unsigned slot = ext_slot[id];
    if (slot) { /* a later element with the same id wins, like a dict */
        out->ext_off[slot - 1] = off;
        out->ext_len[slot - 1] = size;
    }
}

static int one_byte(const uint8_t *d, size_t pos, size_t end, const uint8_t ext_slot[256],
                    en_rtp *out)
{
    while (pos < end) {
        unsigned byte = d[pos], id, size;
        if (byte == 0) {
            pos++;
            continue;
        }
        id = byte >> 4;
        if (id == 15) /* RFC 8285 4.2: stop at the reserved id */
            return EN_RTP_OK;
        size = (byte & 0x0F) + 1;
        pos++;
        if (pos + size > end)
            return EN_RTP_EXT_ELEMENT;
        keep(out, ext_slot, id, pos, size);
        pos += size;
    }
    return EN_RTP_OK;
}

static int two_byte(const uint8_t *d, size_t pos, size_t end, const uint8_t ext_slot[256],
                    en_rtp *out)
{
    while (pos < end) {
        unsigned id = d[pos], size;
        if (id == 0) {
            pos++;
            continue;
        }
        if (pos + 2 > end)
            return EN_RTP_EXT_ELEMENT;
        size = d[pos + 1];
        pos += 2;
        if (pos + size > end)
            return EN_RTP_EXT_ELEMENT;
        keep(out, ext_slot, id, pos, size);
        pos += size;
    }
    return EN_RTP_OK;
}

int en_rtp_parse(const uint8_t *d, size_t len, const uint8_t ext_slot[256], en_rtp *out)
{
    size_t pos = 12;
    int err;
    memset(out, 0, sizeof *out);
    if (len < 12)
        return EN_RTP_TOO_SHORT;
    if (d[0] >> 6 != 2)
        return EN_RTP_VERSION;
    out->marker = (d[1] & 0x80) != 0;
    out->payload_type = d[1] & 0x7F;
    out->sequence_number = (uint16_t)((d[2] << 8) | d[3]);
    out->timestamp = ((uint32_t)d[4] << 24) | ((uint32_t)d[5] << 16) | ((uint32_t)d[6] << 8) | d[7];
    out->ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    out->csrc_count = d[0] & 0x0F;
    if (out->csrc_count) {
        pos += 4 * (size_t)out->csrc_count;
        if (pos > len)
            return EN_RTP_CSRC;
    }
    if (d[0] & 0x10) {
        size_t start, words;
        if (pos + 4 > len)
            return EN_RTP_EXT_LENGTH;
        out->extension_profile = ((unsigned)d[pos] << 8) | d[pos + 1];
        words = ((size_t)d[pos + 2] << 8) | d[pos + 3];
        start = pos + 4;
        pos = start + 4 * words;
        if (pos > len)
            return EN_RTP_EXT_LENGTH;
        if (out->extension_profile == 0xBEDE)
            err = one_byte(d, start, pos, ext_slot, out);
        else if ((out->extension_profile & 0xFFF0) == 0x1000)
            err = two_byte(d, start, pos, ext_slot, out);
        else
            err = EN_RTP_OK;
        if (err)
            return err;
    }
    if (d[0] & 0x20) {
        size_t pad = d[len - 1];
        if (pad == 0 || pad > len - pos)
            return EN_RTP_PADDING;
        out->padding_length = pad;
    }
    out->payload_offset = pos;
    return EN_RTP_OK;
}

/* --- keyframes (edge/media/codecs.py) ------------------------------------------------ */

static long vp8_header_offset(const uint8_t *p, size_t size)
{
    size_t pos = 1;
    if (size == 0)
        return -1;
    if (p[0] & 0x80) {
        unsigned ext;
        if (size < 2)
            return -1;
        ext = p[1];
        pos = 2;
        if (ext & 0x80) {
            if (pos >= size)
                return -1;
            pos += (p[pos] & 0x80) ? 2 : 1;
        }
        if (ext & 0x40)
            pos += 1;
        if (ext & (0x20 | 0x10))
            pos += 1;
    }
    return pos < size ? (long)pos : -1;
}

static int vp8_is_keyframe(const uint8_t *p, size_t size)
{
    long off;
    if (size == 0 || (p[0] & (0x10 | 0x07)) != 0x10)
        return 0;
    off = vp8_header_offset(p, size);
    return off >= 0 && (p[off] & 0x01) == 0;
}

static inline int h264_key_type(unsigned t)
{
    return t == 5 || t == 7; /* IDR slice, SPS */
}

static int h264_is_keyframe(const uint8_t *p, size_t size)
{
    unsigned nal_type;
    if (size == 0)
        return 0;
    nal_type = p[0] & 0x1F;
    if (h264_key_type(nal_type))
        return 1;
    if (nal_type == 24) { /* STAP-A */
        size_t pos = 1;
        while (pos + 2 < size) {
            size_t nal_size = ((size_t)p[pos] << 8) | p[pos + 1];
            pos += 2;
            if (nal_size == 0 || pos + nal_size > size)
                return 0;
            if (h264_key_type(p[pos] & 0x1F))
                return 1;
            pos += nal_size;
        }
        return 0;
    }
    if (nal_type == 28) /* FU-A: only the first fragment tells */
        return size >= 2 && (p[1] & 0x80) && h264_key_type(p[1] & 0x1F);
    return 0;
}

int en_is_keyframe(int codec, const uint8_t *payload, size_t len)
{
    if (codec == EN_CODEC_VP8)
        return vp8_is_keyframe(payload, len);
    if (codec == EN_CODEC_H264)
        return h264_is_keyframe(payload, len);
    return 0;
}
