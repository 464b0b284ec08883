"""What several test modules share: worlds of objects, file builders, golden-file checks.

Test modules import from here, never from one another.
"""
