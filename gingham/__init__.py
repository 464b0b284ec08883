"""gingham: Kubernetes pod networking in Python, on the real kernel."""

__version__ = "0.1.0"


def source_root() -> str:
    """The directory holding this package: what `python -I -S` processes put on sys.path."""
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
