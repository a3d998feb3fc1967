/*
 * The greenlet switch tracer of duck_ws_sync.hosts.gevent.loop, in C.
 *
 * SwitchTracer keeps asyncio's running loop and async generator hooks per
 * greenlet, so that many GreenletEventLoops can run in one thread, and calls
 * a loop's ``blocked`` callable when its greenlet blocks outside its wait. It
 * runs on every greenlet switch of a worker, WebSocket or not, so it must cost
 * next to nothing. ``_python_tracer`` in duck_ws_sync/hosts/gevent/loop.py is
 * the same function in Python, with the reasons; it is used when this
 * extension is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* SwitchTracer: called by greenlet as tracer(event, (origin, target)). */

typedef struct {
    PyObject_HEAD
    PyObject *hub;
    PyObject *loop_attribute;     /* greenlet attribute: (running loop, async generator hooks) */
    PyObject *blocked_attribute;  /* greenlet attribute: callable run when its loop blocks outside its wait */
    PyObject *get_running_loop;
    PyObject *set_running_loop;
    PyObject *get_hooks;          /* sys.get_asyncgen_hooks */
    PyObject *set_hooks;          /* sys.set_asyncgen_hooks */
    PyObject *no_hooks;           /* the hooks of a greenlet that runs no loop */
    PyObject *previous;           /* the tracer installed before ours, or None */
} SwitchTracer;

static void
tracer_dealloc(SwitchTracer *self)
{
    Py_XDECREF(self->hub);
    Py_XDECREF(self->loop_attribute);
    Py_XDECREF(self->blocked_attribute);
    Py_XDECREF(self->get_running_loop);
    Py_XDECREF(self->set_running_loop);
    Py_XDECREF(self->get_hooks);
    Py_XDECREF(self->set_hooks);
    Py_XDECREF(self->no_hooks);
    Py_XDECREF(self->previous);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
tracer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    SwitchTracer *self;
    PyObject *fields[9];

    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "SwitchTracer() takes positional arguments only");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "SwitchTracer", 9, 9, &fields[0], &fields[1], &fields[2], &fields[3],
                           &fields[4], &fields[5], &fields[6], &fields[7], &fields[8])) {
        return NULL;
    }
    if (!PyUnicode_Check(fields[1]) || !PyUnicode_Check(fields[2])) {
        PyErr_SetString(PyExc_TypeError, "attribute names must be str");
        return NULL;
    }
    if (!PyTuple_Check(fields[7]) || PyTuple_GET_SIZE(fields[7]) != 2) {
        PyErr_SetString(PyExc_TypeError, "no_hooks must be a pair");
        return NULL;
    }
    self = (SwitchTracer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->hub = Py_NewRef(fields[0]);
    self->loop_attribute = Py_NewRef(fields[1]);
    PyUnicode_InternInPlace(&self->loop_attribute);
    self->blocked_attribute = Py_NewRef(fields[2]);
    PyUnicode_InternInPlace(&self->blocked_attribute);
    self->get_running_loop = Py_NewRef(fields[3]);
    self->set_running_loop = Py_NewRef(fields[4]);
    self->get_hooks = Py_NewRef(fields[5]);
    self->set_hooks = Py_NewRef(fields[6]);
    self->no_hooks = Py_NewRef(fields[7]);
    self->previous = Py_NewRef(fields[8]);
    return (PyObject *)self;
}

/* getattr(obj, name, None) as a new reference; NULL only on an error other than AttributeError. */
static PyObject *
get_optional(PyObject *obj, PyObject *name)
{
    PyObject *value;
    /* Without raising and clearing an AttributeError: most greenlets have no such attribute. */
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(obj, name, &value) < 0) {
#else
    if (_PyObject_LookupAttr(obj, name, &value) < 0) {
#endif
        return NULL;
    }
    return value == NULL ? Py_NewRef(Py_None) : value;
}

/* Call greenlet's ``blocked`` callable if it has one; -1 on error. */
static int
call_blocked(SwitchTracer *self, PyObject *greenlet)
{
    PyObject *blocked = get_optional(greenlet, self->blocked_attribute);
    if (blocked == NULL) {
        return -1;
    }
    if (blocked != Py_None) {
        PyObject *result = PyObject_CallNoArgs(blocked);
        Py_DECREF(blocked);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    Py_DECREF(blocked);
    return 0;
}

/* Make ``target``'s loop and hooks current; 0 when done, -1 on error.
 *
 * Each is set only when it differs from the current one: setting the running
 * loop allocates in CPython 3.11, and most switches change neither. */
static int
restore(SwitchTracer *self, PyObject *state)
{
    PyObject *loop = Py_None, *hooks = self->no_hooks, *current, *result;
    int same;

    if (state != Py_None) {
        if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 2) {
            PyErr_SetString(PyExc_TypeError, "a greenlet's loop state must be a (loop, hooks) pair");
            return -1;
        }
        loop = PyTuple_GET_ITEM(state, 0);
        hooks = PyTuple_GET_ITEM(state, 1);
    }
    if (!PyTuple_Check(hooks) || PyTuple_GET_SIZE(hooks) != 2) {
        PyErr_SetString(PyExc_TypeError, "async generator hooks must be a pair");
        return -1;
    }
    current = PyObject_CallNoArgs(self->get_running_loop);
    if (current == NULL) {
        return -1;
    }
    Py_DECREF(current);
    if (current != loop) {
        result = PyObject_CallOneArg(self->set_running_loop, loop);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    current = PyObject_CallNoArgs(self->get_hooks);
    if (current == NULL) {
        return -1;
    }
    same = PyTuple_Check(current) && PyTuple_GET_SIZE(current) == 2 &&
           PyTuple_GET_ITEM(current, 0) == PyTuple_GET_ITEM(hooks, 0) &&
           PyTuple_GET_ITEM(current, 1) == PyTuple_GET_ITEM(hooks, 1);
    Py_DECREF(current);
    if (!same) {
        PyObject *pair[2] = {PyTuple_GET_ITEM(hooks, 0), PyTuple_GET_ITEM(hooks, 1)};
        result = PyObject_Vectorcall(self->set_hooks, pair, 2, NULL);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    return 0;
}

static int
trace_switch(SwitchTracer *self, PyObject *origin, PyObject *target)
{
    PyObject *state, *current, *saved, *hooks;
    int failed;

    if (target == self->hub) {
        /* The hub runs no asyncio code: the running loop stays as it is. */
        return call_blocked(self, origin);
    }
    state = get_optional(target, self->loop_attribute);
    if (state == NULL) {
        return -1;
    }
    if (origin == self->hub) {
        /* Nothing to save: the hub's state is never restored. */
        failed = restore(self, state);
        Py_DECREF(state);
        return failed;
    }
    /* One greenlet to another: the origin's loop and hooks are saved first. */
    current = PyObject_CallNoArgs(self->get_running_loop);
    hooks = current == NULL ? NULL : PyObject_CallNoArgs(self->get_hooks);
    if (hooks == NULL) {
        Py_XDECREF(current);
        Py_DECREF(state);
        return -1;
    }
    saved = PyTuple_Pack(2, current, hooks);
    Py_DECREF(current);
    Py_DECREF(hooks);
    if (saved == NULL) {
        Py_DECREF(state);
        return -1;
    }
    failed = PyObject_SetAttr(origin, self->loop_attribute, saved);
    Py_DECREF(saved);
    if (failed < 0) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            Py_DECREF(state);
            return -1;
        }
        PyErr_Clear();
    }
    failed = restore(self, state);
    Py_DECREF(state);
    if (failed < 0) {
        return -1;
    }
    return call_blocked(self, origin);
}

static PyObject *
tracer_call(SwitchTracer *self, PyObject *args, PyObject *Py_UNUSED(kwargs))
{
    PyObject *event, *pair;

    if (!PyArg_UnpackTuple(args, "SwitchTracer", 2, 2, &event, &pair)) {
        return NULL;
    }
    if (PyUnicode_Check(event) && PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2 &&
        (PyUnicode_CompareWithASCIIString(event, "switch") == 0 ||
         PyUnicode_CompareWithASCIIString(event, "throw") == 0)) {
        if (trace_switch(self, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) < 0) {
            return NULL;
        }
    }
    if (self->previous != Py_None) {
        return PyObject_Call(self->previous, args, NULL);
    }
    Py_RETURN_NONE;
}

static PyTypeObject SwitchTracerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "duck_ws_sync.hosts.gevent._switches.SwitchTracer",
    .tp_basicsize = sizeof(SwitchTracer),
    .tp_dealloc = (destructor)tracer_dealloc,
    .tp_call = (ternaryfunc)tracer_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SwitchTracer(hub, loop_attribute, blocked_attribute, get_running_loop, set_running_loop, "
              "get_hooks, set_hooks, no_hooks, previous): a greenlet tracer keeping asyncio's running "
              "loop per greenlet",
    .tp_new = tracer_new,
};

static struct PyModuleDef switches_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "duck_ws_sync.hosts.gevent._switches",
    .m_doc = "The greenlet switch tracer of the gevent host's event loop.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__switches(void)
{
    PyObject *module;

    if (PyType_Ready(&SwitchTracerType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&switches_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "SwitchTracer", (PyObject *)&SwitchTracerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
