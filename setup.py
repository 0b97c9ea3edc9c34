# Shim for legacy `pip install -e .` / `python setup.py develop` flows: all metadata lives in pyproject.toml.
from setuptools import setup

setup()
