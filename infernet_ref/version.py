"""Versions: the package's, the specification's and the wire protocol's (spec/README.md §Versioning)."""

from importlib import metadata

try:
    __version__ = metadata.version("infernet-ref")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: Semantic version of the specification in ``spec/`` (``spec/VERSION``).
SPEC_VERSION = "1.0.0"

#: Wire (major) protocol version carried in every envelope's ``v`` field.
PROTOCOL_VERSION = 1
