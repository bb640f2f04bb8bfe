"""Canistry's command line (``canistry.cli``) and typed client (``canistry.client``)."""

from importlib import metadata

try:
    __version__ = metadata.version("canistry")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
