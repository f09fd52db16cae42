/*
 * ingress.c - the receive side of the native data plane (CPython types):
 *
 *   SrtpReceiver(profile, key, window_size=1024)
 *       An inbound SRTP/SRTCP session for any SSRC, like pylibsrtp's
 *       Session(Policy(key, SSRC_ANY_INBOUND, profile)) with window 1024
 *       (aiortc's _rx_srtp): .unprotect(packet) / .unprotect_rtcp(packet)
 *       give the same bytes and refuse the same packets with the same
 *       message (SrtpError instead of pylibsrtp.Error), crypto without the GIL.
 *
 *   RtpParser(mid_id=0, rid_id=0, repaired_rid_id=0, abs_send_time_id=0,
 *             transport_cc_id=0, audio_level_id=0, codecs={})
 *       .parse(packet) -> tuple: RtpHeader.parse plus the values of the
 *       extensions with these ids plus codecs.is_keyframe for the packet's
 *       payload type (codecs: {payload type: "vp8" | "h264" | ...}), one call.
 *
 *   is_keyframe(codec, payload) -> bool: codecs.is_keyframe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <string.h>

#include "ingress.h"
#include "rtp_parse.h"
#include "srtp_rx.h"

static PyObject *srtp_error; /* edge.media._native.SrtpError */

/* pylibsrtp's Session buffer: 1500 bytes; longer packets are a ValueError. */
#define MAX_SRTP_PACKET 1500

/* ====================================================================== SrtpReceiver */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    int ready;
    en_srtp_rx rx;
    unsigned long long rtp_ok, rtp_failed, rtcp_ok, rtcp_failed;
    int last_error;
} SrtpReceiverObject;

static PyObject *SrtpReceiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    SrtpReceiverObject *self = (SrtpReceiverObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        pthread_mutex_init(&self->lock, NULL);
    return (PyObject *)self;
}

static int SrtpReceiver_init(SrtpReceiverObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"profile", "key", "window_size", NULL};
    int profile;
    unsigned window = 1024, key_len, salt_len;
    Py_buffer key;
    int ok;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "SrtpReceiver is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*|I", kwlist, &profile, &key, &window))
        return -1;
    if (!en_srtp_master_lengths(profile, &key_len, &salt_len)) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return -1;
    }
    if ((size_t)key.len < key_len + salt_len || window == 0 || window > 32768) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "key must contain at least %u bytes (window 1..32768)",
                     key_len + salt_len);
        return -1;
    }
    ok = en_srtp_rx_init(&self->rx, profile, key.buf, (size_t)key.len, window);
    PyBuffer_Release(&key);
    if (!ok) {
        PyErr_SetString(srtp_error, "couldn't initialize");
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void SrtpReceiver_dealloc(SrtpReceiverObject *self)
{
    if (self->ready)
        en_srtp_rx_free(&self->rx);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *receive(SrtpReceiverObject *self, PyObject *packet, int rtcp)
{
    Py_ssize_t len;
    PyObject *out;
    int n;
    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "SrtpReceiver is not initialized");
        return NULL;
    }
    len = PyBytes_GET_SIZE(packet);
    if (len > MAX_SRTP_PACKET) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    /* A fresh bytes object nobody else sees yet: unprotect in place, then trim. */
    out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(packet), len);
    if (out == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    if (rtcp)
        n = en_srtp_unprotect_rtcp(&self->rx, (uint8_t *)PyBytes_AS_STRING(out), (size_t)len);
    else
        n = en_srtp_unprotect(&self->rx, (uint8_t *)PyBytes_AS_STRING(out), (size_t)len);
    if (n < 0) {
        self->last_error = -n;
        if (rtcp)
            self->rtcp_failed++;
        else
            self->rtp_failed++;
    } else if (rtcp) {
        self->rtcp_ok++;
    } else {
        self->rtp_ok++;
    }
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        Py_DECREF(out);
        PyErr_SetString(srtp_error, en_srtp_error_message(-n));
        return NULL;
    }
    if (_PyBytes_Resize(&out, n) < 0)
        return NULL;
    return out;
}

static PyObject *SrtpReceiver_unprotect(SrtpReceiverObject *self, PyObject *packet)
{
    return receive(self, packet, 0);
}

static PyObject *SrtpReceiver_unprotect_rtcp(SrtpReceiverObject *self, PyObject *packet)
{
    return receive(self, packet, 1);
}

#define SR_COUNTER(name)                                                                         \
    static PyObject *sr_get_##name(SrtpReceiverObject *self, void *c)                            \
    {                                                                                            \
        unsigned long long v;                                                                    \
        pthread_mutex_lock(&self->lock);                                                         \
        v = self->name;                                                                          \
        pthread_mutex_unlock(&self->lock);                                                       \
        return PyLong_FromUnsignedLongLong(v);                                                   \
    }
SR_COUNTER(rtp_ok)
SR_COUNTER(rtp_failed)
SR_COUNTER(rtcp_ok)
SR_COUNTER(rtcp_failed)

static PyObject *sr_get_streams(SrtpReceiverObject *self, void *c)
{
    size_t n;
    pthread_mutex_lock(&self->lock);
    n = self->rx.nstreams;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromSize_t(n);
}

static PyObject *sr_get_profile(SrtpReceiverObject *self, void *c)
{
    return PyLong_FromLong(self->rx.profile);
}

static PyMethodDef SrtpReceiver_methods[] = {
    {"unprotect", (PyCFunction)SrtpReceiver_unprotect, METH_O,
     "unprotect(packet) -> bytes: verify and decrypt one SRTP packet (pylibsrtp Session.unprotect)."},
    {"unprotect_rtcp", (PyCFunction)SrtpReceiver_unprotect_rtcp, METH_O,
     "unprotect_rtcp(packet) -> bytes: verify and decrypt one SRTCP packet."},
    {NULL}};

static PyGetSetDef SrtpReceiver_getset[] = {
    {"rtp_ok", (getter)sr_get_rtp_ok, NULL, "SRTP packets unprotected", NULL},
    {"rtp_failed", (getter)sr_get_rtp_failed, NULL, "SRTP packets refused", NULL},
    {"rtcp_ok", (getter)sr_get_rtcp_ok, NULL, "SRTCP packets unprotected", NULL},
    {"rtcp_failed", (getter)sr_get_rtcp_failed, NULL, "SRTCP packets refused", NULL},
    {"streams", (getter)sr_get_streams, NULL, "SSRCs seen (one stream each)", NULL},
    {"profile", (getter)sr_get_profile, NULL, "the SRTP profile (libsrtp number)", NULL},
    {NULL}};

static PyTypeObject SrtpReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.SrtpReceiver",
    .tp_basicsize = sizeof(SrtpReceiverObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SrtpReceiver(profile, key, window_size=1024): inbound SRTP/SRTCP, any SSRC.",
    .tp_new = SrtpReceiver_new,
    .tp_init = (initproc)SrtpReceiver_init,
    .tp_dealloc = (destructor)SrtpReceiver_dealloc,
    .tp_methods = SrtpReceiver_methods,
    .tp_getset = SrtpReceiver_getset,
};

/* ====================================================================== RtpParser */

typedef struct {
    PyObject_HEAD
    uint8_t ext_slot[256];
    uint8_t codec[128];
} RtpParserObject;

static int codec_number(PyObject *name)
{
    if (!PyUnicode_Check(name))
        return -1;
    if (PyUnicode_CompareWithASCIIString(name, "vp8") == 0)
        return EN_CODEC_VP8;
    if (PyUnicode_CompareWithASCIIString(name, "h264") == 0)
        return EN_CODEC_H264;
    return EN_CODEC_NONE;
}

static int RtpParser_init(RtpParserObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"mid_id",           "rid_id",          "repaired_rid_id",
                             "abs_send_time_id", "transport_cc_id", "audio_level_id",
                             "codecs",           NULL};
    int ids[EN_EXT_COUNT] = {0};
    PyObject *codecs = NULL, *key, *value;
    Py_ssize_t pos = 0;
    int i;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|iiiiiiO", kwlist, &ids[EN_EXT_MID],
                                     &ids[EN_EXT_RID], &ids[EN_EXT_RRID], &ids[EN_EXT_AST],
                                     &ids[EN_EXT_TWCC], &ids[EN_EXT_LEVEL], &codecs))
        return -1;
    memset(self->ext_slot, 0, sizeof self->ext_slot);
    memset(self->codec, 0, sizeof self->codec);
    for (i = 0; i < EN_EXT_COUNT; i++) {
        if (ids[i] < 0 || ids[i] > 255) {
            PyErr_SetString(PyExc_ValueError, "extension ids are 0 (none) or 1..255");
            return -1;
        }
        if (ids[i])
            self->ext_slot[ids[i]] = (uint8_t)(i + 1);
    }
    if (codecs != NULL && codecs != Py_None) {
        if (!PyDict_Check(codecs)) {
            PyErr_SetString(PyExc_TypeError, "codecs must be a dict {payload type: codec name}");
            return -1;
        }
        while (PyDict_Next(codecs, &pos, &key, &value)) {
            long pt = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
            int codec = codec_number(value);
            if (pt < 0 || pt > 127 || codec < 0) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "codecs maps payload types 0..127 to codec names");
                return -1;
            }
            self->codec[pt] = (uint8_t)codec;
        }
    }
    return 0;
}

static PyObject *ext_str(const uint8_t *d, const en_rtp *h, int slot)
{
    if (!h->ext_off[slot])
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8((const char *)d + h->ext_off[slot], h->ext_len[slot], "replace");
}

static PyObject *ext_int(const uint8_t *d, const en_rtp *h, int slot)
{
    unsigned long long v = 0;
    unsigned i;
    if (!h->ext_off[slot] || h->ext_len[slot] > 8) /* absent, or not a number */
        Py_RETURN_NONE;
    for (i = 0; i < h->ext_len[slot]; i++)
        v = (v << 8) | d[h->ext_off[slot] + i];
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *ext_bytes(const uint8_t *d, const en_rtp *h, int slot)
{
    if (!h->ext_off[slot])
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)d + h->ext_off[slot], h->ext_len[slot]);
}

static PyObject *RtpParser_parse(RtpParserObject *self, PyObject *packet)
{
    Py_buffer buf;
    en_rtp h;
    int err, keyframe = 0;
    const uint8_t *d;
    PyObject *out = NULL;
    if (PyObject_GetBuffer(packet, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    d = buf.buf;
    err = en_rtp_parse(d, (size_t)buf.len, self->ext_slot, &h);
    if (err) {
        PyErr_SetString(PyExc_ValueError, en_rtp_error_message(err));
        goto done;
    }
    if (self->codec[h.payload_type]) /* codecs.is_keyframe(codec, data[payload_offset:]) */
        keyframe = en_is_keyframe(self->codec[h.payload_type], d + h.payload_offset,
                                  (size_t)buf.len - h.payload_offset);
    out = Py_BuildValue("(nnNIIkkNNNNNNN)", (Py_ssize_t)h.payload_offset,
                        (Py_ssize_t)h.padding_length, PyBool_FromLong(h.marker), h.payload_type,
                        (unsigned)h.sequence_number, (unsigned long)h.timestamp,
                        (unsigned long)h.ssrc, ext_str(d, &h, EN_EXT_MID),
                        ext_str(d, &h, EN_EXT_RID), ext_str(d, &h, EN_EXT_RRID),
                        ext_int(d, &h, EN_EXT_AST), ext_int(d, &h, EN_EXT_TWCC),
                        ext_bytes(d, &h, EN_EXT_LEVEL), PyBool_FromLong(keyframe));
done:
    PyBuffer_Release(&buf);
    return out;
}

static PyMethodDef RtpParser_methods[] = {
    {"parse", (PyCFunction)RtpParser_parse, METH_O,
     "parse(packet) -> (payload_offset, padding_length, marker, payload_type, sequence_number, "
     "timestamp, ssrc, mid, rid, repaired_rid, abs_send_time, transport_cc, audio_level, "
     "keyframe); ValueError like RtpHeader.parse."},
    {NULL}};

static PyTypeObject RtpParserType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.RtpParser",
    .tp_basicsize = sizeof(RtpParserObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RtpParser(mid_id=0, rid_id=0, repaired_rid_id=0, abs_send_time_id=0, "
              "transport_cc_id=0, audio_level_id=0, codecs={}): RTP header + extensions + "
              "keyframe in one call.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RtpParser_init,
    .tp_methods = RtpParser_methods,
};

/* ====================================================================== module */

static PyObject *native_is_keyframe(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    int codec, key;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "is_keyframe(codec, payload)");
        return NULL;
    }
    codec = codec_number(args[0]);
    if (codec < 0) {
        PyErr_SetString(PyExc_TypeError, "codec must be a str");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    key = en_is_keyframe(codec, buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return PyBool_FromLong(key);
}

PyMethodDef en_ingress_methods[] = {
    {"is_keyframe", (PyCFunction)(void (*)(void))native_is_keyframe, METH_FASTCALL,
     "is_keyframe(codec, payload) -> bool: edge.media.codecs.is_keyframe."},
    {NULL}};

int en_ingress_add_types(PyObject *m, PyObject *error)
{
    srtp_error = error;
    if (PyType_Ready(&SrtpReceiverType) < 0 || PyType_Ready(&RtpParserType) < 0)
        return -1;
    Py_INCREF(&SrtpReceiverType);
    if (PyModule_AddObject(m, "SrtpReceiver", (PyObject *)&SrtpReceiverType) < 0) {
        Py_DECREF(&SrtpReceiverType);
        return -1;
    }
    Py_INCREF(&RtpParserType);
    if (PyModule_AddObject(m, "RtpParser", (PyObject *)&RtpParserType) < 0) {
        Py_DECREF(&RtpParserType);
        return -1;
    }
    return 0;
}
