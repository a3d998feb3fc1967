/*
 * The commonest read and the commonest send of a ServerConnection, in C.
 *
 * receive_message(connection, data) is ServerConnection.receive_message for
 * a read that is one whole simple message and nothing else (an echo's, a
 * chat's), and text_frame(connection, data, fragment_size) is
 * FrameWriter.send_text_now for a short text message with nothing queued.
 * Each reads the connection's state from its slots, does the whole job when
 * the case is that simple one, and otherwise returns None having changed
 * nothing: the Python method then does what it always does (and raises what
 * it raises). connection.py and writer.py hold the same logic in Python,
 * with the reasons; both ways are tested.
 *
 * bind_types(ServerConnection, Message, Pong, OpCode.TEXT, OpCode.BINARY,
 * State.OPEN), called once, tells the module the protocol core's types. The
 * shortcuts then read and write a connection's slots where the instance
 * keeps them (a C lookup by name would cost more than the Python bytecode's
 * cached one), and events of these frozen, slotted dataclasses are made by
 * setting their slots, not through the dataclass's __init__ in Python.
 */
#include "_speedups.h"
#include <structmember.h>

/* A slot of a bound type: where an instance keeps it. */
typedef struct {
    const char *name;
    Py_ssize_t offset;
} Slot;

/* The slots the shortcuts read and write, of a ServerConnection, a Message and a Pong. */
static Slot reading = {"_reading"}, state = {"state"}, message_opcode = {"_message_opcode"}, partial = {"_partial"},
            buffer = {"_buffer"}, skip = {"_skip"}, events = {"_events"}, output = {"_output"},
            simple_limit = {"_simple_limit"}, extensions = {"extensions"}, bytes_received = {"bytes_received"},
            frames_received = {"frames_received"}, messages_received = {"messages_received"},
            bytes_sent = {"bytes_sent"}, frames_sent = {"frames_sent"}, messages_sent = {"messages_sent"};
static Slot *connection_slots[] = {
    &reading, &state, &message_opcode, &partial, &buffer, &skip, &events, &output, &simple_limit, &extensions,
    &bytes_received, &frames_received, &messages_received, &bytes_sent, &frames_sent, &messages_sent,
};
static Slot event_opcode = {"opcode"}, event_data = {"data"}, pong_payload = {"payload"};

static PyTypeObject *connection_type, *message_type, *pong_type;
static PyObject *text_opcode, *binary_opcode, *open_state;

/* Where instances of type keep the slot named name (a writable object slot); -1 on error. */
static Py_ssize_t
find_slot(PyObject *type, const char *name)
{
    PyObject *descriptor = PyObject_GetAttrString(type, name);
    PyMemberDef *member;

    if (descriptor == NULL) {
        return -1;
    }
    member = Py_IS_TYPE(descriptor, &PyMemberDescr_Type) ? ((PyMemberDescrObject *)descriptor)->d_member : NULL;
    Py_DECREF(descriptor);
    if (member == NULL || member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%R.%s must be a slot", type, name);
        return -1;
    }
    return member->offset;
}

PyObject *
bind_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Slot *event_slots[] = {&event_opcode, &event_data, &pong_payload};
    PyObject *event_owners[] = {NULL, NULL, NULL};
    Py_ssize_t connection_offsets[sizeof(connection_slots) / sizeof(connection_slots[0])], event_offsets[3];
    size_t i;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "bind_types() takes exactly 6 arguments (ServerConnection, Message, Pong, text, binary, open)");
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        if (!PyType_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "bind_types() needs the ServerConnection, Message and Pong types");
            return NULL;
        }
    }
    event_owners[0] = event_owners[1] = args[1];
    event_owners[2] = args[2];
    /* Every slot is found before any is changed: a refusal leaves the binding as it was. */
    for (i = 0; i < sizeof(connection_slots) / sizeof(connection_slots[0]); i++) {
        if ((connection_offsets[i] = find_slot(args[0], connection_slots[i]->name)) < 0) {
            return NULL;
        }
    }
    for (i = 0; i < 3; i++) {
        if ((event_offsets[i] = find_slot(event_owners[i], event_slots[i]->name)) < 0) {
            return NULL;
        }
    }
    for (i = 0; i < sizeof(connection_slots) / sizeof(connection_slots[0]); i++) {
        connection_slots[i]->offset = connection_offsets[i];
    }
    for (i = 0; i < 3; i++) {
        event_slots[i]->offset = event_offsets[i];
    }
    Py_XSETREF(connection_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(message_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(pong_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(text_opcode, Py_NewRef(args[3]));
    Py_XSETREF(binary_opcode, Py_NewRef(args[4]));
    Py_XSETREF(open_state, Py_NewRef(args[5]));
    Py_RETURN_NONE;
}

/* The object in obj's slot (borrowed), NULL when it is unset. */
static inline PyObject *
get(PyObject *obj, const Slot *slot)
{
    return *(PyObject **)((char *)obj + slot->offset);
}

/* Set obj's slot to value (a new reference, stolen). */
static inline void
put(PyObject *obj, const Slot *slot, PyObject *value)
{
    Py_XSETREF(*(PyObject **)((char *)obj + slot->offset), value);
}

/* Whether obj's slot holds something false (None, 0, an empty list or bytearray); 0 when unset. */
static inline int
is_false(PyObject *obj, const Slot *slot)
{
    PyObject *value = get(obj, slot);

    if (value == NULL) {
        return 0;
    }
    if (PyList_CheckExact(value)) {
        return PyList_GET_SIZE(value) == 0;
    }
    if (PyByteArray_CheckExact(value)) {
        return PyByteArray_GET_SIZE(value) == 0;
    }
    if (PyLong_CheckExact(value)) {
        Py_ssize_t number = PyLong_AsSsize_t(value);

        if (number == -1 && PyErr_Occurred()) {
            PyErr_Clear();  /* too large for Py_ssize_t: not zero */
        }
        return number == 0;
    }
    return 0;  /* anything else: the Python way decides */
}

/* obj's integer slot += count; -1 on error (an unset or odd slot: TypeError). */
static int
add(PyObject *obj, const Slot *slot, Py_ssize_t count)
{
    PyObject *value = get(obj, slot), *increment, *sum;

    if (value == NULL || !PyLong_CheckExact(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", slot->name);
        return -1;
    }
    increment = PyLong_FromSsize_t(count);
    if (increment == NULL) {
        return -1;
    }
    sum = PyNumber_Add(value, increment);
    Py_DECREF(increment);
    if (sum == NULL) {
        return -1;
    }
    put(obj, slot, sum);
    return 0;
}

/* An instance of a bound event type with its slots set, without calling the type. */
static PyObject *
new_slotted(PyTypeObject *type, const Slot *slot, PyObject *value, const Slot *other_slot, PyObject *other_value)
{
    PyObject *event = type->tp_alloc(type, 0);

    if (event == NULL) {
        return NULL;
    }
    put(event, slot, Py_NewRef(value));
    if (other_slot != NULL) {
        put(event, other_slot, Py_NewRef(other_value));
    }
    return event;
}

/* type(opcode, payload), or type(payload) when opcode is NULL: the bound types the short way. */
PyObject *
new_event(PyObject *type, PyObject *opcode, PyObject *payload)
{
    if (opcode != NULL && type == (PyObject *)message_type) {
        return new_slotted(message_type, &event_opcode, opcode, &event_data, payload);
    }
    if (opcode == NULL && type == (PyObject *)pong_type) {
        return new_slotted(pong_type, &pong_payload, payload, NULL, NULL);
    }
    if (opcode == NULL) {
        return PyObject_CallOneArg(type, payload);
    }
    return PyObject_CallFunctionObjArgs(type, opcode, payload, NULL);
}

/*
 * Whether connection is a bound ServerConnection (not a subclass: its slots
 * could mean something else) that may take a read the short way: OPEN and
 * reading, between messages and frames (no message being reassembled, no
 * frame partly read or being skipped), nothing waiting in its events or its
 * output.
 */
static int
between_messages(PyObject *connection)
{
    return Py_TYPE(connection) == connection_type && get(connection, &reading) == Py_True &&
           get(connection, &state) == open_state && get(connection, &message_opcode) == Py_None &&
           get(connection, &partial) == Py_None && is_false(connection, &buffer) && is_false(connection, &skip) &&
           is_false(connection, &events) && is_false(connection, &output);
}

static int
check_bound(const char *function)
{
    if (connection_type == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s() before bind_types()", function);
        return -1;
    }
    return 0;
}

/*
 * receive_message(connection, data) -> Message | None
 *
 * When data is exactly one whole simple message (simple_frame, within the
 * connection's _simple_limit, text valid UTF-8) and the connection is
 * between messages: count it as receive_data would and return it. Otherwise
 * None, and nothing is consumed.
 */
PyObject *
receive_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *connection, *limit_object, *payload, *message;
    Py_buffer data;
    Py_ssize_t limit, header, length;
    unsigned char opcode;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "receive_message() takes exactly 2 arguments (connection, data)");
        return NULL;
    }
    if (check_bound("receive_message") < 0) {
        return NULL;
    }
    connection = args[0];
    if (!between_messages(connection)) {
        Py_RETURN_NONE;
    }
    limit_object = get(connection, &simple_limit);
    if (limit_object == NULL || !PyLong_CheckExact(limit_object)) {
        Py_RETURN_NONE;
    }
    limit = PyLong_AsSsize_t(limit_object);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (!simple_frame(data.buf, data.len, limit, &opcode, &header, &length) || opcode == 0xA ||
        header + length != data.len) {
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    payload = simple_payload(data.buf, opcode, header, length);
    if (payload == NULL) {
        PyBuffer_Release(&data);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;  /* invalid UTF-8: the full parser fails the connection with 1007 */
    }
    message = new_slotted(message_type, &event_opcode, opcode == 1 ? text_opcode : binary_opcode, &event_data,
                          payload);
    Py_DECREF(payload);
    if (message != NULL && (add(connection, &bytes_received, data.len) < 0 || add(connection, &frames_received, 1) < 0 ||
                            add(connection, &messages_received, 1) < 0)) {
        Py_CLEAR(message);
    }
    PyBuffer_Release(&data);
    return message;
}

/*
 * text_frame(connection, data, fragment_size) -> bytes | None
 *
 * When the text message data (str, or bytes of valid UTF-8) fits one final
 * frame with a two-byte header (under 126 bytes, and within fragment_size
 * unless it is None), the connection is OPEN with no extension and nothing
 * is queued: count the frame and return it, for the caller to write.
 * Otherwise None, and nothing is done.
 */
PyObject *
text_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *connection, *data, *fragment_size, *frame;
    const char *payload;
    Py_ssize_t length;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "text_frame() takes exactly 3 arguments (connection, data, fragment_size)");
        return NULL;
    }
    if (check_bound("text_frame") < 0) {
        return NULL;
    }
    connection = args[0];
    data = args[1];
    fragment_size = args[2];
    if (PyUnicode_CheckExact(data)) {
        /* A longer text never fits: its UTF-8 is not asked for (a str keeps it once made). */
        if (PyUnicode_GetLength(data) >= 126) {
            Py_RETURN_NONE;
        }
        payload = PyUnicode_AsUTF8AndSize(data, &length);
        if (payload == NULL) {
            PyErr_Clear();  /* a lone surrogate: str.encode raises it again */
            Py_RETURN_NONE;
        }
    }
    else if (PyBytes_CheckExact(data)) {
        payload = PyBytes_AS_STRING(data);
        length = PyBytes_GET_SIZE(data);
    }
    else {
        Py_RETURN_NONE;
    }
    if (length >= 126) {
        Py_RETURN_NONE;
    }
    if (fragment_size != Py_None) {
        Py_ssize_t size;

        if (!PyLong_CheckExact(fragment_size)) {
            Py_RETURN_NONE;
        }
        size = PyLong_AsSsize_t(fragment_size);
        if (size == -1 && PyErr_Occurred()) {
            PyErr_Clear();  /* beyond Py_ssize_t: the Python way takes it */
            Py_RETURN_NONE;
        }
        if (size < length || size < 1) {
            Py_RETURN_NONE;
        }
    }
    if (Py_TYPE(connection) != connection_type || get(connection, &state) != open_state ||
        !is_false(connection, &extensions) || !is_false(connection, &output)) {
        Py_RETURN_NONE;
    }
    if (PyBytes_CheckExact(data) && !is_ascii((const unsigned char *)payload, length)) {
        PyObject *decoded = PyUnicode_DecodeUTF8(payload, length, "strict");

        if (decoded == NULL) {
            PyErr_Clear();  /* the Python way raises LocalProtocolError */
            Py_RETURN_NONE;
        }
        Py_DECREF(decoded);
    }
    frame = PyBytes_FromStringAndSize(NULL, 2 + length);
    if (frame == NULL) {
        return NULL;
    }
    PyBytes_AS_STRING(frame)[0] = (char)0x81;  /* FIN, text */
    PyBytes_AS_STRING(frame)[1] = (char)length;
    memcpy(PyBytes_AS_STRING(frame) + 2, payload, length);
    if (add(connection, &frames_sent, 1) < 0 || add(connection, &messages_sent, 1) < 0 ||
        add(connection, &bytes_sent, 2 + length) < 0) {
        Py_DECREF(frame);
        return NULL;
    }
    return frame;
}
