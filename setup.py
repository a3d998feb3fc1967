"""Build script: declares the optional C speedup, which setup.cfg cannot express.

Everything else lives in setup.cfg. When no C compiler is available the
extension is skipped (``optional=True``) and the pure-Python fallback in
``duck_ws_sync.protocol.mask`` is used instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "duck_ws_sync.protocol._speedups",
            sources=["duck_ws_sync/protocol/_speedups.c"],
            optional=True,
        )
    ]
)
