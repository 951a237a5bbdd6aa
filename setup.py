"""Build of impl's one piece of C, the clock's fast path (impl/_clock.c).

Everything else about the project is in pyproject.toml. The extension is a
plain shared library that impl.vcpu loads with ctypes and hands to Unicorn
as a UC_HOOK_BLOCK callback; it uses no Python API."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("impl._clock", ["impl/_clock.c"],
                             extra_compile_args=["-O2", "-std=c11", "-Wall"],
                             py_limited_api=True)])
