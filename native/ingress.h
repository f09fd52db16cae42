/* ingress.h - SrtpReceiver, RtpParser and is_keyframe for edge.media._native (ingress.c). */
#ifndef EDGE_INGRESS_H
#define EDGE_INGRESS_H

#include <Python.h>

/* Module-level functions (is_keyframe), NULL-terminated. */
extern PyMethodDef en_ingress_methods[];

/* Add the SrtpReceiver and RtpParser types to the module; `error` is SrtpError. */
int en_ingress_add_types(PyObject *m, PyObject *error);

#endif

