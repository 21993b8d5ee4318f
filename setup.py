"""Build script. Extension modules (csrc/) join ``ext_modules`` here; the pure-Python package
needs none. Install with ``pip install --no-build-isolation .`` so the build sees the installed torch."""
from setuptools import setup

setup()
