"""``bench export``: result rows with their provenance as CSV, JSON or parquet, from one pandas table.

JSON keeps lists and dicts as JSON and is what ``bench check`` reads back as a baseline; CSV and parquet
hold them as JSON text, since neither nests reliably across readers. A file is written next to its target
and moved into place, so a failed export never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import pandas as pd

from bench.errors import BenchError
from bench.results_table import NESTED

Format = Literal["csv", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "json", "parquet")


def write_rows(frame: pd.DataFrame, fmt: Format, out: Path) -> None:
    """Write ``frame`` to ``out``; an unwritable path or a missing parquet engine is a :class:`BenchError`."""
    if out.is_dir():
        raise BenchError(f"cannot export to {out}: it is a folder; name a file")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(frame, fmt, tmp)
        os.replace(tmp, out)
    except ImportError as exc:
        raise BenchError(f"parquet export needs pyarrow, which is not installed ({exc})") from exc
    except OSError as exc:
        raise BenchError(f"cannot export to {out}: {exc.strerror or exc}") from exc
    finally:
        if tmp.is_file():
            tmp.unlink()

def _write(frame: pd.DataFrame, fmt: Format, path: Path) -> None:
    if fmt == "json":
        # One field per line, so that a change to a committed export reads as a diff of the fields changed;
        # floats as Python writes them, which read back exactly (pandas' writer keeps 15 digits at most).
        records = frame.to_dict(orient="records")
        path.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
        return
    flat = frame.copy()
    for column in NESTED:
        flat[column] = flat[column].map(lambda v: None if v is None else json.dumps(v, sort_keys=True))
    if fmt == "csv":
        flat.to_csv(path, index=False)
    else:
        flat.to_parquet(path, index=False)
