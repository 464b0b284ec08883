"""Kubernetes objects as typed values, loaded and validated from YAML. Imports nothing from gingham."""
