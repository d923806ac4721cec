"""Download the UCR archive 2018 into the cache that `datasets.ucr` reads (the online path).

    python -m datasets.download [--dest DIR] [--url URL] [--datasets A,B]

The official zip is encrypted with ZipCrypto (password "someone", from the archive's web page);
Python's zipfile decrypts it, slowly (about 1 MB/s), so `--datasets` saves time by unpacking only
those. Each dataset is unpacked into a temporary folder beside the destination, checked against the
archive summary, then renamed into place: a dataset folder that exists is complete, and re-running
skips what is already there.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from datasets.ucr import DataError, archive_summary, cache_dir, has_dataset, read_tsv, resolve_names, validate

ARCHIVE_URL = "https://www.cs.ucr.edu/~eamonn/time_series_data_2018/UCRArchive_2018.zip"
ARCHIVE_PASSWORD = b"someone"
SPLITS = ("TRAIN", "TEST")


def download_archive(dest: str | os.PathLike | None = None, url: str = ARCHIVE_URL,
                     datasets: Sequence[str] | None = None, *, progress: bool = True,
                     password: bytes = ARCHIVE_PASSWORD, timeout: float = 60.0) -> Path:
    """Fetch the archive zip from `url` and unpack `datasets` (default: every archive dataset in it)
    into `dest` (default `datasets.ucr.cache_dir()`); returns `dest`. Does nothing if all are there."""
    dest = Path(dest).expanduser() if dest else cache_dir()
    names = resolve_names(datasets) if datasets else None
    if all(has_dataset(dest, n) for n in names or archive_summary()["Name"]):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.partial-") as tmp:
        archive = _fetch(url, Path(tmp) / "archive.zip", progress, timeout)
        _unpack(archive, dest, names, password, Path(tmp), progress)
    return dest


def _fetch(url: str, target: Path, progress: bool, timeout: float) -> Path:
    """Stream `url` (http(s), file:// or a local path) to `target`; a cut-short download is an error."""
    if "://" not in url:
        url = Path(url).expanduser().resolve().as_uri()
    request = urllib.request.Request(url, headers={"User-Agent": "ssl-vqvae-study"})
    hint = "check the connection, pass --url with a mirror or a local zip, or --ucr-root with an unpacked copy"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=expected or None, unit="B", unit_scale=True, desc="download", disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = f"HTTP {err.code}" if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", None)
        reason = reason or err.__class__.__name__
        raise DataError(f"could not download {url}: {reason}; {hint}") from None
    size = target.stat().st_size
    if expected and size != expected:
        raise DataError(f"download of {url} stopped at {size} of {expected} bytes; run the command again")
    if not zipfile.is_zipfile(target):
        raise DataError(f"{url} is not a zip archive; {hint}")
    return target


def _members(archive: zipfile.ZipFile) -> dict[tuple[str, str], zipfile.ZipInfo]:
    """`(name, split)` -> the archive's `<Name>/<Name>_<SPLIT>.tsv`. The official zip also holds
    re-processed copies of some datasets in a subfolder: the shallowest path (the original) wins."""
    found: dict[tuple[str, str], zipfile.ZipInfo] = {}
    for info in archive.infolist():
        parts = info.filename.split("/")
        for split in SPLITS:
            if len(parts) >= 2 and parts[-1] == f"{parts[-2]}_{split}.tsv":
                key = (parts[-2], split)
                if key not in found or len(parts) < found[key].filename.count("/") + 1:
                    found[key] = info
    return found


def _unpack(path: Path, dest: Path, names: list[str] | None, password: bytes, tmp: Path, progress: bool) -> None:
    with zipfile.ZipFile(path) as archive:
        members = _members(archive)
        known = set(archive_summary()["Name"])
        complete = [n for n in sorted({n for n, _ in members}) if n in known and all((n, s) in members for s in SPLITS)]
        if names is None:
            if not complete:
                raise DataError(f"{path.name} holds no UCR archive dataset (<Name>/<Name>_TRAIN.tsv and _TEST.tsv)")
            names = complete
        absent = [n for n in names if n not in complete]
        if absent:
            raise DataError(f"the archive lacks {', '.join(absent)}; check --datasets or --url")
        todo = [n for n in names if not has_dataset(dest, n)]
        failed = []
        total = sum(members[n, s].file_size for n in todo for s in SPLITS)
        with tqdm(total=total, unit="B", unit_scale=True, desc="unpack", disable=not progress) as bar:
            for name in todo:
                stage = tmp / name
                stage.mkdir()
                for split in SPLITS:
                    _extract(archive, members[name, split], stage / f"{name}_{split}.tsv", password, bar)
                try:
                    validate(name, *read_tsv(stage / f"{name}_TRAIN.tsv"), *read_tsv(stage / f"{name}_TEST.tsv"),
                             source=f"{path.name}")
                except DataError as err:
                    failed.append(str(err))
                    continue
                if (dest / name).exists():
                    shutil.rmtree(dest / name)  # an incomplete folder left by hand
                os.replace(stage, dest / name)
    if failed:
        raise DataError(f"{len(failed)} dataset(s) failed the check and were not cached: {' | '.join(failed)}")


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, password: bytes, bar: tqdm) -> None:
    try:
        with archive.open(info, pwd=password) as src, open(target, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    except RuntimeError as err:  # zipfile's "Bad password" / "password required"
        raise DataError(f"cannot decrypt {info.filename}: {err}; the official archive's password is 'someone'") from None
    except (zipfile.BadZipFile, zlib.error, OSError) as err:  # a wrong password can also end here
        raise DataError(f"cannot unpack {info.filename}: {err}; the download is corrupt, run the command again") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=None, help=f"archive folder to fill (default: {cache_dir()}, "
                        "set by $SSL_VQVAE_CACHE/UCRArchive_2018)")
    parser.add_argument("--url", default=ARCHIVE_URL, help="archive zip: http(s) URL, file:// URL or local path "
                        "(default: the official UCRArchive_2018.zip)")
    parser.add_argument("--datasets", default=None, help="comma-separated names, or 'all' (default: all)")
    args = parser.parse_args(argv)
    try:
        dest = download_archive(args.dest, args.url, [args.datasets] if args.datasets else None,
                                progress=True)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
