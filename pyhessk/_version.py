"""The single source of pyhessk's version (read by setup tooling and by ``pyhessk.__version__``)."""

__version__ = "0.1.0"
