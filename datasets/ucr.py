"""UCR archive 2018: find, read, validate and preprocess one dataset.

Where data comes from: `ucr_root` argument > `$UCR_ARCHIVE_DIR` > the download cache
(`python -m datasets.download`) if it holds the dataset > the real UCR datasets bundled in the aeon
wheel (`BUNDLED`, read offline). Every dataset is checked against the archive's own summary
(`archive_summary.csv`) so that a truncated or mislabelled copy fails loudly instead of skewing a study.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


class DataError(ValueError):
    """Bad or missing data; the message is one line saying what is wrong and how to fix it."""


BUNDLED: tuple[str, ...] = ("ArrowHead", "GunPoint", "ItalyPowerDemand", "OSULeaf", "PickupGestureWiimoteZ", "ACSF1")
# the bundled datasets of at most 400 points per series: the default study's, a laptop's minutes
BUNDLED_SMALL: tuple[str, ...] = ("ArrowHead", "GunPoint", "ItalyPowerDemand", "PickupGestureWiimoteZ")
NAN_POLICIES = ("resample", "zero")
ARCHIVE_DIRNAME = "UCRArchive_2018"
_SUMMARY_CSV = Path(__file__).with_name("archive_summary.csv")
_HOW_TO_GET = "run `python -m datasets.download --datasets {name}` or pass --ucr-root / set UCR_ARCHIVE_DIR"


@dataclass(frozen=True, eq=False)
class UCRDataset:
    name: str
    x_train: np.ndarray  # (n, l) float32, z-normalised with ONE global mean/std of the archive's train split
    y_train: np.ndarray  # (n,) int64 in [0, n_classes); the archive's train split minus validation
    x_val: np.ndarray  # (n_val, l) stratified, seeded, carved from the archive's train split
    y_val: np.ndarray
    x_test: np.ndarray  # (n_test, l) the archive's test split
    y_test: np.ndarray
    classes: tuple  # original archive labels; index = encoded label
    mean: float
    std: float
    source: str = ""  # the folder its files were read from (the aeon wheel's for a bundled copy)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def length(self) -> int:
        return self.x_train.shape[1]


@functools.lru_cache(maxsize=1)
def _summary() -> pd.DataFrame:
    df = pd.read_csv(_SUMMARY_CSV, encoding="utf-8-sig", skipinitialspace=True)
    df["Name"] = df["Name"].str.strip()
    return df[["Name", "Train", "Test", "Class", "Length", "ED (w=0)"]].reset_index(drop=True)


def archive_summary() -> pd.DataFrame:
    """The 128 datasets: Name, Train, Test, Class, Length (a number, or "Vary" for variable length) and
    the archive's 1-NN Euclidean test error rate "ED (w=0)"."""
    return _summary().copy()


def resolve_names(names: Sequence[str]) -> list[str]:
    """Canonical archive names ("all" -> all 128, case-insensitive, "A,B" allowed); unknown -> DataError."""
    if isinstance(names, str):
        names = [names]
    known = list(_summary()["Name"])
    by_lower = {n.lower(): n for n in known}
    out: list[str] = []
    for item in (part.strip() for entry in names for part in entry.split(",")):
        if not item:
            continue
        if item.lower() == "all":
            resolved = known
        elif item.lower() in by_lower:
            resolved = [by_lower[item.lower()]]
        else:
            close = difflib.get_close_matches(item.lower(), list(by_lower), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(by_lower[c] for c in close)}?" if close else "see datasets/archive_summary.csv"
            raise DataError(f"unknown UCR dataset {item!r}; {hint}")
        out += [n for n in resolved if n not in out]
    if not out:
        raise DataError("no dataset names given; pass archive names such as GunPoint, or 'all'")
    return out


def cache_dir() -> Path:
    """Where `python -m datasets.download` puts the archive: `$SSL_VQVAE_CACHE/UCRArchive_2018`
    (default `~/.cache/ssl-vqvae-study/UCRArchive_2018`)."""
    base = os.environ.get("SSL_VQVAE_CACHE") or Path.home() / ".cache" / "ssl-vqvae-study"
    return Path(base).expanduser() / ARCHIVE_DIRNAME


def has_dataset(root: Path, name: str) -> bool:
    """Whether `root` holds both archive files of dataset `name`."""
    return all((root / name / f"{name}_{split}.tsv").is_file() for split in ("TRAIN", "TEST"))


def resolve_root(ucr_root: str | os.PathLike | None) -> Path | None:
    """Archive root: `ucr_root` > `$UCR_ARCHIVE_DIR` > the download cache if it holds any dataset > None
    (None means: use the datasets bundled with aeon). An explicit root must be a readable folder."""
    given, origin = (ucr_root, "--ucr-root") if ucr_root else (os.environ.get("UCR_ARCHIVE_DIR"), "UCR_ARCHIVE_DIR")
    if given:
        root = Path(given).expanduser()
        if not root.is_dir():
            raise DataError(f"UCR archive root {root} ({origin}) is not a folder; point it at a UCRArchive_2018 copy")
        if not os.access(root, os.R_OK | os.X_OK):
            raise DataError(f"UCR archive root {root} ({origin}) is not readable; fix its permissions")
        return root
    cache = cache_dir()
    if cache.is_dir() and any(cache.glob("*/*_TRAIN.tsv")):
        return cache
    return None


def read_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One archive file -> labels (n,) float64 and values (n, l) float64 (NaN kept)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}; check the file") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{path} has no rows; replace it with the archive's file")
    fields = np.array([line.count("\t") + 1 for line in lines])
    if (bad := np.flatnonzero(fields != fields[0])).size:
        i = bad[0]
        raise DataError(f"{path}: ragged rows, line {i + 1} has {fields[i]} fields but line 1 has {fields[0]}; "
                        "variable-length series must be NaN-padded")
    if fields[0] < 2:
        raise DataError(f"{path}: rows have no values after the label; expected tab-separated `label<TAB>values`")
    try:
        table = pd.read_csv(io.StringIO("\n".join(lines)), sep="\t", header=None, dtype=np.float64).to_numpy()
    except ValueError:
        row, col, cell = next(((r, c, v) for r, line in enumerate(lines, 1)
                               for c, v in enumerate(line.split("\t"), 1) if not _is_number(v)), (0, 0, "?"))
        raise DataError(f"{path}: non-numeric cell {cell[:20]!r} at line {row}, column {col}; "
                        "cells must be numbers or NaN") from None
    if np.isnan(table[:, 0]).any():
        raise DataError(f"{path}: line {np.flatnonzero(np.isnan(table[:, 0]))[0] + 1} has no label; "
                        "the first column must be the class label")
    check_finite(table[:, 1:], str(path))
    return table[:, 0], table[:, 1:]


# |value| above this overflows the normalisation (its square is taken in float64, the model runs in float32)
MAX_ABS_VALUE = 1e15


def check_finite(x: np.ndarray, where: str) -> None:
    """Refuse inf and overflowing cells of x: (n, l), naming the 1-based line (series) and column (time step + 1)."""
    bad = np.isinf(x) | (np.abs(np.nan_to_num(x)) > MAX_ABS_VALUE)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{where}: line {row + 1}, column {col + 2} holds {x[row, col]:g}, which cannot be "
                        f"normalised (only finite values up to {MAX_ABS_VALUE:g} in size, or NaN for missing "
                        f"values); fix that cell")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return not cell.strip()


def _bundled_dir(name: str) -> Path:
    import aeon

    return Path(aeon.__file__).parent / "datasets" / "data" / name


def _load_bundled(name: str) -> tuple[np.ndarray, ...]:
    """The aeon wheel's copy (.ts files, read locally) in the archive's layout: NaN-padded to the
    longest series of both splits, as the archive pads variable-length datasets."""
    from aeon.datasets import load_from_ts_file

    folder = _bundled_dir(name)
    splits = []
    for split in ("TRAIN", "TEST"):
        x, y = load_from_ts_file(str(folder / f"{name}_{split}.ts"))
        splits.append((np.asarray(y, dtype=np.float64), [np.asarray(s, dtype=np.float64)[0] for s in x]))
    width = max(len(s) for _, series in splits for s in series)
    out = []
    for y, series in splits:
        x = np.full((len(series), width), np.nan)
        for i, s in enumerate(series):
            x[i, : len(s)] = s
        out += [y, x]
    return tuple(out)


def validate(name: str, y_train: np.ndarray, x_train: np.ndarray, y_test: np.ndarray, x_test: np.ndarray,
             source: str = "") -> None:
    """Check a loaded dataset against the archive summary: rows, length (longest series for "Vary"), classes."""
    row = _summary().set_index("Name").loc[name]
    where = f"{name} in {source}" if source else name
    fix = f"the copy is incomplete or altered; {_HOW_TO_GET.format(name=name)} to get the archive's files"
    for split, y, expected in (("train", y_train, row.Train), ("test", y_test, row.Test)):
        if len(y) != int(expected):
            raise DataError(f"{where}: {split} split has {len(y)} series, the archive summary says {expected}; {fix}")
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(f"{where}: train rows have length {x_train.shape[1]} but test rows {x_test.shape[1]}; {fix}")
    if row.Length == "Vary":
        valid = ~np.isnan(np.concatenate([x_train, x_test]))
        longest = int((x_train.shape[1] - np.argmax(valid[:, ::-1], axis=1))[valid.any(axis=1)].max(initial=0))
        if longest != x_train.shape[1]:
            raise DataError(f"{where}: padded to {x_train.shape[1]} but the longest series has {longest} values; {fix}")
    elif x_train.shape[1] != int(row.Length):
        raise DataError(f"{where}: series have length {x_train.shape[1]}, the archive summary says {row.Length}; {fix}")
    train_classes = np.unique(y_train)
    if len(train_classes) < 2:
        raise DataError(f"{where}: the train split has only one class ({train_classes[0]:g}); "
                        "a classification dataset needs at least two; check the label column")
    unseen = np.setdiff1d(np.unique(y_test), train_classes)
    if unseen.size:
        raise DataError(f"{where}: test labels {[f'{c:g}' for c in unseen]} never occur in the train split; {fix}")
    if len(train_classes) != int(row.Class):
        raise DataError(f"{where}: {len(train_classes)} classes, the archive summary says {row.Class}; {fix}")


def fill_nan(x: np.ndarray, padded: bool, where: str = "data") -> np.ndarray:
    """The "resample" NaN policy, per series x: (n, l) -> (n, l) without NaN.

    If `padded` (a "Vary" dataset), the trailing NaN run is padding: the valid prefix is linearly
    resampled to the full length l, so every series spans the same time axis. All other NaNs (interior,
    leading, or trailing in a fixed-length dataset, i.e. missing values) are linearly interpolated in
    time, with the nearest valid value carried to the ends.
    """
    out = np.array(x, dtype=np.float64)
    length = x.shape[1]
    for i in np.flatnonzero(np.isnan(out).any(axis=1)):
        valid = ~np.isnan(out[i])
        if not valid.any():
            raise DataError(f"{where}: line {i + 1} is all NaN (no values to resample); drop that series or pass "
                            f"--set nan_policy=zero, which sets missing values to the train mean")
        end = length - np.argmax(valid[::-1]) if padded else length
        t = np.flatnonzero(valid[:end])
        series = np.interp(np.arange(end), t, out[i, t])  # (end,)
        out[i] = np.interp(np.linspace(0, end - 1, length), np.arange(end), series) if end < length else series
    return out


def split_train_val(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of train labels y: (n,) -> sorted (train_idx, val_idx).

    Rule, made for tiny train sets (20 series; classes with 1 or 2 series): the validation size is
    max(round(val_fraction * n), n_classes), capped so that every class keeps at least one series in
    train; every class with >= 2 series gets at least one validation series; a class with one series
    stays in train; the rest is shared out in proportion to class sizes (largest shortfall first). So
    validation has at least n_classes series where the classes allow it; val_fraction=0 gives none.
    The same seed gives the same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    quota = np.zeros(len(classes), dtype=int)
    if val_fraction > 0:
        cap = counts - 1
        quota = np.minimum(cap, 1)
        target = min(max(round(val_fraction * len(y)), len(classes)), int(cap.sum()))
        share = target * counts / len(y)
        while quota.sum() < target:
            room = np.where(quota < cap, share - quota, -np.inf)
            quota[np.argmax(room)] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(y_idx == c))[:q] for c, q in enumerate(quota)])
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val.astype(int)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _dataset_dir(name: str, ucr_root: str | os.PathLike | None) -> Path | None:
    """The dataset's folder, or None for the aeon-bundled copy."""
    explicit = bool(ucr_root or os.environ.get("UCR_ARCHIVE_DIR"))
    root = resolve_root(ucr_root)
    if explicit:
        if not (root / name).is_dir():
            raise DataError(f"{name} is not in the UCR archive root {root}; {_HOW_TO_GET.format(name=name)}")
        return root / name
    if root is not None and has_dataset(root, name):
        return root / name
    if name in BUNDLED:
        return None
    raise DataError(f"{name} is not available offline (bundled: {', '.join(BUNDLED)}); {_HOW_TO_GET.format(name=name)}")


def load_dataset(name: str, ucr_root: str | os.PathLike | None = None, *, val_fraction: float = 0.0,
                 seed: int = 0, nan_policy: str = "resample") -> UCRDataset:
    """Read, validate and preprocess one UCR dataset as the reference study does.

    Labels are encoded from the train split (sorted archive labels). NaN policy: "resample" (default,
    see `fill_nan`) fills NaNs before normalising; "zero" (the reference implementation) normalises with
    NaN-ignoring statistics, then sets NaN to 0 (the train mean). ONE global mean/std (population) of
    the training part (the archive's train split less any validation series) normalises every split, so
    no held-out series shapes the preprocessing. Validation: `split_train_val` (none by default).
    """
    (name,) = resolve_names([name])
    if nan_policy not in NAN_POLICIES:
        raise DataError(f"unknown nan_policy {nan_policy!r}; use one of {', '.join(NAN_POLICIES)}")
    folder = _dataset_dir(name, ucr_root)
    if folder is None:
        y_train, x_train, y_test, x_test = _load_bundled(name)
        source = "the aeon-bundled copy"
        files = {s: f"{name} ({source}), {s.lower()} split" for s in ("TRAIN", "TEST")}
        folder = _bundled_dir(name)
        for s, x in (("TRAIN", x_train), ("TEST", x_test)):
            check_finite(x, files[s])
    else:
        files = {s: str(folder / f"{name}_{s}.tsv") for s in ("TRAIN", "TEST")}
        (y_train, x_train), (y_test, x_test) = (read_tsv(Path(files[s])) for s in ("TRAIN", "TEST"))
        source = str(folder)
    validate(name, y_train, x_train, y_test, x_test, source)

    if nan_policy == "resample":
        padded = _summary().set_index("Name").loc[name, "Length"] == "Vary"
        x_train, x_test = fill_nan(x_train, padded, files["TRAIN"]), fill_nan(x_test, padded, files["TEST"])
    classes = np.unique(y_train)
    labels = tuple(int(c) if float(c).is_integer() else float(c) for c in classes)
    y_train, y_test = (np.searchsorted(classes, y).astype(np.int64) for y in (y_train, y_test))
    train_idx, val_idx = split_train_val(y_train, val_fraction, seed)
    mean, std = float(np.nanmean(x_train[train_idx])), float(np.nanstd(x_train[train_idx]))
    if not std > 0:
        raise DataError(f"{name} in {source}: the train split is constant, so it cannot be z-normalised")
    x_train, x_test = (np.nan_to_num((x - mean) / std, nan=0.0).astype(np.float32) for x in (x_train, x_test))
    return UCRDataset(name=name, x_train=x_train[train_idx], y_train=y_train[train_idx],
                      x_val=x_train[val_idx], y_val=y_train[val_idx], x_test=x_test, y_test=y_test,
                      classes=labels, mean=mean, std=std, source=str(folder))
