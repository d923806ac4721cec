"""datasets.download against a small archive zip served from 127.0.0.1 (no other network)."""

import functools
import io
import shutil
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import datasets.ucr
from datasets.download import download_archive, main
from datasets.ucr import DataError, _load_bundled, cache_dir, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ucr"
NAMES = ("GunPoint", "ArrowHead")
DECOY = "UCRArchive_2018/Missing_value_and_variable_length_datasets_adjusted/GunPoint/GunPoint_TRAIN.tsv"


@functools.cache
def tsv_bytes(name, split):
    """The archive's file from ../shared/ucr, or the same data written from the aeon-bundled copy."""
    if (SHARED / name).is_dir():
        return (SHARED / name / f"{name}_{split}.tsv").read_bytes()
    y, x = _load_bundled(name)[slice(0, 2) if split == "TRAIN" else slice(2, 4)]
    out = io.BytesIO()
    np.savetxt(out, np.column_stack([y, x]), fmt="%.10g", delimiter="\t")
    return out.getvalue()


def make_zip(path, names=NAMES, drop_train_rows=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(DECOY, "not\tthe\toriginal\n")
        zf.writestr("UCRArchive_2018/README.md", "readme")
        for name in names:
            for split in ("TRAIN", "TEST"):
                data = tsv_bytes(name, split)
                if split == "TRAIN" and name in drop_train_rows:
                    data = b"".join(data.splitlines(keepends=True)[:-2])
                zf.writestr(f"UCRArchive_2018/{name}/{name}_{split}.tsv", data)
    return path


class Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path.startswith("/truncated/"):  # promises the whole file, sends half, hangs up
            body = (Path(self.directory) / self.path.removeprefix("/truncated/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.delenv("UCR_ARCHIVE_DIR", raising=False)
    monkeypatch.setenv("SSL_VQVAE_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    httpd.hits = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", site=site, hits=httpd.hits)
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def assert_no_partial(dest):
    assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []


def test_download_unpack_cache_idempotent(server, monkeypatch):
    make_zip(server.site / "archive.zip")
    url = f"{server.url}/archive.zip"
    dest = download_archive(url=url, datasets=list(NAMES), progress=False)
    assert dest == cache_dir() and server.hits == ["/archive.zip"]
    for name in NAMES:
        for split in ("TRAIN", "TEST"):
            assert (dest / name / f"{name}_{split}.tsv").read_bytes() == tsv_bytes(name, split)  # not the decoy
    assert_no_partial(dest)

    monkeypatch.setattr(datasets.ucr, "_load_bundled", lambda name: pytest.fail("used the bundled copy"))
    ds = load_dataset("GunPoint")  # found in the cache, no root given
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test), ds.length) == (50, 0, 150, 150)

    download_archive(url=url, datasets=["gunpoint,ArrowHead"], progress=False)
    assert len(server.hits) == 1  # everything cached: no request
    shutil.rmtree(dest / "ArrowHead")
    download_archive(url=url, datasets=list(NAMES), progress=False)
    assert len(server.hits) == 2 and (dest / "ArrowHead" / "ArrowHead_TEST.tsv").is_file()


def test_default_unpacks_every_dataset_in_a_local_zip(tmp_path):
    archive = make_zip(tmp_path / "UCRArchive_2018.zip")
    dest = download_archive(tmp_path / "archive", url=str(archive), progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(NAMES)
    assert load_dataset("ArrowHead", dest).n_classes == 3


def test_partial_download_is_never_a_cache(server):
    make_zip(server.site / "archive.zip")
    with pytest.raises(DataError, match="could not download|stopped at"):
        download_archive(url=f"{server.url}/truncated/archive.zip", progress=False)
    assert not any(cache_dir().iterdir())
    assert_no_partial(cache_dir())


@pytest.mark.parametrize("path, datasets, match", [
    ("missing.zip", None, "could not download .*missing.zip: HTTP 404"),
    ("not-a-zip.zip", None, "is not a zip archive"),
    ("archive.zip", ["Coffee"], "the archive lacks Coffee"),
    ("empty.zip", None, "holds no UCR archive dataset"),
])
def test_bad_source(server, path, datasets, match):
    make_zip(server.site / "archive.zip")
    make_zip(server.site / "empty.zip", names=())
    (server.site / "not-a-zip.zip").write_text("<html>moved</html>")
    with pytest.raises(DataError, match=match) as err:
        download_archive(url=f"{server.url}/{path}", datasets=datasets, progress=False)
    assert "\n" not in str(err.value)
    assert not any(cache_dir().iterdir())
    assert_no_partial(cache_dir())


def test_dataset_failing_the_check_is_not_cached(server):
    make_zip(server.site / "archive.zip", drop_train_rows=("GunPoint",))
    with pytest.raises(DataError, match="1 dataset.*GunPoint.*train split has 48 series"):
        download_archive(url=f"{server.url}/archive.zip", progress=False)
    assert [p.name for p in cache_dir().iterdir()] == ["ArrowHead"]


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs the zip command to build a ZipCrypto archive")
def test_encrypted_archive(tmp_path):
    tree = tmp_path / "tree" / "UCRArchive_2018" / "GunPoint"
    tree.mkdir(parents=True)
    for split in ("TRAIN", "TEST"):
        (tree / f"GunPoint_{split}.tsv").write_bytes(tsv_bytes("GunPoint", split))
    archive = tmp_path / "enc.zip"
    subprocess.run(["zip", "-q", "-r", "-P", "someone", str(archive), "UCRArchive_2018"], cwd=tmp_path / "tree",
                   check=True)
    with pytest.raises(DataError, match="cannot decrypt|cannot unpack"):
        download_archive(tmp_path / "wrong", url=str(archive), password=b"nope", progress=False)
    assert not any((tmp_path / "wrong").iterdir())
    dest = download_archive(tmp_path / "ok", url=str(archive), progress=False)
    assert (dest / "GunPoint" / "GunPoint_TEST.tsv").read_bytes() == tsv_bytes("GunPoint", "TEST")


def test_cli(server, tmp_path, capsys):
    make_zip(server.site / "archive.zip")
    argv = ["--dest", str(tmp_path / "out"), "--url", f"{server.url}/archive.zip", "--datasets", "GunPoint"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["GunPoint"]
    assert main(["--dest", str(tmp_path / "x"), "--url", f"{server.url}/nothing.zip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download") and err.count("\n") == 1
    assert main(["--datasets", "GunPont"]) == 2
    assert "did you mean GunPoint" in capsys.readouterr().err


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "datasets.download", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert result.returncode == 0 and "--datasets" in result.stdout and "--url" in result.stdout
