"""The agent's own files: written whole and renamed into place, so a reader never sees half."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)
