"""gingham: Kubernetes pod networking in Python, on the real kernel."""

__version__ = "0.1.0"
