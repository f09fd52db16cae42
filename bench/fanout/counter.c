/* Cheap packet counting for the fan-out benchmark's viewers (bench only, not part of edge).
 *
 * After a viewer's ICE/DTLS handshake completes in Python (aiortc), its UDP socket is
 * handed to this counter: one epoll set over every viewer socket, drained with
 * recvmmsg.  RTP packets are counted per SSRC with RFC 3550 extended sequence numbers
 * (loss = expected - received), and every Nth one is copied out, with its kernel
 * receive timestamp (SO_TIMESTAMPNS), for Python to decrypt and match against the
 * publisher's send time.  Everything else (STUN consent, DTLS, SRTCP) is copied out so
 * Python hands it back to aioice unchanged.  Reading 300k packets/s per core in Python
 * callbacks is not possible; this keeps the load core well below the node's cost.
 *
 * Output record: u32 viewer, u8 kind (0 = other, 1 = sampled RTP), u8 pad, u16 port,
 * u32 ipv4 (network order), i64 timestamp ns (CLOCK_REALTIME), u16 length, data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VLEN 32
#define MAXPKT 2048
#define STREAMS 4

typedef struct {
    uint32_t ssrc;
    int used;
    int64_t pkts;
    int64_t cycles;
    int64_t ext_max;
    uint16_t last;
} stream_t;

typedef struct {
    int fd;
    int64_t rtp_pkts;
    int64_t rtp_bytes;
    int64_t other_pkts;
    int64_t unknown_ssrc;
    stream_t s[STREAMS];
} viewer_t;

static viewer_t *V;
static int NV;
static int EP = -1;
static int SAMPLE_EVERY = 100;
static uint8_t BUFS[VLEN][MAXPKT];
static struct sockaddr_in ADDRS[VLEN];
static char CTRL[VLEN][64];
static struct iovec IOV[VLEN];
static struct mmsghdr MSGS[VLEN];

int fo_init(int max_viewers, int sample_every) {
    V = calloc(max_viewers, sizeof(viewer_t));
    NV = max_viewers;
    SAMPLE_EVERY = sample_every > 0 ? sample_every : 100;
    EP = epoll_create1(0);
    for (int i = 0; i < VLEN; i++) {
        IOV[i].iov_base = BUFS[i];
        IOV[i].iov_len = MAXPKT;
    }
    return EP < 0 ? -errno : 0;
}

int fo_add(int idx, int fd) {
    if (idx < 0 || idx >= NV) return -EINVAL;
    V[idx].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
    return epoll_ctl(EP, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int fo_remove(int idx) {
    if (idx < 0 || idx >= NV) return -EINVAL;
    return epoll_ctl(EP, EPOLL_CTL_DEL, V[idx].fd, NULL) < 0 ? -errno : 0;
}

static void count_rtp(viewer_t *v, const uint8_t *d, int len) {
    uint32_t ssrc = ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11];
    uint16_t seq = (uint16_t)((d[2] << 8) | d[3]);
    stream_t *s = NULL;
    for (int i = 0; i < STREAMS; i++) {
        if (v->s[i].used && v->s[i].ssrc == ssrc) { s = &v->s[i]; break; }
        if (!v->s[i].used) {
            s = &v->s[i];
            s->used = 1; s->ssrc = ssrc; s->last = seq; s->ext_max = seq; s->cycles = 0;
            break;
        }
    }
    v->rtp_pkts++;
    v->rtp_bytes += len;
    if (!s) { v->unknown_ssrc++; return; }
    s->pkts++;
    uint16_t delta = (uint16_t)(seq - s->last);
    if (delta < 0x8000 && delta != 0) {
        if (seq < s->last) s->cycles += 65536;
        s->last = seq;
        int64_t ext = s->cycles + seq;
        if (ext > s->ext_max) s->ext_max = ext;
    }
}

static int64_t msg_ts(struct msghdr *h) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return 0;
}

static int emit(uint8_t *out, int pos, int cap, uint32_t idx, uint8_t kind, struct sockaddr_in *a,
                int64_t ts, const uint8_t *d, int len) {
    int need = 4 + 1 + 1 + 2 + 4 + 8 + 2 + len;
    if (pos + need > cap) return -1;
    uint8_t *p = out + pos;
    memcpy(p, &idx, 4); p[4] = kind; p[5] = 0;
    memcpy(p + 6, &a->sin_port, 2);
    memcpy(p + 8, &a->sin_addr.s_addr, 4);
    memcpy(p + 12, &ts, 8);
    uint16_t l = (uint16_t)len;
    memcpy(p + 20, &l, 2);
    memcpy(p + 22, d, len);
    return pos + need;
}

/* Drain every ready socket once (non-blocking).  Returns bytes written to out; stops
 * early (leaving packets queued in the kernel) when out could overflow. */
int fo_sweep(uint8_t *out, int cap) {
    struct epoll_event evs[1024];
    int n = epoll_wait(EP, evs, 1024, 0);
    int pos = 0;
    for (int e = 0; e < n; e++) {
        uint32_t idx = evs[e].data.u32;
        viewer_t *v = &V[idx];
        for (;;) {
            if (pos + VLEN * (MAXPKT + 24) > cap) return pos;
            for (int i = 0; i < VLEN; i++) {
                memset(&MSGS[i].msg_hdr, 0, sizeof(struct msghdr));
                MSGS[i].msg_hdr.msg_iov = &IOV[i];
                MSGS[i].msg_hdr.msg_iovlen = 1;
                MSGS[i].msg_hdr.msg_name = &ADDRS[i];
                MSGS[i].msg_hdr.msg_namelen = sizeof(ADDRS[i]);
                MSGS[i].msg_hdr.msg_control = CTRL[i];
                MSGS[i].msg_hdr.msg_controllen = sizeof(CTRL[i]);
            }
            int got = recvmmsg(v->fd, MSGS, VLEN, MSG_DONTWAIT, NULL);
            if (got <= 0) break;
            for (int i = 0; i < got; i++) {
                const uint8_t *d = BUFS[i];
                int len = (int)MSGS[i].msg_len;
                int rtp = len >= 12 && d[0] >= 128 && d[0] < 192 && !(d[1] >= 192 && d[1] <= 223);
                if (rtp) {
                    count_rtp(v, d, len);
                    if (v->rtp_pkts % SAMPLE_EVERY == 0) {
                        int r = emit(out, pos, cap, idx, 1, &ADDRS[i], msg_ts(&MSGS[i].msg_hdr), d, len);
                        if (r >= 0) pos = r;
                    }
                } else {
                    v->other_pkts++;
                    int r = emit(out, pos, cap, idx, 0, &ADDRS[i], msg_ts(&MSGS[i].msg_hdr), d, len);
                    if (r >= 0) pos = r;
                }
            }
            if (got < VLEN) break;
        }
    }
    return pos;
}

/* Per viewer: rtp_pkts, rtp_bytes, other_pkts, unknown_ssrc, then per stream slot
 * (ssrc, pkts, ext_max) x STREAMS  -> 4 + 3*STREAMS int64 values per viewer. */
int fo_snapshot(int64_t *out) {
    int k = 0;
    for (int i = 0; i < NV; i++) {
        viewer_t *v = &V[i];
        out[k++] = v->rtp_pkts; out[k++] = v->rtp_bytes; out[k++] = v->other_pkts; out[k++] = v->unknown_ssrc;
        for (int j = 0; j < STREAMS; j++) {
            out[k++] = v->s[j].used ? (int64_t)v->s[j].ssrc : -1;
            out[k++] = v->s[j].pkts;
            out[k++] = v->s[j].ext_max;
        }
    }
    return k;
}
