/*
 * twcc.c - TwccHistory: what was sent on one transport, by transport-wide
 * sequence (draft-holmer-rmcat-transport-wide-cc-extensions-01).
 *
 * The same three members as edge.media.twcc.TwccHistory:
 *
 *   send(send_time, size) -> int   allocate and record the next sequence
 *   store(unwrapped, send_time, size)
 *   lookup(unwrapped) -> (unwrapped, send_time, size) | None
 *   highest -> int | None, capacity -> int
 *
 * A viewer's consumers all stamp from one history (the sequence is per
 * transport), from fan-outs running without the GIL: a mutex guards it.
 * Feedback is matched against it in Python (TwccRecorder.on_feedback).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>

#include "twcc.h"

typedef struct {
    int64_t seq; /* unwrapped; -1 = empty */
    double send_time;
    uint32_t size;
} twcc_record;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    twcc_record *ring;
    uint32_t mask;
    int64_t next;
    int64_t highest; /* -1 = nothing recorded */
} TwccHistoryObject;

static void store(TwccHistoryObject *h, int64_t seq, double send_time, uint32_t size)
{
    twcc_record *r = &h->ring[(uint64_t)seq & h->mask];
    r->seq = seq;
    r->send_time = send_time;
    r->size = size;
    if (seq > h->highest) {
        h->highest = seq;
        h->next = seq + 1;
    }
}

uint16_t en_twcc_stamp(PyObject *history, double now, uint32_t size)
{
    TwccHistoryObject *h = (TwccHistoryObject *)history;
    int64_t seq;
    pthread_mutex_lock(&h->lock);
    seq = h->next;
    store(h, seq, now, size);
    pthread_mutex_unlock(&h->lock);
    return (uint16_t)(seq & 0xFFFF);
}

static PyObject *TwccHistory_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    TwccHistoryObject *self = (TwccHistoryObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    self->highest = -1;
    return (PyObject *)self;
}

static int TwccHistory_init(TwccHistoryObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"capacity", "first_sequence", NULL};
    unsigned capacity = 8192, first = 0;
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "TwccHistory is already initialized");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|II", kwlist, &capacity, &first))
        return -1;
    if (capacity == 0 || (capacity & (capacity - 1)) || capacity > (1u << 20)) {
        PyErr_SetString(PyExc_ValueError, "TWCC history capacity must be a power of two <= 2**20");
        return -1;
    }
    self->ring = PyMem_RawMalloc(sizeof(twcc_record) * capacity);
    if (self->ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (unsigned i = 0; i < capacity; i++)
        self->ring[i].seq = -1;
    self->mask = capacity - 1;
    self->next = first & 0xFFFF;
    return 0;
}

static void TwccHistory_dealloc(TwccHistoryObject *self)
{
    PyMem_RawFree(self->ring);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(TwccHistoryObject *self)
{
    if (self->ring != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "TwccHistory is not initialized");
    return 0;
}

static PyObject *TwccHistory_send(TwccHistoryObject *self, PyObject *args)
{
    double t;
    unsigned long size;
    if (!ready(self) || !PyArg_ParseTuple(args, "dk", &t, &size))
        return NULL;
    return PyLong_FromLong(en_twcc_stamp((PyObject *)self, t, (uint32_t)size));
}

static PyObject *TwccHistory_store(TwccHistoryObject *self, PyObject *args)
{
    long long seq;
    double t;
    unsigned long size;
    if (!ready(self) || !PyArg_ParseTuple(args, "Ldk", &seq, &t, &size))
        return NULL;
    if (seq < 0) {
        PyErr_SetString(PyExc_ValueError, "TWCC sequence must not be negative");
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    store(self, seq, t, (uint32_t)size);
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

static PyObject *TwccHistory_lookup(TwccHistoryObject *self, PyObject *arg)
{
    long long seq = PyLong_AsLongLong(arg);
    twcc_record r;
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (!ready(self))
        return NULL;
    if (seq < 0)
        Py_RETURN_NONE;
    pthread_mutex_lock(&self->lock);
    r = self->ring[(uint64_t)seq & self->mask];
    pthread_mutex_unlock(&self->lock);
    if (r.seq != seq)
        Py_RETURN_NONE;
    return Py_BuildValue("(Ldk)", (long long)r.seq, r.send_time, (unsigned long)r.size);
}

static PyObject *TwccHistory_get_highest(TwccHistoryObject *self, void *c)
{
    int64_t highest;
    pthread_mutex_lock(&self->lock);
    highest = self->highest;
    pthread_mutex_unlock(&self->lock);
    if (highest < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(highest);
}

static PyObject *TwccHistory_get_next(TwccHistoryObject *self, void *c)
{
    int64_t next;
    pthread_mutex_lock(&self->lock);
    next = self->next;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromLongLong(next);
}

static PyObject *TwccHistory_get_capacity(TwccHistoryObject *self, void *c)
{
    return PyLong_FromUnsignedLong(self->ring == NULL ? 0ul : (unsigned long)self->mask + 1);
}

static PyMethodDef TwccHistory_methods[] = {
    {"send", (PyCFunction)TwccHistory_send, METH_VARARGS,
     "send(send_time, size) -> int: allocate and record the next sequence (16-bit value)."},
    {"store", (PyCFunction)TwccHistory_store, METH_VARARGS,
     "store(unwrapped, send_time, size): record a packet under an unwrapped sequence."},
    {"lookup", (PyCFunction)TwccHistory_lookup, METH_O,
     "lookup(unwrapped) -> (unwrapped, send_time, size) or None."},
    {NULL}};

static PyGetSetDef TwccHistory_getset[] = {
    {"highest", (getter)TwccHistory_get_highest, NULL, "highest unwrapped sequence recorded", NULL},
    {"_next", (getter)TwccHistory_get_next, NULL, "unwrapped sequence the next send() gets", NULL},
    {"capacity", (getter)TwccHistory_get_capacity, NULL, "packets remembered", NULL},
    {NULL}};

PyTypeObject en_TwccHistoryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "edge.media._native.TwccHistory",
    .tp_basicsize = sizeof(TwccHistoryObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TwccHistory(capacity=8192, first_sequence=0): packets sent on one transport by "
              "transport-wide sequence (edge.media.twcc.TwccHistory).",
    .tp_new = TwccHistory_new,
    .tp_init = (initproc)TwccHistory_init,
    .tp_dealloc = (destructor)TwccHistory_dealloc,
    .tp_methods = TwccHistory_methods,
    .tp_getset = TwccHistory_getset,
};

int en_twcc_add_types(PyObject *m)
{
    if (PyType_Ready(&en_TwccHistoryType) < 0)
        return -1;
    Py_INCREF(&en_TwccHistoryType);
    if (PyModule_AddObject(m, "TwccHistory", (PyObject *)&en_TwccHistoryType) < 0) {
        Py_DECREF(&en_TwccHistoryType);
        return -1;
    }
    return 0;
}
