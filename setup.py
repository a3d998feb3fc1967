"""Build script: declares the optional C extensions, which setup.cfg cannot express.

Everything else lives in setup.cfg. ``duck_ws_sync.protocol._speedups`` holds
the protocol core's byte-level helpers (masking, the parser of the common
frames); ``duck_ws_sync.hosts.gevent._switches`` holds the greenlet switch
tracer of the gevent host's event loop. When no C compiler is available either
is skipped (``optional=True``) and its pure-Python equivalent is used instead:
``duck_ws_sync.protocol.mask`` and the Python frame parser for the first,
``_python_tracer`` in ``duck_ws_sync.hosts.gevent.loop`` for the second.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "duck_ws_sync.protocol._speedups",
            sources=["duck_ws_sync/protocol/_speedups.c", "duck_ws_sync/protocol/_shortcuts.c"],
            depends=["duck_ws_sync/protocol/_speedups.h"],
            optional=True,
        ),
        Extension(
            "duck_ws_sync.hosts.gevent._switches",
            sources=["duck_ws_sync/hosts/gevent/_switches.c"],
            optional=True,
        ),
    ]
)
