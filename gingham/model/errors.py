"""Errors the commands catch, in a module that imports nothing (a command that fails fast
should not first load the YAML parser to name the error it might catch)."""

from __future__ import annotations


class ManifestError(ValueError):
    """A manifest refused: which file, document, object and field, and why (bad input)."""

    def __init__(self, file: str, doc: int, obj: str, field: str, msg: str) -> None:
        self.file, self.doc, self.obj, self.field, self.msg = file, doc, obj, field, msg
        super().__init__(f"{file}: document {doc} ({obj}): {field}: {msg}")


# what a command's exit code says (README, "The command line"); argparse's usage errors are 2 too
FAILED, BAD_INPUT, NOT_FOUND = 1, 2, 3
