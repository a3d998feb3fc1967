/*
 * What the two source files of duck_ws_sync.protocol._speedups share:
 * _speedups.c (masking, Payload, parse_messages: bytes in, events out) and
 * _shortcuts.c (the connection's commonest read and send, on its state).
 */
#ifndef DUCK_WS_SYNC_SPEEDUPS_H
#define DUCK_WS_SYNC_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* _speedups.c */
void xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t length, const unsigned char *key,
              Py_ssize_t phase);
int is_ascii(const unsigned char *p, Py_ssize_t length);
int simple_frame(const unsigned char *buf, Py_ssize_t available, Py_ssize_t max_size, unsigned char *opcode,
                 Py_ssize_t *header_size, Py_ssize_t *payload_length);
PyObject *simple_payload(const unsigned char *buf, unsigned char opcode, Py_ssize_t header, Py_ssize_t length);

/* _shortcuts.c */
PyObject *new_event(PyObject *type, PyObject *opcode, PyObject *payload);
PyObject *bind_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *receive_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *text_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
