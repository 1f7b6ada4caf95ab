"""Files: count the rows of a CSV file that appeared in the inbox (see rules/watches.yaml).

The event carries the file's path relative to the watched directory; the task resolves it inside
examples/inbox/ and refuses anything that would leave it (event data is input, not a trusted path).
"""

import csv
from pathlib import Path

from orchestrator import task, workflow

INBOX = Path(__file__).resolve().parent.parent / "inbox"


@task
def count_rows(path: str) -> dict:
    """The number of data rows (after the header) and the column names of inbox/<path>."""
    file = (INBOX / path).resolve()
    if not file.is_relative_to(INBOX):
        raise ValueError(f"{path!r} is outside the inbox")
    with file.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = sum(1 for _ in reader)
    return {"path": path, "rows": rows, "columns": header}


@workflow
def count_csv_rows(path: str):
    count_rows(path)
