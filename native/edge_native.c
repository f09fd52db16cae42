/*
 * edge.media._native - the native media data plane (CPython C API).
 *
 * Three types here, one in twcc.c:
 *
 *   SrtpContext(profile, key, window_size=1024)
 *       An outbound SRTP session (any SSRC), like pylibsrtp's
 *       Session(Policy(key, SSRC_ANY_OUTBOUND, profile)) with allow_repeat_tx:
 *       .protect(packet) -> bytes gives the same bytes. For tests and tools.
 *
 *   NativeConsumer(...)
 *       One consumer slot's egress state: the Forwarder (same algorithm and
 *       attributes as edge/media/forwarder.py, so it *is* the slot's
 *       forwarder once the native plane takes the slot over), the SRTP context
 *       of the slot's SSRC, the retransmit ring of protected packets (by
 *       outgoing sequence number) and a dup() of the transport's UDP socket
 *       with the remote address. .retransmit(seqs) re-sends from the ring with
 *       one sendmmsg, GIL released.
 *
 *   Fanout(entries)
 *       The consumers of one producer: a list of (NativeConsumer, Consumer,
 *       transport, pt_map). .forward(...) does one ingress packet for all of
 *       them: Forwarder mapping, PT map, extension block, header rewrite, SRTP
 *       protect, ring store, sendmmsg batches, the per-packet part with the GIL
 *       released. Then it adds to each Consumer's `packets`/`bytes`.
 *
 *   TwccHistory (native/twcc.c)
 *       One viewer's transport-wide send history; NativeConsumer.set_twcc()
 *       makes the fan-out stamp and record every packet from it.
 *
 * Locking: every NativeConsumer has a mutex guarding its C state. The GIL is
 * never waited for while such a mutex is held, and no Python code runs while
 * one is held, so the two cannot deadlock.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingress.h"
#include "srtp_tx.h"
#include "twcc.h"
#include <openssl/crypto.h>

#define CHUNK 64          /* packets per sendmmsg batch in a fan-out */
#define TRAIL 0x4000      /* forwarder.TRAIL */
#define ALL_TIDS 3        /* forwarder.ALL_TIDS */
#define MARKS 64          /* forwarder.MARKS */
#define MAX_EXT_BLOCK 780 /* 4 + 3 * (2 + 255), padded */

static PyObject *SrtpError;
static PyObject *random_module;
static PyObject *str_closed, *str_packets, *str_bytes, *str_getrandbits;

/* ====================================================================== helpers */

static int get_u64(PyObject *o, uint64_t *out, uint64_t max, const char *what)
{
    unsigned long long v;
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (v > max) {
        PyErr_Format(PyExc_ValueError, "%s is out of range", what);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_i64(PyObject *o, int64_t *out, const char *what)
{
    long long v;
    if (o == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", what);
        return -1;
    }
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static inline int seq_newer(uint64_t a, uint64_t b)
{
    uint64_t d = (a - b) & 0xFFFF;
    return d > 0 && d < 0x8000;
}

/* One extension element of the block a consumer sends. */
typedef struct {
    int id;
    const uint8_t *value;
    unsigned len;
} ext_el;

/* serialize_extensions() of edge/media/rtp.py: the one-byte form when every
 * element fits it, else the two-byte form; -1 when an element fits neither. */
static int serialize_ext(const ext_el *els, int n, uint8_t *out)
{
    int i, one_byte = 1;
    size_t pos = 4, words;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if (!(els[i].id > 0 && els[i].id < 15 && els[i].len > 0 && els[i].len <= 16))
            one_byte = 0;
    for (i = 0; i < n; i++) {
        if (one_byte) {
            out[pos++] = (uint8_t)((els[i].id << 4) | (els[i].len - 1));
        } else {
            if (els[i].id <= 0 || els[i].id > 255 || els[i].len > 255)
                return -1;
            out[pos++] = (uint8_t)els[i].id;
            out[pos++] = (uint8_t)els[i].len;
        }
        memcpy(out + pos, els[i].value, els[i].len);
        pos += els[i].len;
    }
    while (pos % 4)
        out[pos++] = 0;
    words = pos / 4 - 1;
    out[0] = one_byte ? 0xBE : 0x10;
    out[1] = one_byte ? 0xDE : 0x00;
    out[2] = (uint8_t)(words >> 8);
    out[3] = (uint8_t)words;
    return (int)pos;
}

/* Insert like a Python dict: an id already present keeps its place, new value. */
static int ext_put(ext_el *els, int n, int id, const uint8_t *value, unsigned len)
{
    int i;
    for (i = 0; i < n; i++)
        if (els[i].id == id) {
            els[i].value = value;
            els[i].len = len;
            return n;
        }
    els[n].id = id;
    els[n].value = value;
    els[n].len = len;
    return n + 1;
}

/* ====================================================================== SrtpContext */

typedef struct {
    uint32_t ssrc;
    en_srtp_tx tx;
} srtp_stream;

typedef struct {
    PyObject_HEAD
    int profile;
    uint8_t master[64];
    size_t master_len;
    unsigned window;
    srtp_stream *streams;
    Py_ssize_t nstreams;
    uint8_t buf[1500];
} SrtpContextObject;

static int SrtpContext_init(SrtpContextObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"profile", "key", "window_size", NULL};
    int profile;
    unsigned window = 1024, key_len, salt_len;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*|I", kwlist, &profile, &key, &window))
        return -1;
    if (!en_srtp_master_lengths(profile, &key_len, &salt_len)) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return -1;
    }
    if ((size_t)key.len < key_len + salt_len || key.len > 64 || window == 0 || window > 32768) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "key must contain at least %u bytes", key_len + salt_len);
        return -1;
    }
    memcpy(self->master, key.buf, (size_t)key.len);
    self->master_len = (size_t)key.len;
    PyBuffer_Release(&key);
    self->profile = profile;
    self->window = window;
    return 0;
}

static void SrtpContext_dealloc(SrtpContextObject *self)
{
    Py_ssize_t i;
    for (i = 0; i < self->nstreams; i++)
        en_srtp_tx_free(&self->streams[i].tx);
    PyMem_Free(self->streams);
    memset(self->master, 0, sizeof self->master);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *SrtpContext_protect(SrtpContextObject *self, PyObject *packet)
{
    Py_ssize_t len, i;
    uint32_t ssrc;
    srtp_stream *stream = NULL;
    int out;
    /* The same input checks (and limit) as pylibsrtp's Session.protect. */
    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    len = PyBytes_GET_SIZE(packet);
    if (len > 1500 - (16 + 128)) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    memcpy(self->buf, PyBytes_AS_STRING(packet), (size_t)len);
    if (len < 12) {
        PyErr_SetString(SrtpError, en_srtp_error_message(EN_SRTP_ERR_BAD_PARAM));
        return NULL;
    }
    ssrc = ((uint32_t)self->buf[8] << 24) | ((uint32_t)self->buf[9] << 16) |
           ((uint32_t)self->buf[10] << 8) | self->buf[11];
    for (i = 0; i < self->nstreams; i++)
        if (self->streams[i].ssrc == ssrc) {
            stream = &self->streams[i];
            break;
        }
    if (stream == NULL) {
        srtp_stream *grown = PyMem_Realloc(self->streams, sizeof(srtp_stream) * (size_t)(self->nstreams + 1));
        if (grown == NULL)
            return PyErr_NoMemory();
        self->streams = grown;
        stream = &self->streams[self->nstreams];
        if (!en_srtp_tx_init(&stream->tx, self->profile, self->master, self->master_len, self->window)) {
            PyErr_SetString(SrtpError, "couldn't initialize");
            return NULL;
        }
        stream->ssrc = ssrc;
        self->nstreams++;
    }
    out = en_srtp_protect(&stream->tx, self->buf, (size_t)len);
    if (out < 0) {
        PyErr_SetString(SrtpError, en_srtp_error_message(-out));
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)self->buf, out);
}

static PyMethodDef SrtpContext_methods[] = {
    {"protect", (PyCFunction)SrtpContext_protect, METH_O,
     "protect(packet) -> bytes: SRTP-protect one RTP packet (pylibsrtp Session.protect)."},
    {NULL}};

static PyTypeObject SrtpContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.SrtpContext",
    .tp_basicsize = sizeof(SrtpContextObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SrtpContext(profile, key, window_size=1024): outbound SRTP, any SSRC.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SrtpContext_init,
    .tp_dealloc = (destructor)SrtpContext_dealloc,
    .tp_methods = SrtpContext_methods,
};

/* ====================================================================== NativeConsumer */

typedef struct {
    int64_t seq; /* -1: empty */
    uint32_t len;
    uint32_t cap;
    uint8_t *buf;
    int nacked; /* NACKed at least once since stored: later NACKs of it are repeats */
} ring_entry;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    /* --- the Forwarder (edge/media/forwarder.py) */
    int video;
    int64_t clock_rate;
    PyObject *source;
    int64_t seq_offset;
    int64_t ts_offset;
    int has_last_seq;
    int64_t last_seq;
    /* Forwarder.key_seq: outgoing seq of the latest keyframe's first packet.
     * NACKs for packets before it are not served (nothing after it needs them). */
    int has_key;
    int64_t key_seq;
    /* Forwarder.vp8_sync / pic_offset / tl0_offset / last_pic / last_tl0
     * (edge/media/vp8.py): VP8 PictureID and TL0PICIDX continuity. */
    int vp8_sync;
    int64_t pic_offset, tl0_offset;
    int has_last_pic, has_last_tl0;
    int64_t last_pic, last_tl0;
    /* Forwarder.tid / tid_target / in_last / in_dropped / drop_pic / pic_in_last /
     * seq_marks / pic_marks / marks_lost: VP8 temporal-layer dropping. */
    int64_t tid, tid_target;
    int has_in_last, in_dropped, in_end, has_drop_pic, has_pic_in_last, marks_lost;
    int64_t in_last, drop_pic, pic_in_last;
    int n_seq_marks, n_pic_marks;
    int64_t seq_marks[MARKS][2], pic_marks[MARKS][2]; /* (incoming, offset before), oldest first */
    int64_t last_ts;
    double last_wall;
    int started;
    int64_t floor_seq; /* Forwarder.floor_seq: outgoing seq the current source started at */
    int has_origin; /* random origins drawn from Python's `random` for the next start */
    uint32_t origin_seq, origin_ts;
    /* --- egress */
    uint32_t ssrc;
    int mid_id, ast_id, level_id;
    uint8_t mid[255];
    unsigned mid_len;
    /* The playout-delay element (edge/media/playout.py): its id (0 = none) and
     * 3-byte value, set from Python with set_playout_delay() under the lock. */
    int pd_id;
    uint8_t pd[3];
    /* Transport-wide congestion control (edge/media/twcc.py): the element id
     * (0 = none) and the viewer's TwccHistory every packet is stamped from. */
    int twcc_id;
    PyObject *twcc;
    /* RTX towards the viewer (edge/media/rtx.py): with it the ring keeps the
     * clear packets and a repair is built as an RTX packet and protected. */
    int rtx;
    en_srtp_tx rtx_srtp; /* the RTX stream's own SRTP state (index, replay window) */
    uint8_t master[64];  /* the master key + salt, kept to key rtx_srtp */
    size_t master_len;
    unsigned window;
    uint32_t rtx_ssrc;
    uint16_t rtx_seq;
    uint8_t rtx_pt[128]; /* the slot's PT -> its RTX PT, 0xFF = none */
    en_srtp_tx srtp;
    int srtp_ready;
    int fd;       /* our dup() of the transport's socket, -1 once closed */
    uint64_t sock_key; /* the socket's identity (inode), shared by every dup() of it */
    int inflight; /* fan-outs sending on fd right now (atomic) */
    int closing;  /* close() asked for: the last sender closes fd (atomic) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* --- the retransmit ring: protected packets by outgoing sequence number */
    uint32_t ring_mask;
    ring_entry *ring;
    /* --- counters */
    unsigned long long packets, bytes, send_errors, eagain, protect_errors, retransmitted;
} NativeConsumerObject;

static PyTypeObject NativeConsumerType;

static void nc_release_fd(NativeConsumerObject *nc)
{
    if (__atomic_sub_fetch(&nc->inflight, 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&nc->closing, __ATOMIC_SEQ_CST)) {
        int fd = __atomic_exchange_n(&nc->fd, -1, __ATOMIC_SEQ_CST);
        if (fd >= 0)
            close(fd);
    }
}

/* Stop sending; the fd closes now or when the last sender is done with it. */
static void nc_close_fd(NativeConsumerObject *nc)
{
    pthread_mutex_lock(&nc->lock);
    __atomic_store_n(&nc->closing, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&nc->inflight, __ATOMIC_SEQ_CST) == 0) {
        int fd = __atomic_exchange_n(&nc->fd, -1, __ATOMIC_SEQ_CST);
        if (fd >= 0)
            close(fd);
    }
    pthread_mutex_unlock(&nc->lock);
}

/* Parse an address as socket.getaddrinfo gives it: (host, port[, flowinfo, scope_id]). */
static int parse_address(PyObject *address, struct sockaddr_storage *ss, socklen_t *len)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2], *pct;
    if (!PyTuple_Check(address) ||
        !PyArg_ParseTuple(address, "si|II", &host, &port, &flowinfo, &scope_id)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "address must be (host, port[, flowinfo, scope_id])");
        return -1;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port is out of range");
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            *len = sizeof *sin;
            return 0;
        }
    }
    {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        snprintf(buf, sizeof buf, "%s", host);
        pct = strchr(buf, '%');
        if (pct != NULL) {
            *pct = 0;
            if (scope_id == 0)
                scope_id = if_nametoindex(pct + 1);
        }
        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)port);
            sin6->sin6_flowinfo = htonl(flowinfo);
            sin6->sin6_scope_id = scope_id;
            *len = sizeof *sin6;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
    return -1;
}

static int NativeConsumer_init(NativeConsumerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ssrc",  "profile", "key",      "fd",       "address",
                             "video", "clock_rate", "ring_size", "mid",   "mid_id",
                             "abs_send_time_id", "audio_level_id", "window_size", NULL};
    unsigned long long ssrc;
    int profile, fd, video, mid_id = 0, ast_id = 0, level_id = 0;
    long long clock_rate;
    unsigned ring_size = 1024, window = 1024;
    Py_buffer key, mid = {0};
    PyObject *address;
    int dupfd;

    if (self->ring != NULL || self->srtp_ready) {
        PyErr_SetString(PyExc_RuntimeError, "NativeConsumer is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Kiy*iOpLI|y*iiiI", kwlist, &ssrc, &profile, &key,
                                     &fd, &address, &video, &clock_rate, &ring_size, &mid, &mid_id,
                                     &ast_id, &level_id, &window))
        return -1;
    if (ssrc > 0xFFFFFFFFull || ring_size == 0 || (ring_size & (ring_size - 1)) ||
        ring_size > (1u << 16) || mid.len > 255 || mid_id < 0 || mid_id > 255 || ast_id < 0 ||
        ast_id > 255 || level_id < 0 || level_id > 255) {
        PyErr_SetString(PyExc_ValueError,
                        "bad ssrc, ring_size (a power of two <= 65536), mid or extension id");
        goto fail;
    }
    if (parse_address(address, &self->addr, &self->addrlen) < 0)
        goto fail;
    if (!en_srtp_tx_init(&self->srtp, profile, key.buf, (size_t)key.len, window)) {
        PyErr_Format(PyExc_ValueError, "cannot key SRTP profile %d with %zd key bytes", profile,
                     key.len);
        goto fail;
    }
    self->srtp_ready = 1;
    if ((size_t)key.len <= sizeof self->master) {
        memcpy(self->master, key.buf, (size_t)key.len);
        self->master_len = (size_t)key.len;
    }
    self->window = window;
    self->ring = PyMem_RawCalloc(ring_size, sizeof(ring_entry));
    if (self->ring == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (unsigned i = 0; i < ring_size; i++)
        self->ring[i].seq = -1;
    self->ring_mask = ring_size - 1;
    dupfd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd >= 0 && dupfd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    self->fd = dupfd;
    if (dupfd >= 0) {
        /* Consumers on the node's one UDP port hold different dup()s of the same
         * socket: the inode says they are one, so a fan-out batches them. */
        struct stat st;
        self->sock_key = fstat(dupfd, &st) == 0 ? (uint64_t)st.st_ino : (uint64_t)dupfd;
    }
    self->ssrc = (uint32_t)ssrc;
    self->vp8_sync = 1; /* Forwarder(): VP8 offsets are set on the first VP8 packet */
    self->tid = self->tid_target = ALL_TIDS;
    self->video = video;
    self->clock_rate = clock_rate;
    self->mid_id = mid_id;
    self->ast_id = ast_id;
    self->level_id = level_id;
    if (mid.buf != NULL) {
        memcpy(self->mid, mid.buf, (size_t)mid.len);
        self->mid_len = (unsigned)mid.len;
    }
    PyBuffer_Release(&key);
    if (mid.buf != NULL)
        PyBuffer_Release(&mid);
    return 0;

fail:
    PyBuffer_Release(&key);
    if (mid.buf != NULL)
        PyBuffer_Release(&mid);
    return -1;
}

static PyObject *NativeConsumer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    NativeConsumerObject *self = (NativeConsumerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    self->fd = -1;
    self->source = Py_None;
    Py_INCREF(Py_None);
    return (PyObject *)self;
}

static int NativeConsumer_traverse(NativeConsumerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->source);
    Py_VISIT(self->twcc);
    return 0;
}

static int NativeConsumer_clear(NativeConsumerObject *self)
{
    Py_CLEAR(self->source);
    Py_CLEAR(self->twcc);
    return 0;
}

static void NativeConsumer_dealloc(NativeConsumerObject *self)
{
    PyObject_GC_UnTrack(self);
    NativeConsumer_clear(self);
    if (self->fd >= 0)
        close(self->fd);
    if (self->srtp_ready)
        en_srtp_tx_free(&self->srtp);
    if (self->rtx)
        en_srtp_tx_free(&self->rtx_srtp);
    if (self->ring != NULL) {
        for (uint32_t i = 0; i <= self->ring_mask; i++)
            PyMem_RawFree(self->ring[i].buf);
        PyMem_RawFree(self->ring);
    }
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* edge/media/vp8.py: Vp8Ids, parse_ids, newer, Forwarder.vp8 */
typedef struct {
    int valid;
    int pic_at, pic_bits, tl0_at;
    unsigned pic, tl0;
    int tid, sync, start; /* temporal layer (-1: none), Y, the frame's first packet */
} vp8_ids;

static void vp8_parse(const uint8_t *d, size_t size, vp8_ids *o)
{
    size_t pos = 2;
    memset(o, 0, sizeof *o);
    o->pic_at = o->tl0_at = o->tid = -1;
    if (size < 2 || !(d[0] & 0x80))
        return;
    if (d[1] & 0x80) {
        if (pos >= size)
            return;
        if (d[pos] & 0x80) {
            if (pos + 1 >= size)
                return;
            o->pic_at = (int)pos;
            o->pic_bits = 15;
            o->pic = ((unsigned)(d[pos] & 0x7F) << 8) | d[pos + 1];
            pos += 2;
        } else {
            o->pic_at = (int)pos;
            o->pic_bits = 7;
            o->pic = d[pos] & 0x7F;
            pos += 1;
        }
    }
    if (d[1] & 0x40) {
        if (pos >= size) {
            o->pic_at = -1;
            return;
        }
        o->tl0_at = (int)pos;
        o->tl0 = d[pos];
        pos += 1;
    }
    if (d[1] & 0x30) { /* T or K: the TID|Y|KEYIDX byte */
        if (pos >= size) {
            o->pic_at = o->tl0_at = -1;
            return;
        }
        if (d[1] & 0x20) {
            o->tid = d[pos] >> 6;
            o->sync = (d[pos] & 0x20) != 0;
        }
    }
    o->start = (d[0] & 0x10) && !(d[0] & 0x07);
    o->valid = o->pic_at >= 0 || o->tl0_at >= 0 || o->tid >= 0;
}

static inline int wrap_newer(uint64_t a, uint64_t b, int bits)
{
    uint64_t mask = (1ull << bits) - 1, d = (a - b) & mask;
    return d > 0 && d < (1ull << (bits - 1));
}

/* Forwarder.map (edge/media/forwarder.py), caller holds the lock. Returns 0 to
 * skip the packet. A first start uses the origins drawn in advance from Python's
 * `random` (see draw_origin), exactly as Forwarder._rebase draws them. */
static void push_mark(int64_t marks[][2], int *n, int64_t incoming, int64_t before, int *lost)
{
    if (*n == MARKS) {
        memmove(marks[0], marks[1], sizeof(int64_t[2]) * (MARKS - 1));
        (*n)--;
        if (lost != NULL)
            *lost = 1;
    }
    marks[*n][0] = incoming;
    marks[*n][1] = before;
    (*n)++;
}

/* Forwarder._drop_temporal, caller holds the lock. */
static int drop_temporal(NativeConsumerObject *nc, uint64_t seq, const vp8_ids *ids, int keyframe,
                         int newest, int marker)
{
    uint64_t gap;
    int same_picture, head;
    if (ids->start && newest) {
        if (keyframe || nc->tid_target < nc->tid)
            nc->tid = nc->tid_target;
        else if (nc->tid < ids->tid && ids->tid <= nc->tid_target && ids->sync)
            nc->tid = ids->tid;
    }
    if (ids->tid <= nc->tid)
        return 0;
    if (!newest)
        return 1;
    gap = nc->has_in_last ? ((seq - (uint64_t)nc->in_last) & 0xFFFF) - 1 : 0;
    same_picture = ids->pic_at >= 0 && nc->has_drop_pic && (int64_t)ids->pic == nc->drop_pic;
    /* Forwarder._drop_temporal: the dropped frame's missing head */
    head = gap > 0 && !ids->start && nc->in_end && ids->pic_at >= 0 && nc->has_pic_in_last &&
           (uint64_t)ids->pic == (((uint64_t)nc->pic_in_last + 1) & ((1ull << ids->pic_bits) - 1));
    if (nc->in_dropped && (gap == 0 || same_picture)) {
        nc->seq_offset = (int64_t)(((uint64_t)nc->seq_offset - 1 - gap) & 0xFFFF);
    } else {
        int64_t first = head ? (int64_t)(((uint64_t)nc->in_last + 1) & 0xFFFF) : (int64_t)seq;
        push_mark(nc->seq_marks, &nc->n_seq_marks, first, nc->seq_offset, &nc->marks_lost);
        nc->seq_offset = (int64_t)(((uint64_t)nc->seq_offset - 1 - (head ? gap : 0)) & 0xFFFF);
    }
    nc->in_last = (int64_t)seq;
    nc->has_in_last = 1;
    nc->in_dropped = 1;
    nc->in_end = marker;
    if (ids->pic_at >= 0) {
        uint64_t mask = (1ull << ids->pic_bits) - 1;
        if (!(nc->has_drop_pic && (int64_t)ids->pic == nc->drop_pic) &&
            (!nc->has_pic_in_last || wrap_newer(ids->pic, (uint64_t)nc->pic_in_last, ids->pic_bits))) {
            push_mark(nc->pic_marks, &nc->n_pic_marks, (int64_t)ids->pic, nc->pic_offset, NULL);
            nc->pic_offset = (int64_t)(((uint64_t)nc->pic_offset - 1) & mask);
            nc->pic_in_last = (int64_t)ids->pic;
            nc->has_pic_in_last = 1;
        }
        nc->drop_pic = (int64_t)ids->pic;
        nc->has_drop_pic = 1;
    }
    return 1;
}

static int fwd_map(NativeConsumerObject *nc, uint64_t seq, uint64_t ts, int keyframe, double now,
                   const vp8_ids *ids, int marker, uint64_t *out_seq, uint64_t *out_ts)
{
    uint64_t s, t, offset;
    int newest;
    if (!nc->started) {
        if (nc->video && !keyframe)
            return 0;
        if (!nc->has_last_seq) {
            uint32_t r15, r32;
            if (nc->has_origin) {
                r15 = nc->origin_seq;
                r32 = nc->origin_ts;
                nc->has_origin = 0;
            } else { /* only if another thread raced us to the drawn origin */
                uint32_t r[2] = {0, 0};
                if (getrandom(r, sizeof r, GRND_NONBLOCK) != sizeof r) {
                    r[0] = (uint32_t)(uintptr_t)nc ^ (uint32_t)seq;
                    r[1] = (uint32_t)(now * 1e6);
                }
                r15 = r[0] & 0x7FFF;
                r32 = r[1];
            }
            nc->seq_offset = (int64_t)(((uint64_t)r15 - seq) & 0xFFFF);
            nc->ts_offset = (int64_t)(((uint64_t)r32 - ts) & 0xFFFFFFFF);
            nc->last_seq = (int64_t)((seq + (uint64_t)nc->seq_offset - 1) & 0xFFFF);
            nc->has_last_seq = 1;
        } else {
            double d = (now - nc->last_wall) * (double)nc->clock_rate;
            uint64_t elapsed;
            /* max(1, int(d)), reduced mod 2**32 (all that the offset keeps) */
            if (!(d >= 1.0))
                elapsed = 1;
            else if (d < 9.0e18)
                elapsed = (uint64_t)(int64_t)d;
            else
                elapsed = (uint64_t)fmod(trunc(d), 4294967296.0);
            nc->seq_offset = (int64_t)(((uint64_t)nc->last_seq + 1 - seq) & 0xFFFF);
            nc->ts_offset = (int64_t)(((uint64_t)nc->last_ts + elapsed - ts) & 0xFFFFFFFF);
        }
        nc->floor_seq = (int64_t)((seq + (uint64_t)nc->seq_offset) & 0xFFFF);
        nc->started = 1;
        nc->vp8_sync = 1;
        nc->tid = nc->tid_target;
        nc->has_in_last = nc->in_dropped = nc->in_end = nc->has_drop_pic = nc->has_pic_in_last = 0;
        nc->n_seq_marks = nc->n_pic_marks = 0;
        nc->marks_lost = 0;
    }
    newest = !nc->has_in_last || seq_newer(seq, (uint64_t)nc->in_last);
    if (ids != NULL && ids->valid && ids->tid >= 0 && drop_temporal(nc, seq, ids, keyframe, newest, marker))
        return 0;
    offset = (uint64_t)nc->seq_offset;
    if (newest) {
        nc->in_last = (int64_t)seq;
        nc->has_in_last = 1;
        nc->in_dropped = 0;
        nc->in_end = marker;
    } else {
        /* a late packet: the offset in force before the drops after it */
        int i, before_all = 1;
        for (i = nc->n_seq_marks - 1; i >= 0; i--) {
            if (((seq - (uint64_t)nc->seq_marks[i][0]) & 0xFFFF) < 0x8000) {
                before_all = 0;
                break;
            }
            offset = (uint64_t)nc->seq_marks[i][1];
        }
        if (before_all && nc->marks_lost && nc->n_seq_marks)
            return 0;
    }
    s = (seq + offset) & 0xFFFF;
    /* before the current source's start: would reuse sent seqs (and SRTP nonces) */
    if (((s - (uint64_t)nc->floor_seq) & 0xFFFF) >= 0x8000)
        return 0;
    t = (ts + (uint64_t)nc->ts_offset) & 0xFFFFFFFF;
    if (keyframe && nc->video && (!nc->has_key || seq_newer(s, (uint64_t)nc->key_seq))) {
        nc->key_seq = (int64_t)s;
        nc->has_key = 1;
    }
    if (!nc->has_last_seq || seq_newer(s, (uint64_t)nc->last_seq)) {
        nc->last_seq = (int64_t)s;
        nc->has_last_seq = 1;
        nc->last_ts = (int64_t)t;
        nc->last_wall = now;
        /* Forwarder.map: the floor and the keyframe mark trail the newest by at most TRAIL */
        if (((s - (uint64_t)nc->floor_seq) & 0xFFFF) > TRAIL && ((s - (uint64_t)nc->floor_seq) & 0xFFFF) < 0x8000)
            nc->floor_seq = (int64_t)((s - TRAIL) & 0xFFFF);
        if (nc->has_key && ((s - (uint64_t)nc->key_seq) & 0xFFFF) > TRAIL &&
            ((s - (uint64_t)nc->key_seq) & 0xFFFF) < 0x8000)
            nc->key_seq = (int64_t)((s - TRAIL) & 0xFFFF);
    }
    *out_seq = s;
    *out_ts = t;
    return 1;
}

/* A NACKed packet from before the latest keyframe: not worth a resend. */
static inline int nc_stale(const NativeConsumerObject *nc, uint64_t seq)
{
    return nc->has_key && ((seq - (uint64_t)nc->key_seq) & 0xFFFF) >= 0x8000;
}

/* With the GIL: if the next packet would start the stream from nothing, draw
 * random.getrandbits(15) and random.getrandbits(32) now, in the order the
 * Python Forwarder would. Never called with the lock held. */
static int draw_origin(NativeConsumerObject *nc, int keyframe)
{
    int need;
    PyObject *fn, *a = NULL, *b = NULL;
    unsigned long r15, r32;
    pthread_mutex_lock(&nc->lock);
    need = !nc->started && !nc->has_last_seq && (!nc->video || keyframe) && !nc->has_origin;
    pthread_mutex_unlock(&nc->lock);
    if (!need)
        return 0;
    fn = PyObject_GetAttr(random_module, str_getrandbits);
    if (fn == NULL)
        return -1;
    a = PyObject_CallFunction(fn, "i", 15);
    if (a != NULL)
        b = PyObject_CallFunction(fn, "i", 32);
    Py_DECREF(fn);
    if (b == NULL) {
        Py_XDECREF(a);
        return -1;
    }
    r15 = PyLong_AsUnsignedLongMask(a);
    r32 = PyLong_AsUnsignedLongMask(b);
    Py_DECREF(a);
    Py_DECREF(b);
    if (PyErr_Occurred())
        return -1;
    pthread_mutex_lock(&nc->lock);
    if (!nc->has_origin) {
        nc->origin_seq = (uint32_t)(r15 & 0x7FFF);
        nc->origin_ts = (uint32_t)r32;
        nc->has_origin = 1;
    }
    pthread_mutex_unlock(&nc->lock);
    return 0;
}

/* Store a protected packet in the ring (lock held, GIL not needed). */
static void ring_store(NativeConsumerObject *nc, int64_t seq, const uint8_t *data, uint32_t len)
{
    ring_entry *e = &nc->ring[(uint64_t)seq & nc->ring_mask];
    if (e->cap < len) {
        uint32_t cap = (len + 63u) & ~63u;
        uint8_t *grown = PyMem_RawRealloc(e->buf, cap);
        if (grown == NULL) {
            e->seq = -1;
            return;
        }
        e->buf = grown;
        e->cap = cap;
    }
    memcpy(e->buf, data, len);
    e->len = len;
    e->seq = seq;
    e->nacked = 0;
}

/* sendmmsg msgs[0:n] on fd; returns how many went out, counts the rest. */
static int send_batch(int fd, struct mmsghdr *msgs, int n, unsigned long long *eagain,
                      unsigned long long *errors)
{
    int i = 0, sent = 0;
    while (i < n) {
        int r = sendmmsg(fd, msgs + i, (unsigned)(n - i), MSG_DONTWAIT);
        if (r > 0) {
            i += r;
            sent += r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            *eagain += (unsigned long long)(n - i); /* asyncio would queue; we drop (NACK repairs) */
            break;
        } else {
            (*errors)++; /* skip the datagram the kernel refused */
            i++;
        }
    }
    return sent;
}

/* --- Python-level Forwarder interface ----------------------------------------- */

static PyObject *NativeConsumer_switch(NativeConsumerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"source", "clock_rate", NULL};
    PyObject *source, *rate, *old;
    int64_t clock_rate;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", kwlist, &source, &rate))
        return NULL;
    if (get_i64(rate, &clock_rate, "clock_rate") < 0)
        return NULL;
    old = self->source;
    Py_INCREF(source);
    self->source = source;
    Py_XDECREF(old);
    pthread_mutex_lock(&self->lock);
    self->clock_rate = clock_rate;
    self->started = 0;
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_map(NativeConsumerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"seq", "ts", "keyframe", "now", NULL};
    PyObject *seq_o, *ts_o;
    int keyframe, ok;
    double now;
    uint64_t seq, ts, out_seq, out_ts;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOpd", kwlist, &seq_o, &ts_o, &keyframe, &now))
        return NULL;
    if (get_u64(seq_o, &seq, 0xFFFF, "seq") < 0 || get_u64(ts_o, &ts, 0xFFFFFFFF, "ts") < 0)
        return NULL;
    if (draw_origin(self, keyframe) < 0)
        return NULL;
    pthread_mutex_lock(&self->lock);
    ok = fwd_map(self, seq, ts, keyframe, now, NULL, 0, &out_seq, &out_ts);
    pthread_mutex_unlock(&self->lock);
    if (!ok)
        Py_RETURN_NONE;
    return Py_BuildValue("(KK)", (unsigned long long)out_seq, (unsigned long long)out_ts);
}

static PyObject *NativeConsumer_ring_get(NativeConsumerObject *self, PyObject *arg)
{
    long long seq = PyLong_AsLongLong(arg);
    PyObject *out = NULL;
    ring_entry *e;
    if (seq == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE; /* not a sequence number we stored */
    }
    pthread_mutex_lock(&self->lock);
    e = &self->ring[(uint64_t)seq & self->ring_mask];
    if (seq >= 0 && e->seq == seq)
        out = PyBytes_FromStringAndSize((const char *)e->buf, e->len);
    pthread_mutex_unlock(&self->lock);
    if (out == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

static PyObject *NativeConsumer_ring_put(NativeConsumerObject *self, PyObject *args)
{
    long long seq;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "Ly*", &seq, &data))
        return NULL;
    if (seq < 0 || data.len > 0xFFFF) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "bad sequence number or packet");
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    ring_store(self, seq, data.buf, (uint32_t)data.len);
    pthread_mutex_unlock(&self->lock);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

/* retransmit(seqs, send=True) -> int: resend NACKed packets from the ring. */
/* Where the transport-wide sequence of a packet the node built sits: the first
 * element of its extension block (edge/media/rtx.py twcc_offset); 0 = none. */
static int twcc_offset(const uint8_t *p, size_t len, int id)
{
    if (!(p[0] & 0x10) || len < 20)
        return 0;
    if (p[12] == 0xBE && p[13] == 0xDE)
        return (p[16] >> 4) == id && (p[16] & 0x0F) == 1 ? 17 : 0;
    return p[16] == id && p[17] == 2 ? 18 : 0;
}

/* rtx_repair() of edge/media/dataplane.py, lock held: the repair of a stored
 * clear packet, protected into `out` (cap bytes); its length, or -1 to skip it. */
static int rtx_build(NativeConsumerObject *nc, const ring_entry *e, double now, uint8_t *out,
                     size_t cap)
{
    const uint8_t *c = e->buf;
    size_t len = e->len, off = 12, n;
    int pt, at;
    if (len < 12 || (c[0] & 0x2F))
        return -1;
    if (c[0] & 0x10) {
        if (len < 16)
            return -1;
        off += 4 + 4 * (((size_t)c[14] << 8) | c[15]);
        if (off > len)
            return -1;
    }
    pt = nc->rtx_pt[c[1] & 0x7F];
    if (pt == 0xFF || len + 2 + EN_SRTP_MAX_TAG > cap)
        return -1; /* a payload type without RTX is not repaired on an RTX slot */
    {
        out[0] = c[0];
        out[1] = (uint8_t)((c[1] & 0x80) | pt);
        out[2] = (uint8_t)(nc->rtx_seq >> 8);
        out[3] = (uint8_t)nc->rtx_seq;
        memcpy(out + 4, c + 4, 4);
        out[8] = (uint8_t)(nc->rtx_ssrc >> 24);
        out[9] = (uint8_t)(nc->rtx_ssrc >> 16);
        out[10] = (uint8_t)(nc->rtx_ssrc >> 8);
        out[11] = (uint8_t)nc->rtx_ssrc;
        memcpy(out + 12, c + 12, off - 12);
        out[off] = c[2]; /* the OSN */
        out[off + 1] = c[3];
        memcpy(out + off + 2, c + off, len - off);
        n = len + 2;
        nc->rtx_seq++;
    }
    if (nc->twcc != NULL && nc->twcc_id && (at = twcc_offset(out, n, nc->twcc_id)) != 0) {
        uint16_t tseq = en_twcc_stamp(nc->twcc, now, (uint32_t)n);
        out[at] = (uint8_t)(tseq >> 8);
        out[at + 1] = (uint8_t)tseq;
    }
    at = en_srtp_protect(&nc->rtx_srtp, out, n);
    if (at < 0)
        nc->protect_errors++;
    return at;
}

#define RTX_CAP 2048 /* bytes per RTX repair buffer: a packet of up to ~2 KB */

/* One repair of ring entry e, lock held: the message's iov points at the stored
 * protected packet or, on an RTX slot, at its RTX packet built into out
 * (RTX_CAP bytes). Sets the message's address too; 0 if there is nothing to send. */
static int repair_msg(NativeConsumerObject *nc, const ring_entry *e, double now, uint8_t *out,
                      struct iovec *iov, struct mmsghdr *msg)
{
    if (nc->rtx) {
        int len = rtx_build(nc, e, now, out, RTX_CAP);
        if (len < 0)
            return 0;
        iov->iov_base = out;
        iov->iov_len = (size_t)len;
    } else {
        iov->iov_base = e->buf;
        iov->iov_len = e->len;
    }
    msg->msg_hdr.msg_iov = iov;
    msg->msg_hdr.msg_iovlen = 1;
    msg->msg_hdr.msg_name = &nc->addr;
    msg->msg_hdr.msg_namelen = nc->addrlen;
    return 1;
}

static PyObject *NativeConsumer_retransmit(NativeConsumerObject *self, PyObject *args)
{
    PyObject *seqs, *fast;
    int send = 1, served = 0;
    double now = 0.0;
    Py_ssize_t n, i;
    int64_t *wanted;
    struct mmsghdr *msgs;
    struct iovec *iov;
    uint8_t *rtx_bufs = NULL;
    unsigned long long eagain = 0, errors = 0;
    if (!PyArg_ParseTuple(args, "O|pd", &seqs, &send, &now))
        return NULL;
    fast = PySequence_Fast(seqs, "seqs must be a sequence of ints");
    if (fast == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    if (n == 0) {
        Py_DECREF(fast);
        return PyLong_FromLong(0);
    }
    wanted = PyMem_Malloc(sizeof(int64_t) * (size_t)n);
    msgs = PyMem_Calloc((size_t)n, sizeof(struct mmsghdr));
    iov = PyMem_Malloc(sizeof(struct iovec) * (size_t)n);
    if (self->rtx)
        rtx_bufs = PyMem_Malloc((size_t)RTX_CAP * (size_t)n);
    if (wanted == NULL || msgs == NULL || iov == NULL || (self->rtx && rtx_bufs == NULL)) {
        PyMem_Free(wanted);
        PyMem_Free(msgs);
        PyMem_Free(iov);
        PyMem_Free(rtx_bufs);
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            v = -1;
        }
        wanted[i] = v;
    }
    Py_DECREF(fast);

    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    for (i = 0; i < n; i++) {
        ring_entry *e;
        if (wanted[i] < 0)
            continue;
        e = &self->ring[(uint64_t)wanted[i] & self->ring_mask];
        if (e->seq != wanted[i] || nc_stale(self, (uint64_t)wanted[i]))
            continue;
        if (repair_msg(self, e, now, rtx_bufs ? rtx_bufs + (size_t)served * RTX_CAP : NULL, &iov[served], &msgs[served]))
            served++;
    }
    /* The ring entries stay put while we hold the lock: send from them directly. */
    if (send && served && self->fd >= 0 && !__atomic_load_n(&self->closing, __ATOMIC_SEQ_CST)) {
        int off = 0;
        while (off < served) {
            int batch = served - off > 1024 ? 1024 : served - off;
            send_batch(self->fd, msgs + off, batch, &eagain, &errors);
            off += batch;
        }
    }
    self->retransmitted += (unsigned long long)served;
    self->eagain += eagain;
    self->send_errors += errors;
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS

    PyMem_Free(wanted);
    PyMem_Free(msgs);
    PyMem_Free(iov);
    PyMem_Free(rtx_bufs);
    return PyLong_FromLong(served);
}

static PyObject *NativeConsumer_close(NativeConsumerObject *self, PyObject *unused)
{
    nc_close_fd(self);
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_set_playout_delay(NativeConsumerObject *self, PyObject *args)
{
    int id;
    Py_buffer value = {0};
    if (!PyArg_ParseTuple(args, "iy*", &id, &value))
        return NULL;
    if (id < 0 || id > 255 || (id && value.len != 3)) {
        PyBuffer_Release(&value);
        PyErr_SetString(PyExc_ValueError, "set_playout_delay(id 0-255, 3-byte value)");
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    self->pd_id = id;
    if (id)
        memcpy(self->pd, value.buf, 3);
    pthread_mutex_unlock(&self->lock);
    PyBuffer_Release(&value);
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_set_twcc(NativeConsumerObject *self, PyObject *args)
{
    int id;
    PyObject *history, *old;
    if (!PyArg_ParseTuple(args, "iO", &id, &history))
        return NULL;
    if (id < 0 || id > 255 || (id && !PyObject_TypeCheck(history, &en_TwccHistoryType))) {
        PyErr_SetString(PyExc_ValueError, "set_twcc(id 0-255, TwccHistory)");
        return NULL;
    }
    if (!id)
        history = NULL;
    Py_XINCREF(history);
    pthread_mutex_lock(&self->lock);
    old = self->twcc;
    self->twcc = history;
    self->twcc_id = id;
    pthread_mutex_unlock(&self->lock);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_set_rtx(NativeConsumerObject *self, PyObject *args)
{
    unsigned long long ssrc;
    unsigned seq;
    Py_buffer table = {0};
    if (!PyArg_ParseTuple(args, "KIy*", &ssrc, &seq, &table))
        return NULL;
    if (ssrc > 0xFFFFFFFFull || seq > 0xFFFF || table.len != 128) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "set_rtx(ssrc, first_seq 0-65535, 128-byte PT table)");
        return NULL;
    }
    if (!self->srtp_ready || self->rtx || self->master_len == 0) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_RuntimeError, "set_rtx: once, on an initialized NativeConsumer");
        return NULL;
    }
    if (!en_srtp_tx_init(&self->rtx_srtp, self->srtp.profile, self->master, self->master_len,
                         self->window)) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "cannot key the RTX stream's SRTP");
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    /* The ring holds protected packets until now: none of them can be repaired as RTX. */
    for (uint32_t i = 0; self->ring != NULL && i <= self->ring_mask; i++)
        self->ring[i].seq = -1;
    self->rtx = 1;
    self->rtx_ssrc = (uint32_t)ssrc;
    self->rtx_seq = (uint16_t)seq;
    memcpy(self->rtx_pt, table.buf, 128);
    pthread_mutex_unlock(&self->lock);
    PyBuffer_Release(&table);
    Py_RETURN_NONE;
}

static PyObject *NativeConsumer_get_rtx_seq(NativeConsumerObject *self, void *c)
{
    unsigned seq;
    pthread_mutex_lock(&self->lock);
    seq = self->rtx_seq;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromUnsignedLong(seq);
}


static PyMethodDef NativeConsumer_methods[] = {
    {"set_rtx", (PyCFunction)NativeConsumer_set_rtx, METH_VARARGS,
     "set_rtx(ssrc, first_seq, pt_table): repairs as RTX packets (the ring keeps clear packets "
     "from now on); pt_table[pt] is the RTX PT of each PT, 0xFF = none."},
    {"set_twcc", (PyCFunction)NativeConsumer_set_twcc, METH_VARARGS,
     "set_twcc(id, history): stamp every packet with a transport-wide sequence from history "
     "(id 0 = stop)."},
    {"set_playout_delay", (PyCFunction)NativeConsumer_set_playout_delay, METH_VARARGS,
     "set_playout_delay(id, value): add the playout-delay element (id 0 = stop) to every packet."},
    {"switch", (PyCFunction)(void (*)(void))NativeConsumer_switch, METH_VARARGS | METH_KEYWORDS,
     "switch(source, clock_rate): take packets from another source from its next keyframe on."},
    {"map", (PyCFunction)(void (*)(void))NativeConsumer_map, METH_VARARGS | METH_KEYWORDS,
     "map(seq, ts, keyframe, now) -> (seq, ts) | None: Forwarder.map."},
    {"ring_get", (PyCFunction)NativeConsumer_ring_get, METH_O,
     "ring_get(seq) -> bytes | None: the protected packet sent with this sequence number."},
    {"ring_put", (PyCFunction)NativeConsumer_ring_put, METH_VARARGS,
     "ring_put(seq, packet): store a protected packet."},
    {"retransmit", (PyCFunction)NativeConsumer_retransmit, METH_VARARGS,
     "retransmit(seqs, send=True) -> int: re-send these sequence numbers from the ring."},
    {"close", (PyCFunction)NativeConsumer_close, METH_NOARGS,
     "close(): stop sending and close our duplicate of the socket."},
    {NULL}};

/* --- attributes ---------------------------------------------------------------- */

#define NC_INT64_FIELD(name)                                                                     \
    static PyObject *nc_get_##name(NativeConsumerObject *self, void *c)                          \
    {                                                                                            \
        int64_t v;                                                                               \
        pthread_mutex_lock(&self->lock);                                                         \
        v = self->name;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return PyLong_FromLongLong(v);                                                           \
    }                                                                                            \
    static int nc_set_##name(NativeConsumerObject *self, PyObject *value, void *c)               \
    {                                                                                            \
        int64_t v;                                                                               \
        if (get_i64(value, &v, #name) < 0)                                                       \
            return -1;                                                                           \
        pthread_mutex_lock(&self->lock);                                                         \
        self->name = v;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return 0;                                                                                \
    }

NC_INT64_FIELD(clock_rate)
NC_INT64_FIELD(seq_offset)
NC_INT64_FIELD(floor_seq)
NC_INT64_FIELD(ts_offset)
NC_INT64_FIELD(last_ts)

#define NC_BOOL_FIELD(name)                                                                      \
    static PyObject *nc_get_##name(NativeConsumerObject *self, void *c)                          \
    {                                                                                            \
        return PyBool_FromLong(self->name);                                                      \
    }                                                                                            \
    static int nc_set_##name(NativeConsumerObject *self, PyObject *value, void *c)               \
    {                                                                                            \
        int v;                                                                                   \
        if (value == NULL) {                                                                     \
            PyErr_SetString(PyExc_AttributeError, "cannot delete " #name);                       \
            return -1;                                                                           \
        }                                                                                        \
        v = PyObject_IsTrue(value);                                                              \
        if (v < 0)                                                                               \
            return -1;                                                                           \
        pthread_mutex_lock(&self->lock);                                                         \
        self->name = v;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return 0;                                                                                \
    }

NC_BOOL_FIELD(video)
NC_BOOL_FIELD(started)
NC_BOOL_FIELD(vp8_sync)
NC_INT64_FIELD(pic_offset)
NC_INT64_FIELD(tl0_offset)

/* An int64 field that is None until set (its has_ flag). */
#define NC_OPTIONAL_FIELD(name, flag)                                                            \
    static PyObject *nc_get_##name(NativeConsumerObject *self, void *c)                          \
    {                                                                                            \
        int has;                                                                                 \
        int64_t v;                                                                               \
        pthread_mutex_lock(&self->lock);                                                         \
        has = self->flag;                                                                        \
        v = self->name;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        if (!has)                                                                                \
            Py_RETURN_NONE;                                                                      \
        return PyLong_FromLongLong(v);                                                           \
    }                                                                                            \
    static int nc_set_##name(NativeConsumerObject *self, PyObject *value, void *c)               \
    {                                                                                            \
        int64_t v = 0;                                                                           \
        int has = value != Py_None;                                                              \
        if (has && get_i64(value, &v, #name) < 0)                                                \
            return -1;                                                                           \
        pthread_mutex_lock(&self->lock);                                                         \
        self->flag = has;                                                                        \
        self->name = v;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return 0;                                                                                \
    }

NC_OPTIONAL_FIELD(last_pic, has_last_pic)
NC_OPTIONAL_FIELD(last_tl0, has_last_tl0)

NC_OPTIONAL_FIELD(key_seq, has_key)
NC_INT64_FIELD(tid)
NC_INT64_FIELD(tid_target)
NC_OPTIONAL_FIELD(in_last, has_in_last)
NC_OPTIONAL_FIELD(drop_pic, has_drop_pic)
NC_OPTIONAL_FIELD(pic_in_last, has_pic_in_last)
NC_BOOL_FIELD(in_dropped)
NC_BOOL_FIELD(in_end)
NC_BOOL_FIELD(marks_lost)

static PyObject *marks_list(NativeConsumerObject *self, int pic)
{
    int64_t copy[MARKS][2];
    int n, i;
    PyObject *out;
    pthread_mutex_lock(&self->lock);
    n = pic ? self->n_pic_marks : self->n_seq_marks;
    memcpy(copy, pic ? self->pic_marks : self->seq_marks, sizeof(int64_t[2]) * (size_t)n);
    pthread_mutex_unlock(&self->lock);
    out = PyList_New(n);
    for (i = 0; out != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(LL)", (long long)copy[i][0], (long long)copy[i][1]);
        if (t == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

static PyObject *nc_get_seq_marks(NativeConsumerObject *self, void *c)
{
    return marks_list(self, 0);
}

static PyObject *nc_get_pic_marks(NativeConsumerObject *self, void *c)
{
    return marks_list(self, 1);
}

/* The marks from a list of (incoming, offset before), the newest MARKS kept. */
static int marks_set(NativeConsumerObject *self, PyObject *value, int pic)
{
    int64_t copy[MARKS][2];
    Py_ssize_t n, i, skip;
    PyObject *seq = value == NULL ? NULL : PySequence_Fast(value, "marks must be a list of pairs");
    if (seq == NULL)
        return -1;
    n = PySequence_Fast_GET_SIZE(seq);
    skip = n > MARKS ? n - MARKS : 0;
    for (i = skip; i < n; i++) {
        long long a, b;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "LL", &a, &b)) {
            Py_DECREF(seq);
            return -1;
        }
        copy[i - skip][0] = a;
        copy[i - skip][1] = b;
    }
    Py_DECREF(seq);
    pthread_mutex_lock(&self->lock);
    memcpy(pic ? self->pic_marks : self->seq_marks, copy, sizeof(int64_t[2]) * (size_t)(n - skip));
    if (pic)
        self->n_pic_marks = (int)(n - skip);
    else
        self->n_seq_marks = (int)(n - skip);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

static int nc_set_seq_marks(NativeConsumerObject *self, PyObject *value, void *c)
{
    return marks_set(self, value, 0);
}

static int nc_set_pic_marks(NativeConsumerObject *self, PyObject *value, void *c)
{
    return marks_set(self, value, 1);
}
NC_OPTIONAL_FIELD(last_seq, has_last_seq)

static PyObject *nc_get_last_wall(NativeConsumerObject *self, void *c)
{
    double v;
    pthread_mutex_lock(&self->lock);
    v = self->last_wall;
    pthread_mutex_unlock(&self->lock);
    return PyFloat_FromDouble(v);
}

static int nc_set_last_wall(NativeConsumerObject *self, PyObject *value, void *c)
{
    double v;
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete last_wall");
        return -1;
    }
    v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    pthread_mutex_lock(&self->lock);
    self->last_wall = v;
    pthread_mutex_unlock(&self->lock);
    return 0;
}

static PyObject *nc_get_source(NativeConsumerObject *self, void *c)
{
    Py_INCREF(self->source);
    return self->source;
}

static int nc_set_source(NativeConsumerObject *self, PyObject *value, void *c)
{
    PyObject *old = self->source;
    if (value == NULL)
        value = Py_None;
    Py_INCREF(value);
    self->source = value;
    Py_XDECREF(old);
    return 0;
}

static PyObject *nc_get_waiting(NativeConsumerObject *self, void *c)
{
    return PyBool_FromLong(self->video && !self->started);
}

#define NC_COUNTER(name)                                                                         \
    static PyObject *nc_get_##name(NativeConsumerObject *self, void *c)                          \
    {                                                                                            \
        unsigned long long v;                                                                    \
        pthread_mutex_lock(&self->lock);                                                         \
        v = self->name;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return PyLong_FromUnsignedLongLong(v);                                                   \
    }

NC_COUNTER(packets)
NC_COUNTER(bytes)
NC_COUNTER(send_errors)
NC_COUNTER(eagain)
NC_COUNTER(protect_errors)
NC_COUNTER(retransmitted)

static PyObject *nc_get_ssrc(NativeConsumerObject *self, void *c)
{
    return PyLong_FromUnsignedLong(self->ssrc);
}

static PyObject *nc_get_ring_size(NativeConsumerObject *self, void *c)
{
    return PyLong_FromUnsignedLong((unsigned long)self->ring_mask + 1);
}

static PyObject *nc_get_profile(NativeConsumerObject *self, void *c)
{
    return PyLong_FromLong(self->srtp.profile);
}

static PyObject *nc_get_sending(NativeConsumerObject *self, void *c)
{
    return PyBool_FromLong(__atomic_load_n(&self->fd, __ATOMIC_SEQ_CST) >= 0 &&
                           !__atomic_load_n(&self->closing, __ATOMIC_SEQ_CST));
}

#define RW(name, doc) {#name, (getter)nc_get_##name, (setter)nc_set_##name, doc, NULL}
#define RO(name, doc) {#name, (getter)nc_get_##name, NULL, doc, NULL}

static PyGetSetDef NativeConsumer_getset[] = {
    RW(video, "Forwarder.video"),
    RW(clock_rate, "Forwarder.clock_rate"),
    RW(source, "Forwarder.source: what feeds the slot (set by switch())"),
    RW(seq_offset, "Forwarder.seq_offset"),
    RW(ts_offset, "Forwarder.ts_offset"),
    RW(last_seq, "Forwarder.last_seq (None before the first packet)"),
    RW(key_seq, "Forwarder.key_seq (None before the first keyframe)"),
    RW(vp8_sync, "Forwarder.vp8_sync: VP8 offsets are set on the next VP8 packet"),
    RW(pic_offset, "Forwarder.pic_offset (VP8 PictureID)"),
    RW(tl0_offset, "Forwarder.tl0_offset (VP8 TL0PICIDX)"),
    RW(last_pic, "Forwarder.last_pic (None before a VP8 PictureID was sent)"),
    RW(last_tl0, "Forwarder.last_tl0 (None before a VP8 TL0PICIDX was sent)"),
    RW(last_ts, "Forwarder.last_ts"),
    RW(last_wall, "Forwarder.last_wall"),
    RW(started, "Forwarder.started"),
    RW(floor_seq, "Forwarder.floor_seq"),
    RW(tid, "Forwarder.tid: the highest VP8 temporal layer forwarded now"),
    RW(tid_target, "Forwarder.tid_target: the highest wanted (taken at a frame start)"),
    RW(in_last, "Forwarder.in_last (None since the (re)start)"),
    RW(in_dropped, "Forwarder.in_dropped"),
    RW(in_end, "Forwarder.in_end: the newest incoming packet ended its frame"),
    RW(drop_pic, "Forwarder.drop_pic"),
    RW(pic_in_last, "Forwarder.pic_in_last"),
    RW(marks_lost, "Forwarder.marks_lost"),
    RW(seq_marks, "Forwarder.seq_marks: [(incoming seq dropped, seq_offset before)]"),
    RW(pic_marks, "Forwarder.pic_marks: [(incoming PictureID dropped, pic_offset before)]"),
    {"waiting_for_keyframe", (getter)nc_get_waiting, NULL, "Forwarder.waiting_for_keyframe", NULL},
    RO(ssrc, "outgoing SSRC"),
    RO(ring_size, "retransmit ring entries"),
    RO(profile, "SRTP profile (libsrtp number)"),
    RO(sending, "whether the socket is still open"),
    RO(packets, "packets protected and stored"),
    RO(bytes, "clear RTP bytes of those packets"),
    RO(send_errors, "datagrams the kernel refused"),
    RO(eagain, "datagrams dropped because the socket buffer was full"),
    RO(protect_errors, "packets SRTP refused (index older than the replay window)"),
    RO(retransmitted, "packets served from the ring"),
    {"rtx_seq", (getter)NativeConsumer_get_rtx_seq, NULL, "the RTX stream's next sequence number", NULL},
    {NULL}};

static PyTypeObject NativeConsumerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.NativeConsumer",
    .tp_basicsize = sizeof(NativeConsumerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One consumer slot's native egress state: Forwarder, SRTP, ring, socket.",
    .tp_new = NativeConsumer_new,
    .tp_init = (initproc)NativeConsumer_init,
    .tp_dealloc = (destructor)NativeConsumer_dealloc,
    .tp_traverse = (traverseproc)NativeConsumer_traverse,
    .tp_clear = (inquiry)NativeConsumer_clear,
    .tp_methods = NativeConsumer_methods,
    .tp_getset = NativeConsumer_getset,
};

/* ====================================================================== Fanout */

typedef struct {
    NativeConsumerObject *nc;
    PyObject *consumer;
    PyObject *transport;
    int16_t pt[128]; /* -1: not mapped, -2: mapped to an invalid PT */
    Py_ssize_t off_packets, off_bytes; /* __slots__ member offsets, or -1 */
} fan_entry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    fan_entry *entries;
    unsigned long long send_calls; /* sendmmsg calls made by forward() (atomic) */
} FanoutObject;

/* The offset of a __slots__ member of type(obj), or -1 (use getattr/setattr). */
static Py_ssize_t slot_offset(PyObject *obj, PyObject *name)
{
    PyObject *descr = _PyType_Lookup(Py_TYPE(obj), name);
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY))
            return m->offset;
    }
    return -1;
}

static int Fanout_init(FanoutObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *entries, *fast;
    Py_ssize_t i, n;
    if (self->entries != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Fanout is already initialized");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O", &entries))
        return -1;
    fast = PySequence_Fast(entries, "entries must be a sequence");
    if (fast == NULL)
        return -1;
    n = PySequence_Fast_GET_SIZE(fast);
    self->entries = PyMem_Calloc((size_t)(n ? n : 1), sizeof(fan_entry));
    if (self->entries == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i), *nc, *consumer, *transport, *pt_map;
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        fan_entry *e = &self->entries[i];
        if (!PyArg_ParseTuple(item, "O!OOO!;entry must be (NativeConsumer, consumer, transport, pt_map)",
                              &NativeConsumerType, &nc, &consumer, &transport, &PyDict_Type, &pt_map))
            goto fail;
        for (int k = 0; k < 128; k++)
            e->pt[k] = -1;
        while (PyDict_Next(pt_map, &pos, &key, &value)) {
            long k, v;
            if (!PyLong_Check(key) || !PyLong_Check(value))
                continue;
            k = PyLong_AsLong(key);
            v = PyLong_AsLong(value);
            if (PyErr_Occurred()) {
                PyErr_Clear();
                continue;
            }
            if (k >= 0 && k < 128)
                e->pt[k] = (int16_t)(v >= 0 && v < 128 ? v : -2);
        }
        Py_INCREF(nc);
        Py_INCREF(consumer);
        Py_INCREF(transport);
        e->nc = (NativeConsumerObject *)nc;
        e->consumer = consumer;
        e->transport = transport;
        e->off_packets = slot_offset(consumer, str_packets);
        e->off_bytes = slot_offset(consumer, str_bytes);
        self->n = i + 1;
    }
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    return -1;
}

static int Fanout_traverse(FanoutObject *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_VISIT(self->entries[i].nc);
        Py_VISIT(self->entries[i].consumer);
        Py_VISIT(self->entries[i].transport);
    }
    return 0;
}

static int Fanout_clear(FanoutObject *self)
{
    Py_ssize_t n = self->n;
    self->n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_CLEAR(self->entries[i].nc);
        Py_CLEAR(self->entries[i].consumer);
        Py_CLEAR(self->entries[i].transport);
    }
    return 0;
}

static void Fanout_dealloc(FanoutObject *self)
{
    PyObject_GC_UnTrack(self);
    Fanout_clear(self);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* obj.<name> += inc, straight into the __slots__ member when there is one. */
static int add_counter(PyObject *obj, Py_ssize_t off, PyObject *name, unsigned long long inc)
{
    PyObject *old, *sum, *delta;
    if (off >= 0) {
        PyObject **slot = (PyObject **)((char *)obj + off);
        old = *slot;
        if (old != NULL && PyLong_CheckExact(old)) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(old, &overflow);
            if (!overflow && v >= 0 && (unsigned long long)v < (1ull << 62) && inc < (1ull << 62)) {
                sum = PyLong_FromLongLong(v + (long long)inc);
                if (sum == NULL)
                    return -1;
                *slot = sum;
                Py_DECREF(old);
                return 0;
            }
        }
    }
    old = PyObject_GetAttr(obj, name);
    if (old == NULL)
        return -1;
    delta = PyLong_FromUnsignedLongLong(inc);
    sum = delta ? PyNumber_Add(old, delta) : NULL;
    Py_DECREF(old);
    Py_XDECREF(delta);
    if (sum == NULL)
        return -1;
    if (PyObject_SetAttr(obj, name, sum) < 0) {
        Py_DECREF(sum);
        return -1;
    }
    Py_DECREF(sum);
    return 0;
}

/* The per-thread scratch space where packets are built, protected and sent from. */
static __thread uint8_t *scratch_buf;
static __thread size_t scratch_cap;

static uint8_t *scratch(size_t need)
{
    if (scratch_cap < need) {
        uint8_t *grown = realloc(scratch_buf, need);
        if (grown == NULL)
            return NULL;
        scratch_buf = grown;
        scratch_cap = need;
    }
    return scratch_buf;
}

/* Forwarder.vp8 on the copy of the payload at `out` (nc locked). */
static void vp8_rewrite(NativeConsumerObject *nc, const vp8_ids *ids, uint8_t *out)
{
    uint64_t pic = 0, tl0 = 0, pic_offset;
    if (nc->vp8_sync) {
        nc->vp8_sync = 0;
        if (ids->pic_at >= 0) {
            uint64_t mod = (1ull << ids->pic_bits) - 1;
            nc->pic_offset = nc->has_last_pic ? (int64_t)(((uint64_t)nc->last_pic + 1 - ids->pic) & mod) : 0;
        }
        if (ids->tl0_at >= 0)
            nc->tl0_offset = nc->has_last_tl0 ? (int64_t)(((uint64_t)nc->last_tl0 + 1 - ids->tl0) & 0xFF) : 0;
    }
    pic_offset = (uint64_t)nc->pic_offset;
    if (ids->pic_at >= 0) {
        uint64_t mask = (1ull << ids->pic_bits) - 1;
        if (!nc->has_pic_in_last || (int64_t)ids->pic == nc->pic_in_last ||
            wrap_newer(ids->pic, (uint64_t)nc->pic_in_last, ids->pic_bits)) {
            nc->pic_in_last = (int64_t)ids->pic;
            nc->has_pic_in_last = 1;
        } else {
            /* a late packet: the offset in force before the drops after it */
            for (int i = nc->n_pic_marks - 1; i >= 0; i--) {
                if (!wrap_newer((uint64_t)nc->pic_marks[i][0], ids->pic, ids->pic_bits))
                    break;
                pic_offset = (uint64_t)nc->pic_marks[i][1];
            }
        }
        pic = (ids->pic + pic_offset) & mask;
        if (!nc->has_last_pic || wrap_newer(pic, (uint64_t)nc->last_pic & mask, ids->pic_bits)) {
            nc->last_pic = (int64_t)pic;
            nc->has_last_pic = 1;
        }
    }
    if (ids->tl0_at >= 0) {
        tl0 = (ids->tl0 + (uint64_t)nc->tl0_offset) & 0xFF;
        if (!nc->has_last_tl0 || wrap_newer(tl0, (uint64_t)nc->last_tl0, 8)) {
            nc->last_tl0 = (int64_t)tl0;
            nc->has_last_tl0 = 1;
        }
    }
    if (!pic_offset && !nc->tl0_offset)
        return;
    if (ids->pic_at >= 0) {
        if (ids->pic_bits == 15) {
            out[ids->pic_at] = (uint8_t)(0x80 | (pic >> 8));
            out[ids->pic_at + 1] = (uint8_t)pic;
        } else {
            out[ids->pic_at] = (uint8_t)(pic & 0x7F);
        }
    }
    if (ids->tl0_at >= 0)
        out[ids->tl0_at] = (uint8_t)tl0;
}

typedef struct {
    const uint8_t *payload;
    size_t payload_len;
    int marker, keyframe;
    unsigned pt;
    uint64_t seq, ts;
    double now;
    const uint8_t *ast;
    unsigned ast_len;
    int has_ast;
    const uint8_t *level;
    unsigned level_len;
    int has_level;
    vp8_ids vp8; /* where the payload's PictureID / TL0PICIDX are (vp8.parse_ids) */
} fan_packet;

/* Send queued packets: one sendmmsg per run of packets on the same socket (the
 * same sock_key: with the node's one UDP port, a whole fan-out), on the fd of
 * the run's first packet (any dup() of the socket will do; its owner is in flight). */
static void flush(FanoutObject *fan, struct mmsghdr *msgs, const int *fds, const uint64_t *socks,
                  NativeConsumerObject **owners, int queued)
{
    int start = 0;
    while (start < queued) {
        int end = start + 1, i, k;
        while (end < queued && socks[end] == socks[start])
            end++;
        i = start;
        while (i < end) {
            int r = sendmmsg(fds[start], msgs + i, (unsigned)(end - i), MSG_DONTWAIT);
            __atomic_add_fetch(&fan->send_calls, 1, __ATOMIC_RELAXED);
            if (r > 0) {
                i += r;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
                /* asyncio would queue; we drop (NACK repairs): each owner counts its own */
                for (k = i; k < end; k++) {
                    pthread_mutex_lock(&owners[k]->lock);
                    owners[k]->eagain++;
                    pthread_mutex_unlock(&owners[k]->lock);
                }
                break;
            } else {
                pthread_mutex_lock(&owners[i]->lock); /* skip the datagram the kernel refused */
                owners[i]->send_errors++;
                pthread_mutex_unlock(&owners[i]->lock);
                i++;
            }
        }
        for (k = start; k < end; k++)
            nc_release_fd(owners[k]);
        start = end;
    }
}

/* Phase 2, no GIL: everything per egress packet. Returns packets produced. */
static Py_ssize_t fan_out(FanoutObject *self, const fan_packet *p, const uint8_t *send_ok,
                          uint32_t *produced, uint8_t *slots, size_t slot_size)
{
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    struct sockaddr_storage addrs[CHUNK];
    int fds[CHUNK];
    uint64_t socks[CHUNK];
    NativeConsumerObject *owners[CHUNK];
    uint8_t block[MAX_EXT_BLOCK];
    int block_len = 0, have_block = 0;
    int cache_mid_id = -1, cache_ast_id = -1, cache_level_id = -1, cache_twcc_id = -1;
    int twcc_at = 0; /* offset of the transport-wide sequence in the block (0 = none) */
    static const uint8_t twcc_placeholder[2] = {0, 0};
    const NativeConsumerObject *cache_nc = NULL;
    Py_ssize_t i, total = 0;
    int queued = 0;

    memset(msgs, 0, sizeof msgs);
    for (i = 0; i < self->n; i++) {
        fan_entry *e = &self->entries[i];
        NativeConsumerObject *nc = e->nc;
        uint8_t *buf = slots + (size_t)queued * slot_size;
        uint64_t out_seq, out_ts;
        int pt, len, plen;

        pthread_mutex_lock(&nc->lock);
        /* A payload type the consumer does not take leaves its mapping untouched
         * (as in the Python plane): checked before fwd_map. */
        pt = e->pt[p->pt];
        if (pt < 0) {
            if (pt == -2)
                nc->protect_errors++;
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        if (!fwd_map(nc, p->seq, p->ts, p->keyframe, p->now, &p->vp8, p->marker, &out_seq, &out_ts)) {
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        /* The extension block: consumers with the same layout share one (the
         * transport-wide sequence, first in it, is patched per packet). */
        int twcc_id = nc->twcc != NULL ? nc->twcc_id : 0;
        if (!have_block || nc->mid_id != cache_mid_id || nc->ast_id != cache_ast_id ||
            twcc_id != cache_twcc_id ||
            nc->level_id != cache_level_id ||
            (nc->mid_id && (cache_nc == NULL || nc->mid_len != cache_nc->mid_len ||
                            memcmp(nc->mid, cache_nc->mid, nc->mid_len) != 0)) ||
            (cache_nc != NULL && (nc->pd_id != cache_nc->pd_id ||
                                  (nc->pd_id && memcmp(nc->pd, cache_nc->pd, 3) != 0)))) {
            ext_el els[5];
            int n = 0;
            if (twcc_id)
                n = ext_put(els, n, twcc_id, twcc_placeholder, 2);
            if (nc->mid_id)
                n = ext_put(els, n, nc->mid_id, nc->mid, nc->mid_len);
            if (nc->ast_id && p->has_ast)
                n = ext_put(els, n, nc->ast_id, p->ast, p->ast_len);
            if (nc->level_id && p->has_level)
                n = ext_put(els, n, nc->level_id, p->level, p->level_len);
            if (nc->pd_id)
                n = ext_put(els, n, nc->pd_id, nc->pd, 3);
            block_len = serialize_ext(els, n, block);
            twcc_at = twcc_id && block_len > 0 ? (block[0] == 0xBE ? 5 : 6) : 0;
            have_block = 1;
            cache_twcc_id = twcc_id;
            cache_mid_id = nc->mid_id;
            cache_ast_id = nc->ast_id;
            cache_level_id = nc->level_id;
            cache_nc = nc;
        }
        if (block_len < 0) {
            nc->protect_errors++;
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        /* build_packet(): fixed header, extension block, payload */
        buf[0] = block_len ? 0x90 : 0x80;
        buf[1] = (uint8_t)(pt | (p->marker ? 0x80 : 0));
        buf[2] = (uint8_t)(out_seq >> 8);
        buf[3] = (uint8_t)out_seq;
        buf[4] = (uint8_t)(out_ts >> 24);
        buf[5] = (uint8_t)(out_ts >> 16);
        buf[6] = (uint8_t)(out_ts >> 8);
        buf[7] = (uint8_t)out_ts;
        buf[8] = (uint8_t)(nc->ssrc >> 24);
        buf[9] = (uint8_t)(nc->ssrc >> 16);
        buf[10] = (uint8_t)(nc->ssrc >> 8);
        buf[11] = (uint8_t)nc->ssrc;
        memcpy(buf + 12, block, (size_t)block_len);
        memcpy(buf + 12 + block_len, p->payload, p->payload_len);
        if (p->vp8.valid)
            vp8_rewrite(nc, &p->vp8, buf + 12 + block_len);
        len = 12 + block_len + (int)p->payload_len;
        if (twcc_at) {
            uint16_t tseq = en_twcc_stamp(nc->twcc, p->now, (uint32_t)len);
            buf[12 + twcc_at] = (uint8_t)(tseq >> 8);
            buf[12 + twcc_at + 1] = (uint8_t)tseq;
        }
        if (nc->rtx) /* RTX repairs are built from the clear packet (rtx_build) */
            ring_store(nc, (int64_t)out_seq, buf, (uint32_t)len);
        plen = en_srtp_protect(&nc->srtp, buf, (size_t)len);
        if (plen < 0) {
            if (nc->rtx)
                nc->ring[out_seq & nc->ring_mask].seq = -1;
            nc->protect_errors++;
            pthread_mutex_unlock(&nc->lock);
            continue;
        }
        if (!nc->rtx)
            ring_store(nc, (int64_t)out_seq, buf, (uint32_t)plen);
        nc->packets++;
        nc->bytes += (unsigned long long)len;
        produced[i] = (uint32_t)len;
        total++;
        if (send_ok[i] && nc->fd >= 0 && !__atomic_load_n(&nc->closing, __ATOMIC_SEQ_CST)) {
            __atomic_add_fetch(&nc->inflight, 1, __ATOMIC_SEQ_CST);
            fds[queued] = nc->fd;
            socks[queued] = nc->sock_key;
            owners[queued] = nc;
            memcpy(&addrs[queued], &nc->addr, nc->addrlen);
            iov[queued].iov_base = buf;
            iov[queued].iov_len = (size_t)plen;
            msgs[queued].msg_hdr.msg_iov = &iov[queued];
            msgs[queued].msg_hdr.msg_iovlen = 1;
            msgs[queued].msg_hdr.msg_name = &addrs[queued];
            msgs[queued].msg_hdr.msg_namelen = nc->addrlen;
            queued++;
        }
        pthread_mutex_unlock(&nc->lock);

        if (queued == CHUNK) {
            flush(self, msgs, fds, socks, owners, queued);
            queued = 0;
        }
    }
    if (queued)
        flush(self, msgs, fds, socks, owners, queued);
    return total;
}

static PyObject *Fanout_forward(FanoutObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    /* forward(data, marker, pt, seq, ts, payload_offset, payload_length, keyframe,
     *         abs_send_time, audio_level, now, vp8=False) -> int */
    Py_buffer data;
    fan_packet p;
    Py_buffer ast = {0}, level = {0};
    long long off, plen;
    uint64_t v;
    uint8_t *send_ok = NULL;
    uint32_t *produced = NULL;
    uint8_t *slots;
    size_t slot_size;
    Py_ssize_t i, n = self->n, total = 0;
    PyObject *result = NULL;

    if (nargs != 11 && nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "forward(data, marker, pt, seq, ts, payload_offset, payload_length, "
                        "keyframe, abs_send_time, audio_level, now, vp8=False)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    memset(&p, 0, sizeof p);
    if ((p.marker = PyObject_IsTrue(args[1])) < 0 || get_u64(args[2], &v, 127, "pt") < 0)
        goto done;
    p.pt = (unsigned)v;
    if (get_u64(args[3], &p.seq, 0xFFFF, "seq") < 0 || get_u64(args[4], &p.ts, 0xFFFFFFFF, "ts") < 0)
        goto done;
    off = PyLong_AsLongLong(args[5]);
    plen = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        goto done;
    if (off < 0 || plen < 0 || off + plen > data.len || plen > 65535) {
        PyErr_SetString(PyExc_ValueError, "payload is outside the packet");
        goto done;
    }
    if ((p.keyframe = PyObject_IsTrue(args[7])) < 0)
        goto done;
    if (args[8] != Py_None) {
        if (PyObject_GetBuffer(args[8], &ast, PyBUF_SIMPLE) < 0)
            goto done;
        p.has_ast = 1;
        p.ast = ast.buf;
        p.ast_len = (unsigned)(ast.len > 255 ? 256 : ast.len); /* 256: no form fits */
    }
    if (args[9] != Py_None) {
        if (PyObject_GetBuffer(args[9], &level, PyBUF_SIMPLE) < 0)
            goto done;
        p.has_level = 1;
        p.level = level.buf;
        p.level_len = (unsigned)(level.len > 255 ? 256 : level.len);
    }
    p.now = PyFloat_AsDouble(args[10]);
    if (p.now == -1.0 && PyErr_Occurred())
        goto done;
    p.payload = (const uint8_t *)data.buf + off;
    p.payload_len = (size_t)plen;
    if (nargs == 12) {
        int vp8 = PyObject_IsTrue(args[11]);
        if (vp8 < 0)
            goto done;
        if (vp8)
            vp8_parse(p.payload, p.payload_len, &p.vp8);
    }
    if (plen == 0 || n == 0) { /* padding-only probes carry nothing for a viewer */
        result = PyLong_FromLong(0);
        goto done;
    }

    /* Phase 1, with the GIL: which transports are still open, random origins. */
    send_ok = PyMem_Malloc((size_t)n);
    produced = PyMem_Calloc((size_t)n, sizeof(uint32_t));
    if (send_ok == NULL || produced == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        fan_entry *e = &self->entries[i];
        int closed = 0;
        if (e->transport != Py_None) {
            PyObject *c = PyObject_GetAttr(e->transport, str_closed);
            if (c == NULL) {
                PyErr_Clear();
            } else {
                closed = PyObject_IsTrue(c) == 1;
                Py_DECREF(c);
            }
        }
        send_ok[i] = !closed;
        if (closed && __atomic_load_n(&e->nc->fd, __ATOMIC_SEQ_CST) >= 0)
            nc_close_fd(e->nc); /* the transport is gone: give its socket back */
        /* Only a consumer that takes this payload type starts on it (Python
         * checks the PT before Forwarder.map, which draws the origins). */
        if (e->pt[p.pt] >= 0 && draw_origin(e->nc, p.keyframe) < 0)
            goto done;
    }
    slot_size = (12 + MAX_EXT_BLOCK + (size_t)plen + EN_SRTP_MAX_TAG + 63) & ~(size_t)63;
    slots = scratch(slot_size * CHUNK);
    if (slots == NULL) {
        PyErr_NoMemory();
        goto done;
    }

    /* Phase 2, without the GIL: map, rewrite, protect, store, send. */
    Py_BEGIN_ALLOW_THREADS
    total = fan_out(self, &p, send_ok, produced, slots, slot_size);
    Py_END_ALLOW_THREADS

    /* Phase 3, with the GIL: the Consumers' counters, as the Python plane keeps them. */
    for (i = 0; i < n; i++) {
        fan_entry *e = &self->entries[i];
        if (!produced[i])
            continue;
        if (add_counter(e->consumer, e->off_packets, str_packets, 1) < 0 ||
            add_counter(e->consumer, e->off_bytes, str_bytes, produced[i]) < 0)
            goto done;
    }
    result = PyLong_FromSsize_t(total);

done:
    PyMem_Free(send_ok);
    PyMem_Free(produced);
    if (ast.obj != NULL)
        PyBuffer_Release(&ast);
    if (level.obj != NULL)
        PyBuffer_Release(&level);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *Fanout_len(FanoutObject *self, void *c)
{
    return PyLong_FromSsize_t(self->n);
}

static PyObject *Fanout_consumers(FanoutObject *self, void *c)
{
    PyObject *out = PyList_New(self->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_INCREF(self->entries[i].nc);
        PyList_SET_ITEM(out, i, (PyObject *)self->entries[i].nc);
    }
    return out;
}

static PyMethodDef Fanout_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))Fanout_forward, METH_FASTCALL,
     "forward(data, marker, pt, seq, ts, payload_offset, payload_length, keyframe, "
     "abs_send_time, audio_level, now) -> int: one ingress packet to every consumer."},
    {NULL}};

static PyObject *Fanout_send_calls(FanoutObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(__atomic_load_n(&self->send_calls, __ATOMIC_RELAXED));
}

static PyGetSetDef Fanout_getset[] = {
    {"size", (getter)Fanout_len, NULL, "number of consumers", NULL},
    {"send_calls", (getter)Fanout_send_calls, NULL,
     "sendmmsg calls forward() made (one per run of packets on one socket)", NULL},
    {"native_consumers", (getter)Fanout_consumers, NULL, "the NativeConsumers, in order", NULL},
    {NULL}};

static PyTypeObject FanoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.Fanout",
    .tp_basicsize = sizeof(FanoutObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Fanout([(NativeConsumer, consumer, transport, pt_map), ...])",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fanout_init,
    .tp_dealloc = (destructor)Fanout_dealloc,
    .tp_traverse = (traverseproc)Fanout_traverse,
    .tp_clear = (inquiry)Fanout_clear,
    .tp_methods = Fanout_methods,
    .tp_getset = Fanout_getset,
};

/* ====================================================================== NACK */

/* One viewer consumer a NACK may name: its outgoing SSRC, NativeConsumer (or none
 * when the slot never forwarded natively: nothing to resend), remaining budget. */
typedef struct {
    uint32_t ssrc;
    NativeConsumerObject *nc;
    long long budget;
    int send;
    unsigned long long requested, throttled, served, first, stale;
} nack_target;

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* One packet of a compound, as edge/media/rtcp.py _read_packet frames it. */
static int rtcp_next(const uint8_t *d, size_t len, size_t pos, unsigned *type, unsigned *count,
                     size_t *start, size_t *payload_end, size_t *end)
{
    size_t words, pad;
    if (len - pos < 4 || d[pos] >> 6 != 2)
        return -1;
    *type = d[pos + 1];
    *count = d[pos] & 0x1F;
    words = ((size_t)d[pos + 2] << 8) | d[pos + 3];
    *start = pos + 4;
    *end = *start + 4 * words;
    if (*end > len)
        return -1;
    *payload_end = *end;
    if (d[pos] & 0x20) {
        pad = *end > *start ? d[*end - 1] : 0;
        if (pad == 0 || pad > *end - *start)
            return -1;
        *payload_end -= pad;
    }
    return 0;
}

/* Resend `seqs` from nc's ring with one sendmmsg (nc's lock taken here). */
static unsigned long long nack_resend(NativeConsumerObject *nc, const uint16_t *seqs, size_t n,
                                      int send, double now)
{
    struct mmsghdr msgs[256]; /* a NACK packet asks for up to 17 per FCI: batches of 256 */
    struct iovec iov[256];
    unsigned long long eagain = 0, errors = 0;
    int served = 0, off = 0;
    /* RTX repairs are built per packet: buffers for a batch (no GIL needed). */
    uint8_t *rtx_bufs = nc->rtx ? PyMem_RawMalloc((size_t)RTX_CAP * 256) : NULL;
    if (nc->rtx && rtx_bufs == NULL)
        return 0;
    pthread_mutex_lock(&nc->lock);
    while (off < (int)n) {
        int batch = 0;
        memset(msgs, 0, sizeof msgs);
        for (; off < (int)n && batch < (int)(sizeof msgs / sizeof msgs[0]); off++) {
            ring_entry *e = &nc->ring[(uint64_t)seqs[off] & nc->ring_mask];
            if (e->seq != (int64_t)seqs[off] || nc_stale(nc, seqs[off]))
                continue;
            if (repair_msg(nc, e, now, rtx_bufs ? rtx_bufs + (size_t)batch * RTX_CAP : NULL, &iov[batch], &msgs[batch]))
                batch++;
        }
        if (send && batch && nc->fd >= 0 && !__atomic_load_n(&nc->closing, __ATOMIC_SEQ_CST))
            send_batch(nc->fd, msgs, batch, &eagain, &errors);
        served += batch;
    }
    nc->retransmitted += (unsigned long long)served;
    nc->eagain += eagain;
    nc->send_errors += errors;
    pthread_mutex_unlock(&nc->lock);
    PyMem_RawFree(rtx_bufs);
    return (unsigned long long)served;
}

/* Phase 2 of serve_nacks, no GIL: every generic NACK of the compound, in order. */
static void nack_serve_all(const uint8_t *d, size_t len, nack_target *t, Py_ssize_t nt,
                           uint16_t *lost, double now)
{
    size_t pos = 0, start, payload_end, end;
    unsigned type, count;
    while (pos < len && rtcp_next(d, len, pos, &type, &count, &start, &payload_end, &end) == 0) {
        pos = end;
        if (type == 205 && count == 1) {
            uint32_t media = be32(d + start + 4);
            Py_ssize_t k;
            size_t q, n = 0;
            long long asked;
            nack_target *c = NULL;
            for (k = 0; k < nt; k++)
                if (t[k].ssrc == media) {
                    c = &t[k];
                    break;
                }
            if (c == NULL)
                continue;
            /* Nack._decode: each PID then the BLP bits, lowest first. */
            for (q = start + 8; q + 4 <= payload_end; q += 4) {
                uint16_t pid = (uint16_t)((d[q] << 8) | d[q + 1]);
                unsigned blp = ((unsigned)d[q + 2] << 8) | d[q + 3], bit;
                lost[n++] = pid;
                for (bit = 0; blp; bit++, blp >>= 1)
                    if (blp & 1)
                        lost[n++] = (uint16_t)(pid + bit + 1);
            }
            /* ViewerSession.on_rtcp: those from before the latest keyframe are
             * dropped first (they would only eat the budget), then at most
             * `budget` of the rest, the first ones. */
            c->requested += n;
            if (c->nc != NULL) {
                size_t i, kept = 0;
                pthread_mutex_lock(&c->nc->lock);
                for (i = 0; i < n; i++) {
                    /* RetransmitBuffer.first_nack: a sent packet NACKed for the first time */
                    ring_entry *e = &c->nc->ring[lost[i] & c->nc->ring_mask];
                    if (e->seq == (int64_t)lost[i] && !e->nacked) {
                        e->nacked = 1;
                        c->first++;
                    }
                    if (!nc_stale(c->nc, lost[i]))
                        lost[kept++] = lost[i];
                }
                c->stale += n - kept;
                pthread_mutex_unlock(&c->nc->lock);
                n = kept;
            }
            asked = (long long)n;
            if (asked > c->budget) {
                c->throttled += (unsigned long long)(asked - c->budget);
                asked = c->budget;
            }
            c->budget -= asked;
            if (asked > 0 && c->nc != NULL)
                c->served += nack_resend(c->nc, lost, (size_t)asked, c->send, now);
        }
    }
}

/* serve_nacks(data, ssrcs, natives, budgets, send_ok)
 *     -> (status, [(requested, throttled, served, first, stale)])
 *
 * status -1: the compound is malformed (as parse_rtcp frames it, or a NACK is
 * malformed); nothing was served. 0: it held only generic NACKs, all handled.
 * 1: it holds other packets too, for Python to parse. */
static PyObject *native_serve_nacks(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    PyObject *ssrcs = NULL, *natives = NULL, *budgets = NULL, *send_ok = NULL, *result = NULL;
    PyObject *per = NULL;
    nack_target *t = NULL;
    uint16_t *lost = NULL;
    Py_ssize_t nt = 0, k;
    size_t pos = 0, start, payload_end, end, max_fci = 0;
    unsigned type, count;
    int status = 0;
    const uint8_t *d;
    double now = 0.0;

    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "serve_nacks(data, ssrcs, natives, budgets, send_ok, now=0.0)");
        return NULL;
    }
    if (nargs == 6) {
        now = PyFloat_AsDouble(args[5]);
        if (now == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    d = data.buf;
    ssrcs = PySequence_Fast(args[1], "ssrcs must be a sequence");
    natives = ssrcs ? PySequence_Fast(args[2], "natives must be a sequence") : NULL;
    budgets = natives ? PySequence_Fast(args[3], "budgets must be a sequence") : NULL;
    send_ok = budgets ? PySequence_Fast(args[4], "send_ok must be a sequence") : NULL;
    if (send_ok == NULL)
        goto done;
    nt = PySequence_Fast_GET_SIZE(ssrcs);
    if (PySequence_Fast_GET_SIZE(natives) != nt || PySequence_Fast_GET_SIZE(budgets) != nt ||
        PySequence_Fast_GET_SIZE(send_ok) != nt) {
        PyErr_SetString(PyExc_ValueError, "ssrcs, natives, budgets and send_ok differ in length");
        goto done;
    }
    t = PyMem_Calloc((size_t)(nt ? nt : 1), sizeof *t);
    if (t == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (k = 0; k < nt; k++) {
        PyObject *nc = PySequence_Fast_GET_ITEM(natives, k);
        uint64_t v;
        int64_t b;
        if (get_u64(PySequence_Fast_GET_ITEM(ssrcs, k), &v, 0xFFFFFFFFull, "ssrc") < 0 ||
            get_i64(PySequence_Fast_GET_ITEM(budgets, k), &b, "budget") < 0)
            goto done;
        if (nc != Py_None && !PyObject_TypeCheck(nc, &NativeConsumerType)) {
            PyErr_SetString(PyExc_TypeError, "natives holds NativeConsumer or None");
            goto done;
        }
        if (nc != Py_None && ((NativeConsumerObject *)nc)->ring == NULL) {
            PyErr_SetString(PyExc_ValueError, "a NativeConsumer is not initialized");
            goto done;
        }
        if ((t[k].send = PyObject_IsTrue(PySequence_Fast_GET_ITEM(send_ok, k))) < 0)
            goto done;
        t[k].ssrc = (uint32_t)v;
        t[k].nc = nc == Py_None ? NULL : (NativeConsumerObject *)nc;
        t[k].budget = b < 0 ? 0 : b;
    }

    /* Phase 1: validate the whole compound before serving anything. */
    if (data.len == 0)
        status = -1;
    while (status >= 0 && pos < (size_t)data.len) {
        if (rtcp_next(d, (size_t)data.len, pos, &type, &count, &start, &payload_end, &end) < 0) {
            status = -1;
            break;
        }
        if (type == 205 && count == 1) {
            size_t plen = payload_end - start;
            if (plen < 8 || plen % 4) {
                status = -1;
                break;
            }
            if ((plen - 8) / 4 > max_fci)
                max_fci = (plen - 8) / 4;
        } else {
            status = 1;
        }
        pos = end;
    }
    if (status >= 0 && max_fci) {
        lost = PyMem_Malloc(max_fci * 17 * sizeof(uint16_t));
        if (lost == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        /* Phase 2, no GIL: the natives stay alive (the caller's sequence holds them). */
        Py_BEGIN_ALLOW_THREADS
        nack_serve_all(d, (size_t)data.len, t, nt, lost, now);
        Py_END_ALLOW_THREADS
    }
    per = PyList_New(nt);
    if (per == NULL)
        goto done;
    for (k = 0; k < nt; k++) {
        PyObject *item = Py_BuildValue("(KKKKK)", t[k].requested, t[k].throttled, t[k].served,
                                       t[k].first, t[k].stale);
        if (item == NULL) {
            Py_CLEAR(per);
            goto done;
        }
        PyList_SET_ITEM(per, k, item);
    }
    result = Py_BuildValue("(iN)", status, per);
done:
    PyMem_Free(t);
    PyMem_Free(lost);
    Py_XDECREF(ssrcs);
    Py_XDECREF(natives);
    Py_XDECREF(budgets);
    Py_XDECREF(send_ok);
    PyBuffer_Release(&data);
    return result;
}

/* ====================================================================== module */

static PyObject *native_abs_send_time(PyObject *m, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    uint32_t v;
    uint8_t out[3];
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    v = (uint32_t)((uint64_t)(int64_t)(now * 262144.0) & 0xFFFFFF);
    out[0] = (uint8_t)(v >> 16);
    out[1] = (uint8_t)(v >> 8);
    out[2] = (uint8_t)v;
    return PyBytes_FromStringAndSize((const char *)out, 3);
}

static PyMethodDef module_methods[] = {
    {"abs_send_time", native_abs_send_time, METH_O,
     "abs_send_time(now) -> bytes: the 3-byte abs-send-time value (edge.media.rtp)."},
    {"serve_nacks", (PyCFunction)(void (*)(void))native_serve_nacks, METH_FASTCALL,
     "serve_nacks(data, ssrcs, natives, budgets, send_ok, now=0.0) -> (status, [(requested, throttled, "
     "served, first, stale), ...]): a viewer's generic NACKs resent from the rings (see "
     "native_plane.py)."},
    {NULL}};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "edge.media._native",
    "The native media data plane: SRTP protect on OpenSSL, fan-out and retransmit with "
    "sendmmsg, the GIL released. See edge/media/native_plane.py.",
    -1, module_methods};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m;
    if (PyType_Ready(&SrtpContextType) < 0 || PyType_Ready(&NativeConsumerType) < 0 ||
        PyType_Ready(&FanoutType) < 0)
        return NULL;
    random_module = PyImport_ImportModule("random");
    if (random_module == NULL)
        return NULL;
    str_closed = PyUnicode_InternFromString("closed");
    str_packets = PyUnicode_InternFromString("packets");
    str_bytes = PyUnicode_InternFromString("bytes");
    str_getrandbits = PyUnicode_InternFromString("getrandbits");
    if (!str_closed || !str_packets || !str_bytes || !str_getrandbits)
        return NULL;
    m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    {
        /* A pylibsrtp.Error when pylibsrtp is there (it is: aiortc needs it), so
         * code that catches libsrtp's errors (aiortc's receive loop) catches ours. */
        PyObject *base = NULL, *lib = PyImport_ImportModule("pylibsrtp");
        if (lib != NULL) {
            base = PyObject_GetAttrString(lib, "Error");
            Py_DECREF(lib);
        }
        if (base == NULL || !PyExceptionClass_Check(base)) {
            PyErr_Clear();
            Py_XDECREF(base);
            base = PyExc_Exception;
            Py_INCREF(base);
        }
        SrtpError = PyErr_NewException("edge.media._native.SrtpError", base, NULL);
        Py_DECREF(base);
    }
    Py_INCREF(&SrtpContextType);
    Py_INCREF(&NativeConsumerType);
    Py_INCREF(&FanoutType);
    if (SrtpError == NULL || PyModule_AddObject(m, "SrtpError", SrtpError) < 0 ||
        PyModule_AddObject(m, "SrtpContext", (PyObject *)&SrtpContextType) < 0 ||
        PyModule_AddObject(m, "NativeConsumer", (PyObject *)&NativeConsumerType) < 0 ||
        PyModule_AddObject(m, "Fanout", (PyObject *)&FanoutType) < 0 ||
        PyModule_AddIntConstant(m, "PROFILE_AES128_CM_SHA1_80", EN_SRTP_AES128_CM_SHA1_80) < 0 ||
        PyModule_AddIntConstant(m, "PROFILE_AES128_CM_SHA1_32", EN_SRTP_AES128_CM_SHA1_32) < 0 ||
        PyModule_AddIntConstant(m, "PROFILE_AEAD_AES_128_GCM", EN_SRTP_AEAD_AES_128_GCM) < 0 ||
        PyModule_AddIntConstant(m, "PROFILE_AEAD_AES_256_GCM", EN_SRTP_AEAD_AES_256_GCM) < 0 ||
        PyModule_AddIntConstant(m, "CHUNK", CHUNK) < 0 ||
        PyModule_AddStringConstant(m, "OPENSSL_VERSION", OpenSSL_version(OPENSSL_VERSION)) < 0 ||
        PyModule_AddFunctions(m, en_ingress_methods) < 0 || en_ingress_add_types(m, SrtpError) < 0 ||
        en_twcc_add_types(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
