/* twcc.h - TwccHistory for edge.media._native (twcc.c): the C twin of
 * edge.media.twcc.TwccHistory, stamped inside the fan-out. */
#ifndef EDGE_TWCC_H
#define EDGE_TWCC_H

#include <Python.h>
#include <stdint.h>

/* The type object; NativeConsumer.set_twcc() checks its argument against it. */
extern PyTypeObject en_TwccHistoryType;

/* Allocate the next transport-wide sequence for a packet of `size` bytes sent
 * at `now`, record it, return its 16-bit wire value. Thread-safe (own mutex);
 * callable without the GIL. `history` must be an en_TwccHistoryType instance. */
uint16_t en_twcc_stamp(PyObject *history, double now, uint32_t size);

/* Add the TwccHistory type to the module. */
int en_twcc_add_types(PyObject *m);

#endif
