/*
 * Native helpers for duck_ws_sync.
 *
 * apply_mask(data, mask) -> bytes XORs every byte of ``data`` (any object
 * supporting the buffer protocol) with the 4-byte ``mask``, repeated (RFC 6455
 * section 5.3). The work is done eight bytes at a time on a 64-bit word that
 * holds the mask twice; compilers vectorise this loop further. Masking and
 * unmasking are the same operation. unmask_into(target, position, data, mask)
 * does the same into a bytearray or a Payload that collects a large frame's
 * payload; Payload is that payload received and unmasked in place.
 *
 * parse_messages reads the frames of the common case (a whole text or binary
 * message in one masked frame) straight into message events; the protocol
 * core's Python parser handles everything else. _shortcuts.c holds the
 * connection's own shortcuts (receive_message, text_frame) and makes the
 * events (new_event).
 */
#include "_speedups.h"

/* out[i] = in[i] ^ key[(phase + i) & 3] for i < length; out may be in. */
void
xor_mask(unsigned char *out, const unsigned char *in, Py_ssize_t length, const unsigned char *key,
         Py_ssize_t phase)
{
    unsigned char rotated[8];
    uint64_t word_mask, word;
    Py_ssize_t i = 0;
    int j;

    for (j = 0; j < 8; j++) {
        rotated[j] = key[(phase + j) & 3];
    }
    memcpy(&word_mask, rotated, 8);
    for (; i + 8 <= length; i += 8) {
        memcpy(&word, in + i, 8);
        word ^= word_mask;
        memcpy(out + i, &word, 8);
    }
    for (; i < length; i++) {
        out[i] = in[i] ^ rotated[i & 3];
    }
}

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
    /* Large payloads are the only case worth releasing the GIL for. */
    Py_BEGIN_ALLOW_THREADS
    xor_mask((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf, data.len,
             (const unsigned char *)mask.buf, 0);
    Py_END_ALLOW_THREADS

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/*
 * Payload(length): the payload of a large frame as it arrives, built in place
 * in a bytes object that no one else sees until take() hands it over. The
 * socket reads straight into it (it exports a writable buffer), unmask(start,
 * stop, mask) unmasks what arrived in place, and take() returns the bytes:
 * no copy into a collecting buffer and none out of it. take() refuses while
 * a buffer is exported, so nothing can write into the bytes once they are
 * handed over. The bytes object is made without initialising its memory: a
 * client that announces a large frame and sends little of it makes the
 * process touch only the pages it sent.
 */
typedef struct {
    PyObject_HEAD
    PyObject *bytes;     /* the payload; NULL once taken */
    Py_ssize_t exports;  /* buffers exported and not released yet */
} Payload;

static PyTypeObject PayloadType;

static PyObject *
payload_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t length;
    Payload *self;

    if (!PyArg_ParseTuple(args, "n:Payload", &length)) {
        return NULL;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must not be negative");
        return NULL;
    }
    self = (Payload *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->exports = 0;
    self->bytes = PyBytes_FromStringAndSize(NULL, length);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
payload_dealloc(Payload *self)
{
    Py_XDECREF(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
payload_getbuffer(Payload *self, Py_buffer *view, int flags)
{
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "the payload was taken");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->bytes), PyBytes_GET_SIZE(self->bytes), 0,
                          flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
payload_releasebuffer(Payload *self, Py_buffer *view)
{
    self->exports--;
}

static int
payload_range(Payload *self, Py_ssize_t start, Py_ssize_t stop)
{
    if (self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "the payload was taken");
        return -1;
    }
    if (start < 0 || stop < start || stop > PyBytes_GET_SIZE(self->bytes)) {
        PyErr_SetString(PyExc_ValueError, "range out of the payload");
        return -1;
    }
    return 0;
}

/* unmask_into() for a Payload target: it does not grow. */
static PyObject *
payload_write(Payload *self, PyObject *position_object, PyObject *data_object, PyObject *mask_object)
{
    Py_buffer data, mask;
    Py_ssize_t position;
    PyObject *result = NULL;

    position = PyLong_AsSsize_t(position_object);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(data_object, &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(mask_object, &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    if (payload_range(self, position, position + data.len) < 0) {
        goto done;
    }
    xor_mask((unsigned char *)PyBytes_AS_STRING(self->bytes) + position, (const unsigned char *)data.buf, data.len,
             (const unsigned char *)mask.buf, position);
    result = Py_NewRef(Py_None);

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *
payload_unmask(Payload *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, stop;
    Py_buffer mask;
    PyObject *result = NULL;
    unsigned char *bytes;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask() takes exactly 3 arguments (start, stop, mask)");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[0]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    stop = PyLong_AsSsize_t(args[1]);
    if (stop == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &mask, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    if (payload_range(self, start, stop) < 0) {
        goto done;
    }
    bytes = (unsigned char *)PyBytes_AS_STRING(self->bytes);
    xor_mask(bytes + start, bytes + start, stop - start, (const unsigned char *)mask.buf, start);
    result = Py_NewRef(Py_None);

done:
    PyBuffer_Release(&mask);
    return result;
}

static PyObject *
payload_take(Payload *self, PyObject *unused)
{
    PyObject *bytes = self->bytes;

    if (bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "the payload was taken");
        return NULL;
    }
    if (self->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "the payload's buffer is still in use");
        return NULL;
    }
    self->bytes = NULL;
    return bytes;
}

static PyBufferProcs payload_as_buffer = {
    .bf_getbuffer = (getbufferproc)payload_getbuffer,
    .bf_releasebuffer = (releasebufferproc)payload_releasebuffer,
};

static PyMethodDef payload_methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))payload_unmask, METH_FASTCALL,
     "unmask(start, stop, mask) -> None\n\nUnmask payload[start:stop] in place (start is its offset in the payload)."},
    {"take", (PyCFunction)payload_take, METH_NOARGS,
     "take() -> bytes\n\nHand the payload over; the Payload is empty afterwards."},
    {"bind_types", (PyCFunction)(void (*)(void))bind_types, METH_FASTCALL,
     "bind_types(connection_type, message_type, pong_type, text, binary, open_state) -> None\n\n"
     "Tell the module the protocol core's connection and event types, opcodes and OPEN state (once)."},
    {"receive_message", (PyCFunction)(void (*)(void))receive_message, METH_FASTCALL,
     "receive_message(connection, data) -> Message | None\n\n"
     "ServerConnection.receive_message for a read that is one whole simple message; else None, nothing consumed."},
    {"text_frame", (PyCFunction)(void (*)(void))text_frame, METH_FASTCALL,
     "text_frame(connection, data, fragment_size) -> bytes | None\n\n"
     "FrameWriter.send_text_now for one short text frame with nothing queued; else None, nothing done."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PayloadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "duck_ws_sync.protocol._speedups.Payload",
    .tp_basicsize = sizeof(Payload),
    .tp_dealloc = (destructor)payload_dealloc,
    .tp_as_buffer = &payload_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Payload(length): a frame's payload, received and unmasked in place, handed over as bytes",
    .tp_methods = payload_methods,
    .tp_new = payload_new,
};

/*
 * unmask_into(target, position, data, mask) -> None: write ``data`` unmasked
 * into the bytearray ``target`` at ``position``, where ``position`` is the
 * offset of ``data`` in its frame's payload (it sets the phase of the mask).
 * ``target`` grows when it is too short; one pass copies and unmasks.
 */
static PyObject *
unmask_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    Py_ssize_t position, end;
    PyObject *target;
    PyObject *result = NULL;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "unmask_into() takes exactly 4 arguments (target, position, data, mask)");
        return NULL;
    }
    target = args[0];
    if (Py_IS_TYPE(target, &PayloadType)) {
        return payload_write((Payload *)target, args[1], args[2], args[3]);
    }
    if (!PyByteArray_CheckExact(target)) {
        PyErr_SetString(PyExc_TypeError, "unmask_into() target must be a bytearray or a Payload");
        return NULL;
    }
    position = PyLong_AsSsize_t(args[1]);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (position < 0 || position > PyByteArray_GET_SIZE(target)) {
        PyErr_SetString(PyExc_ValueError, "position out of range");
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must contain 4 bytes");
        goto done;
    }
    end = position + data.len;
    if (end > PyByteArray_GET_SIZE(target) && PyByteArray_Resize(target, end) < 0) {
        goto done;  /* also refused while target's buffer is exported */
    }
    xor_mask((unsigned char *)PyByteArray_AS_STRING(target) + position, (const unsigned char *)data.buf,
             data.len, (const unsigned char *)mask.buf, position);
    result = Py_NewRef(Py_None);

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* True when none of the length bytes at p has its high bit set. */
int
is_ascii(const unsigned char *p, Py_ssize_t length)
{
    Py_ssize_t i = 0;
    uint64_t word, any = 0;

    for (; i + 8 <= length; i += 8) {
        memcpy(&word, p + i, 8);
        any |= word;
    }
    for (; i < length; i++) {
        any |= p[i];
    }
    return (any & 0x8080808080808080ULL) == 0;
}

/*
 * Whether the frame at buf[0:available] is one the fast paths read: complete,
 * FIN set, no RSV bit, masked, text or binary with a payload of at most
 * max_size bytes (max_size < 0: no limit), or a Pong of at most 125 bytes.
 * If so, its opcode, header size and payload length are stored.
 */
int
simple_frame(const unsigned char *buf, Py_ssize_t available, Py_ssize_t max_size, unsigned char *opcode,
             Py_ssize_t *header_size, Py_ssize_t *payload_length)
{
    Py_ssize_t header = 6, length;

    if (available < 6) {
        return 0;
    }
    *opcode = buf[0] & 0x0F;
    length = buf[1] & 0x7F;
    if ((buf[0] & 0xF0) != 0x80 || (*opcode != 1 && *opcode != 2 && *opcode != 0xA) || !(buf[1] & 0x80)) {
        return 0;
    }
    if (*opcode == 0xA && length > 125) {
        return 0;  /* an error the full parser reports */
    }
    if (length == 126) {
        header = 8;
        if (available < header) {
            return 0;
        }
        length = ((Py_ssize_t)buf[2] << 8) | buf[3];
    }
    else if (length == 127) {
        uint64_t wide = 0;
        int i;

        header = 14;
        if (available < header) {
            return 0;
        }
        for (i = 0; i < 8; i++) {
            wide = (wide << 8) | buf[2 + i];
        }
        if (wide > (uint64_t)(available - header)) {
            return 0;
        }
        length = (Py_ssize_t)wide;
    }
    if (length > available - header || (max_size >= 0 && length > max_size)) {
        return 0;
    }
    *header_size = header;
    *payload_length = length;
    return 1;
}

/*
 * The unmasked payload of the simple frame at buf (simple_frame's opcode,
 * header and length), as new bytes. NULL with no exception set when a text
 * payload is not valid UTF-8; NULL with one on failure.
 */
PyObject *
simple_payload(const unsigned char *buf, unsigned char opcode, Py_ssize_t header, Py_ssize_t length)
{
    PyObject *payload = PyBytes_FromStringAndSize(NULL, length);

    if (payload == NULL) {
        return NULL;
    }
    xor_mask((unsigned char *)PyBytes_AS_STRING(payload), buf + header, length, buf + header - 4, 0);
    if (opcode == 1 && !is_ascii((const unsigned char *)PyBytes_AS_STRING(payload), length)) {
        PyObject *decoded = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload), length, "strict");

        if (decoded == NULL) {
            Py_DECREF(payload);
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
            }
            return NULL;
        }
        Py_DECREF(decoded);
    }
    return payload;
}

/*
 * parse_messages(data, position, max_size, message_type, text, binary, pong_type, events) -> int
 *
 * The common frames, read at C speed: from data[position:], every complete
 * frame that is a whole message by itself (FIN set, no RSV bit, text or
 * binary, masked, payload at most max_size bytes, max_size < 0 for no limit,
 * text valid UTF-8) is unmasked and appended to the list ``events`` as
 * message_type(text or binary, payload); a Pong (the heartbeat's answer,
 * FIN set, no RSV bit, masked, at most 125 bytes) as pong_type(payload). It
 * stops at the first frame that is anything else (incomplete, another
 * control frame, a fragment, compressed, or breaking a rule) and returns
 * where that frame starts: the caller's full parser takes over there, and
 * finds any error again.
 */
static PyObject *
parse_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    Py_ssize_t position, max_size, end;
    PyObject *message_type, *text, *binary, *pong_type, *events;
    const unsigned char *buf;

    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_messages() takes exactly 8 arguments "
                        "(data, position, max_size, message_type, text, binary, pong_type, events)");
        return NULL;
    }
    position = PyLong_AsSsize_t(args[1]);
    if (position == -1 && PyErr_Occurred()) {
        return NULL;
    }
    max_size = PyLong_AsSsize_t(args[2]);
    if (max_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    message_type = args[3];
    text = args[4];
    binary = args[5];
    pong_type = args[6];
    events = args[7];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "parse_messages() events must be a list");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    buf = (const unsigned char *)data.buf;
    end = data.len;
    if (position < 0 || position > end) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "position out of range");
        return NULL;
    }
    for (;;) {
        unsigned char opcode;
        Py_ssize_t header, length;
        PyObject *payload, *message;
        int failed;

        if (!simple_frame(buf + position, end - position, max_size, &opcode, &header, &length)) {
            break;
        }
        payload = simple_payload(buf + position, opcode, header, length);
        if (payload == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            break;  /* invalid UTF-8: the full parser fails the connection with 1007 */
        }
        if (opcode == 0xA) {
            message = new_event(pong_type, NULL, payload);
        }
        else {
            message = new_event(message_type, opcode == 1 ? text : binary, payload);
        }
        Py_DECREF(payload);
        if (message == NULL) {
            goto error;
        }
        failed = PyList_Append(events, message);
        Py_DECREF(message);
        if (failed < 0) {
            goto error;
        }
        position += header + length;
    }
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(position);

error:
    PyBuffer_Release(&data);
    return NULL;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     "apply_mask(data, mask) -> bytes\n\nXOR data with the repeated 4-byte mask."},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL,
     "parse_messages(data, position, max_size, message_type, text, binary, pong_type, events) -> int\n\n"
     "Append the whole, simple messages and Pongs at data[position:] to events; return where parsing stopped."},
    {"unmask_into", (PyCFunction)(void (*)(void))unmask_into, METH_FASTCALL,
     "unmask_into(target, position, data, mask) -> None\n\n"
     "Write data XOR the mask, phased for payload offset position, into the bytearray target at position."},
    {"bind_types", (PyCFunction)(void (*)(void))bind_types, METH_FASTCALL,
     "bind_types(connection_type, message_type, pong_type, text, binary, open_state) -> None\n\n"
     "Tell the module the protocol core's connection and event types, opcodes and OPEN state (once)."},
    {"receive_message", (PyCFunction)(void (*)(void))receive_message, METH_FASTCALL,
     "receive_message(connection, data) -> Message | None\n\n"
     "ServerConnection.receive_message for a read that is one whole simple message; else None, nothing consumed."},
    {"text_frame", (PyCFunction)(void (*)(void))text_frame, METH_FASTCALL,
     "text_frame(connection, data, fragment_size) -> bytes | None\n\n"
     "FrameWriter.send_text_now for one short text frame with nothing queued; else None, nothing done."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "duck_ws_sync.protocol._speedups",
    "Native helpers for the WebSocket protocol core.", -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;

    if (PyType_Ready(&PayloadType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Payload", (PyObject *)&PayloadType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
