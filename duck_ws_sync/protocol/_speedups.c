/*
 * Native masking for duck_ws_sync (RFC 6455 section 5.3).
 *
 * apply_mask(data, mask) -> bytes XORs every byte of ``data`` (any object
 * supporting the buffer protocol) with the 4-byte ``mask``, repeated. The work
 * is done eight bytes at a time on a 64-bit word that holds the mask twice;
 * compilers vectorise this loop further. Masking and unmasking are the same
 * operation.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *
apply_mask(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *result = NULL;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments (data, mask)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }

    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }

    {
        const unsigned char *in = (const unsigned char *)data.buf;
        const unsigned char *key = (const unsigned char *)mask.buf;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_ssize_t length = data.len, i = 0;
        uint64_t word_mask, word;
        unsigned char repeated[8];

        memcpy(repeated, key, 4);
        memcpy(repeated + 4, key, 4);
        memcpy(&word_mask, repeated, 8);

        /* Large payloads are the only case worth releasing the GIL for. */
        Py_BEGIN_ALLOW_THREADS
        for (; i + 8 <= length; i += 8) {
            memcpy(&word, in + i, 8);
            word ^= word_mask;
            memcpy(out + i, &word, 8);
        }
        for (; i < length; i++) {
            out[i] = in[i] ^ key[i & 3];
        }
        Py_END_ALLOW_THREADS
    }

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the repeated 4-byte mask."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "duck_ws_sync.protocol._speedups",
    "Native helpers for the WebSocket protocol core.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
