"""Completed datasets written to one long-format file as they are made, one at a time.

The long format is mice's ``complete(imp, "long")``: the m datasets stacked, with ``.imp``
(1..m; 0 for the incomplete data when included) and ``.id`` (the row's position) in front. A
:class:`LongFileWriter` appends one dataset at a time, so that writing m datasets of a large
input holds one of them in memory, not m (:meth:`MultilevelIterativeImputer.fit_write`).

Formats, by the path's suffix: Parquet (``.parquet``, ``.pq``; needs pyarrow, the ``parquet``
extra), written in row groups of at most ``chunk_rows`` rows, and CSV or TSV (``.csv``,
``.tsv``, each optionally compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst``), appended with the
header once. The file is written under a temporary name beside ``path`` and renamed when the
last dataset is in, so that a failure leaves no partial file. Every dataset must have the same
columns and types; the caller makes them agree
(an integer column imputed with fractions in any dataset is written as a float column in all).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import numpy as np
import pandas as pd

__all__ = ["LongFileWriter", "check_long_columns", "long_file_format", "long_frame", "promote_integers"]

LONG_COLUMNS = (".imp", ".id")
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_TEXT = {".csv": ",", ".tsv": "\t"}
_PARQUET = (".parquet", ".pq")


def check_long_columns(columns) -> None:
    """A ValueError when the data have a column the long format adds (``.imp``, ``.id``)."""
    taken = [c for c in LONG_COLUMNS if c in columns]
    if taken:
        raise ValueError(f"The data have columns named {taken}, which the long format adds; rename them first.")


def long_frame(number: int, frame: pd.DataFrame) -> pd.DataFrame:
    """One dataset in the long format: ``.imp`` (``number``) and ``.id`` (the row's position) in front of its
    columns (a shallow copy; the caller's frame is not changed)."""
    check_long_columns(frame.columns)
    long = frame.copy(deep=False)
    long.insert(0, ".id", np.arange(len(frame)))
    long.insert(0, ".imp", number)
    return long


def long_file_format(path: str | Path) -> tuple[str, str | None]:
    """``("parquet" | "csv" | "tsv", compression or None)`` from the path's suffixes; a ValueError naming
    the path otherwise."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in _PARQUET and compression is None:
        return "parquet", None
    if last in _TEXT:
        return last[1:], compression
    raise ValueError(
        f"Cannot tell the format of {str(path)!r} from its name: use .parquet or .pq (Parquet), or .csv or .tsv "
        "(optionally compressed: .gz, .bz2, .xz, .zst)."
    )


class LongFileWriter:
    """Append completed datasets, one at a time, to one long-format file.

    Parameters
    ----------
    path : str or Path
        The file, created or replaced; its suffix gives the format (:func:`long_file_format`).
    chunk_rows : int, default=1_000_000
        Largest Parquet row group (rows).
    file_format, compression : str, optional
        ``"parquet"``, ``"csv"`` or ``"tsv"``, and for text ``"gzip"``, ``"bz2"``, ``"xz"`` or
        ``"zstd"``, where the caller knows them (the command line's ``--format``); by default
        both come from the path's suffixes.

    Use as a context manager; :meth:`write` takes one dataset (a pandas DataFrame) and its
    imputation number.
    """

    def __init__(
        self,
        path: str | Path,
        chunk_rows: int = 1_000_000,
        file_format: str | None = None,
        compression: str | None = None,
    ):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a file name (str or Path); got {type(path).__name__}")
        self.target = Path(path)
        if file_format is None:
            self.format, self.compression = long_file_format(self.target)
        elif file_format in ("parquet", "csv", "tsv") and (compression is None or (
                file_format != "parquet" and compression in _COMPRESSIONS.values())):  # fmt: skip
            self.format, self.compression = file_format, compression
        else:
            raise ValueError(f"Cannot write the long format as {file_format!r} with compression {compression!r}.")
        if not self.target.parent.is_dir():
            raise ValueError(f"Cannot write {str(path)!r}: the folder {str(self.target.parent)!r} does not exist.")
        if self.target.is_dir():
            raise ValueError(f"Cannot write {str(path)!r}: it is a folder.")
        self.path = self.target.with_name(f".{self.target.name}.{os.getpid()}.tmp")
        self.path.touch()  # a folder we may not write to fails here, before any work is done
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError as err:  # an optional dependency
                raise ImportError(
                    "Writing Parquet needs pyarrow: pip install 'skmlmi[parquet]' (or write .csv)."
                ) from err
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive whole number of rows; got {chunk_rows!r}")
        self.chunk_rows = int(chunk_rows)
        self.rows_written = 0
        self._parquet = None
        self._schema = None
        self._columns: list | None = None

    def __enter__(self) -> LongFileWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self.close()
            if error is None and self.rows_written:
                os.replace(self.path, self.target)
        finally:
            self.path.unlink(missing_ok=True)  # (gone already after the replace)

    def write(self, number: int, frame: pd.DataFrame) -> None:
        """Append ``frame`` as imputation ``number`` (0: the incomplete data)."""
        if self._columns is None:
            self._columns = list(frame.columns)
        elif list(frame.columns) != self._columns:  # a bug of the caller, not of the data
            raise ValueError(f"imputation {number} has columns {list(frame.columns)}, not {self._columns}")
        long = long_frame(number, frame)
        long.columns = [name if isinstance(name, str) else str(name) for name in long.columns]  # an array's 0, 1, ...
        if self.format == "parquet":
            self._write_parquet(long)
        else:
            long.to_csv(
                self.path,
                sep=_TEXT["." + self.format],
                index=False,
                header=self.rows_written == 0,
                mode="w" if self.rows_written == 0 else "a",
                compression=self.compression,
            )
        self.rows_written += len(long)

    def _write_parquet(self, long: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(long, preserve_index=False, schema=self._schema)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.path, self._schema)
        self._parquet.write_table(table, row_group_size=self.chunk_rows)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def promote_integers(frame: pd.DataFrame, names) -> pd.DataFrame:
    """``frame`` with its integer columns among ``names`` as floats (``Float64`` for nullable ``Int``), so that
    a column imputed with fractions in some dataset has one type in every dataset of the file."""
    casts = {}
    for name in names:
        dtype = frame[name].dtype
        if pd.api.types.is_integer_dtype(dtype):
            casts[name] = "Float64" if isinstance(dtype, pd.api.extensions.ExtensionDtype) else "float64"
    return frame.astype(casts) if casts else frame
