"""datasets.ucr: real data (aeon-bundled, and ../shared/ucr when present), preprocessing, splits, bad input."""

import socket
from pathlib import Path

import numpy as np
import pytest

from datasets.ucr import (BUNDLED, DataError, _load_bundled, archive_summary, cache_dir, fill_nan, load_dataset,
                          read_tsv, resolve_names, resolve_root, split_train_val)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "ucr"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/ucr")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No user archive or cache leaks into a test."""
    monkeypatch.delenv("UCR_ARCHIVE_DIR", raising=False)
    monkeypatch.setenv("SSL_VQVAE_CACHE", str(tmp_path / "cache"))


def write_split(path, y, x):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([y, x]), fmt="%.10g", delimiter="\t")


def write_dataset(root, name, edit=lambda y_tr, x_tr, y_te, x_te: (y_tr, x_tr, y_te, x_te)):
    """A real (bundled) dataset written in the archive layout, optionally altered by `edit`."""
    y_tr, x_tr, y_te, x_te = edit(*(a.copy() for a in _load_bundled(name)))
    write_split(root / name / f"{name}_TRAIN.tsv", y_tr, x_tr)
    write_split(root / name / f"{name}_TEST.tsv", y_te, x_te)
    return root


def raises_one_line(match, fn, *args, **kwargs):
    with pytest.raises(DataError, match=match) as err:
        fn(*args, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


# --- summary and names ---

def test_archive_summary():
    df = archive_summary()
    assert len(df) == 128 and list(df.columns) == ["Name", "Train", "Test", "Class", "Length", "ED (w=0)"]
    assert df["Name"].is_unique
    gun = df.set_index("Name").loc["GunPoint"]
    assert (gun.Train, gun.Test, gun.Class, gun.Length) == (50, 150, 2, "150")
    assert gun["ED (w=0)"] == pytest.approx(0.0867)      # the archive's 1-NN Euclidean test error
    assert (df["Length"] == "Vary").sum() == 11


def test_resolve_names():
    assert len(resolve_names(["all"])) == 128
    assert resolve_names(["gunpoint", "Coffee,GunPoint"]) == ["GunPoint", "Coffee"]
    assert resolve_names("ArrowHead") == ["ArrowHead"]
    assert "GunPoint" in raises_one_line("unknown UCR dataset 'GunPoin'", resolve_names, ["GunPoin"])
    raises_one_line("no dataset names", resolve_names, [" , "])


def test_resolve_root(tmp_path, monkeypatch):
    assert resolve_root(None) is None  # empty cache
    write_dataset(cache_dir(), "GunPoint")
    assert resolve_root(None) == cache_dir()
    env_root, arg_root = tmp_path / "env", tmp_path / "arg"
    env_root.mkdir(), arg_root.mkdir()
    monkeypatch.setenv("UCR_ARCHIVE_DIR", str(env_root))
    assert resolve_root(None) == env_root
    assert resolve_root(arg_root) == arg_root
    raises_one_line("is not a folder", resolve_root, tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    raises_one_line("is not a folder", resolve_root, str(tmp_path / "file"))
    monkeypatch.setenv("UCR_ARCHIVE_DIR", str(tmp_path / "gone"))
    raises_one_line(r"\(UCR_ARCHIVE_DIR\) is not a folder", resolve_root, None)


# --- real data ---

@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_loads_offline_and_matches_summary(name, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access while loading a bundled dataset")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ds = load_dataset(name)
    row = archive_summary().set_index("Name").loc[name]
    assert len(ds.y_train) + len(ds.y_val) == row.Train and len(ds.y_test) == row.Test
    assert ds.n_classes == row.Class and set(np.unique(ds.y_train)) == set(range(ds.n_classes))
    if row.Length != "Vary":
        assert ds.length == int(row.Length)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (len(y), ds.length)
        assert np.isfinite(x).all()
    archive_train = np.concatenate([ds.x_train, ds.x_val])
    assert abs(archive_train.mean()) < 1e-4 and abs(archive_train.std() - 1) < 1e-4


def test_gunpoint():
    ds = load_dataset("GunPoint", val_fraction=0.2)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test), ds.length, ds.n_classes) == (40, 10, 150, 150, 2)
    assert len(load_dataset("GunPoint").y_train) == 50        # by default the tokenizer trains on the whole split
    assert ds.classes == (1, 2) and np.bincount(ds.y_val).tolist() == [5, 5]


def test_pickup_gesture_variable_length():
    y, x, _, _ = _load_bundled("PickupGestureWiimoteZ")
    assert x.shape[1] == 361 and np.isnan(x).any()
    resampled = load_dataset("PickupGestureWiimoteZ", val_fraction=0)
    zero = load_dataset("PickupGestureWiimoteZ", val_fraction=0, nan_policy="zero")
    short = int(np.argmax(np.isnan(x).sum(axis=1)))
    n_valid = int((~np.isnan(x[short])).sum())
    expect_first, expect_last = (x[short, [0, n_valid - 1]] - resampled.mean) / resampled.std
    assert np.allclose(resampled.x_train[short, [0, -1]], [expect_first, expect_last], atol=1e-5)
    assert (zero.x_train[short, n_valid:] == 0).all()
    assert np.allclose(zero.x_train[short, :n_valid], (x[short, :n_valid] - zero.mean) / zero.std, atol=1e-5)
    assert zero.mean == pytest.approx(np.nanmean(x)) and zero.std == pytest.approx(np.nanstd(x))


@needs_shared
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_equals_archive_copy(name):
    bundled, archive = load_dataset(name), load_dataset(name, SHARED)
    for field in ("x_train", "x_val", "x_test"):
        assert np.allclose(getattr(bundled, field), getattr(archive, field), atol=1e-5)
    assert bundled.classes == archive.classes and (bundled.y_test == archive.y_test).all()


@needs_shared
def test_dodger_loop_day_interior_nan():
    y, x = read_tsv(SHARED / "DodgerLoopDay" / "DodgerLoopDay_TRAIN.tsv")
    ds = load_dataset("DodgerLoopDay", SHARED, val_fraction=0)
    zero = load_dataset("DodgerLoopDay", SHARED, val_fraction=0, nan_policy="zero")
    assert (len(y), ds.length, ds.n_classes) == (78, 288, 7)
    rows, cols = np.nonzero(np.isnan(x))
    assert len(rows) and np.isfinite(ds.x_train).all() and (zero.x_train[rows, cols] == 0).all()
    inner = (cols > 0) & (cols < x.shape[1] - 1)
    r, c = rows[inner], cols[inner]
    lo = np.minimum(ds.x_train[r, c - 1], ds.x_train[r, c + 1]) - 1e-5
    hi = np.maximum(ds.x_train[r, c - 1], ds.x_train[r, c + 1]) + 1e-5
    assert ((ds.x_train[r, c] >= lo) & (ds.x_train[r, c] <= hi)).all()  # linear interpolation stays between


@needs_shared
def test_gesture_pebble_variable_length():
    ds = load_dataset("GesturePebbleZ1", SHARED)
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test), ds.length, ds.n_classes) == (132, 172, 455, 6)
    assert np.isfinite(ds.x_test).all()


@needs_shared
def test_every_shared_dataset_loads():
    names = sorted(p.name for p in SHARED.iterdir() if (p / f"{p.name}_TRAIN.tsv").is_file())
    assert len(names) >= 49
    for name in names:
        ds = load_dataset(name, SHARED)
        assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all(), name


# --- preprocessing ---

def test_fill_nan():
    nan = np.nan
    x = np.array([[1, nan, 3, 4, 5], [nan, 2, 4, nan, nan], [0, 1, 2, nan, nan]])
    filled = fill_nan(x, padded=False)
    assert np.allclose(filled, [[1, 2, 3, 4, 5], [2, 2, 4, 4, 4], [0, 1, 2, 2, 2]])
    resampled = fill_nan(x, padded=True)
    assert np.allclose(resampled[0], [1, 2, 3, 4, 5])
    assert np.allclose(resampled[1], [2, 2, 2, 3, 4])  # leading NaN filled, then the prefix [2, 2, 4] stretched
    assert np.allclose(resampled[2], np.linspace(0, 2, 5))
    assert np.isnan(x).sum() == 6  # input untouched
    raises_one_line("all NaN", fill_nan, np.full((1, 3), nan), True)


def test_normalisation_uses_train_split_only(tmp_path):
    """The archive's test split never changes the statistics (no test leakage)."""
    def scale_test(y_tr, x_tr, y_te, x_te):
        return y_tr, x_tr, y_te, x_te * 100 + 7

    clean = load_dataset("GunPoint", write_dataset(tmp_path / "a", "GunPoint"))
    scaled = load_dataset("GunPoint", write_dataset(tmp_path / "b", "GunPoint", scale_test))
    assert (clean.mean, clean.std) == pytest.approx((scaled.mean, scaled.std))
    assert np.array_equal(clean.x_train, scaled.x_train) and np.array_equal(clean.x_val, scaled.x_val)


def test_normalisation_uses_the_training_part_only(tmp_path):
    """With a validation split, its series never shape the statistics either: scaling them changes nothing
    else."""
    y = _load_bundled("GunPoint")[0]
    _, val_idx = split_train_val(np.searchsorted(np.unique(y), y), 0.2, 3)

    def scale_val(y_tr, x_tr, y_te, x_te):
        x_tr[val_idx] = x_tr[val_idx] * 100 + 7
        return y_tr, x_tr, y_te, x_te

    clean = load_dataset("GunPoint", write_dataset(tmp_path / "a", "GunPoint"), val_fraction=0.2, seed=3)
    scaled = load_dataset("GunPoint", write_dataset(tmp_path / "b", "GunPoint", scale_val), val_fraction=0.2, seed=3)
    assert len(clean.y_val) == len(val_idx) and (clean.mean, clean.std) == pytest.approx((scaled.mean, scaled.std))
    assert np.array_equal(clean.x_train, scaled.x_train) and np.array_equal(clean.x_test, scaled.x_test)


def test_labels_encoded_from_train_and_split_carved_from_train():
    y, x, y_test, x_test = _load_bundled("ArrowHead")
    ds = load_dataset("ArrowHead", seed=3)
    assert ds.classes == tuple(int(c) for c in np.unique(y))
    assert (np.array(ds.classes)[ds.y_test] == y_test).all()
    assert np.allclose(ds.x_test, (x_test - ds.mean) / ds.std, atol=1e-5)
    normalised = ((x - ds.mean) / ds.std).astype(np.float32)
    rows = {r.tobytes(): c for r, c in zip(normalised, y)}
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        assert all(rows[r.tobytes()] == ds.classes[c] for r, c in zip(xs, ys))  # rows of the archive's train split
    together = {r.tobytes() for r in np.concatenate([ds.x_train, ds.x_val])}
    assert len(together) == len(y) and not together & {r.tobytes() for r in ds.x_test.astype(np.float32)}


# --- validation split ---

def check_split(y, val_fraction, seed):
    train, val = split_train_val(y, val_fraction, seed)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))  # disjoint, covering
    classes, counts = np.unique(y, return_counts=True)
    val_counts = np.array([(y[val] == c).sum() for c in classes])
    assert ((counts - val_counts) >= 1).all()  # every class keeps a training series
    assert (val_counts[counts >= 2] >= 1).all() and (val_counts[counts == 1] == 0).all()
    assert len(val) >= min(len(classes), (counts - 1).sum())
    return train, val, val_counts


def test_split_rule_on_random_label_sets():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_classes = int(rng.integers(2, 12))
        y = rng.integers(0, n_classes, size=int(rng.integers(n_classes, 120)))
        check_split(y, float(rng.choice([0.1, 0.2, 0.5])), int(rng.integers(100)))


def test_split_is_stratified_and_seeded():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    train, val, val_counts = check_split(y, 0.2, seed=0)
    assert val_counts.tolist() == [10, 6, 4]
    again = split_train_val(y, 0.2, 0)
    assert np.array_equal(again[1], val) and np.array_equal(again[0], train)
    assert not np.array_equal(split_train_val(y, 0.2, 1)[1], val)


def test_split_tiny_train_sets():
    _, val, val_counts = check_split(np.repeat([0, 1], 10), 0.2, 0)  # 20 series: 2 + 2
    assert val_counts.tolist() == [2, 2]
    _, _, val_counts = check_split(np.repeat(np.arange(10), 2), 0.2, 0)  # 10 classes of 2: one each
    assert val_counts.tolist() == [1] * 10
    _, _, val_counts = check_split(np.array([0, 1, 1, 2, 2, 2, 2, 2, 2, 2]), 0.2, 0)  # singleton stays in train
    assert val_counts.tolist() == [0, 1, 2]
    assert len(split_train_val(np.arange(18), 0.2, 0)[1]) == 0  # Fungi: 18 classes of one series
    assert len(split_train_val(np.repeat([0, 1], 10), 0.0, 0)[1]) == 0
    raises_one_line("val_fraction", split_train_val, np.repeat([0, 1], 10), 1.0, 0)


# --- bad input ---

def test_dataset_not_available(tmp_path):
    raises_one_line("Coffee is not available offline.*python -m datasets.download", load_dataset, "Coffee")
    raises_one_line("GunPoint is not in the UCR archive root.*--ucr-root", load_dataset, "GunPoint", tmp_path)
    raises_one_line("unknown UCR dataset", load_dataset, "GunPont")
    raises_one_line("nan_policy", load_dataset, "GunPoint", nan_policy="mean")


def test_cache_is_used_before_bundled():
    write_dataset(cache_dir(), "GunPoint", lambda a, b, c, d: (a, b * 2, c, d))
    assert load_dataset("GunPoint").std == pytest.approx(2 * np.std(_load_bundled("GunPoint")[1]))


@pytest.mark.parametrize("content, match", [
    ("1\t0.5\t0.6\n2\t0.1\n", "ragged rows, line 2 has 2 fields but line 1 has 3"),
    ("1\t0.5\t0.6\n2\t0.1\tabc\n", "non-numeric cell 'abc' at line 2, column 3"),
    ("", "has no rows"),
    ("\n\n", "has no rows"),
    ("NaN\t0.5\n", "line 1 has no label"),
    ("1\n2\n", "no values after the label"),
])
def test_malformed_tsv(tmp_path, content, match):
    folder = tmp_path / "GunPoint"
    folder.mkdir()
    (folder / "GunPoint_TRAIN.tsv").write_text(content)
    (folder / "GunPoint_TEST.tsv").write_text("1\t0.5\t0.6\n")
    raises_one_line(match, load_dataset, "GunPoint", tmp_path)


def test_unreadable_file(tmp_path):
    folder = tmp_path / "GunPoint"
    (folder / "GunPoint_TRAIN.tsv").mkdir(parents=True)  # a folder where the file should be
    raises_one_line("cannot read", load_dataset, "GunPoint", tmp_path)
    (folder / "GunPoint_TRAIN.tsv").rmdir()
    (folder / "GunPoint_TRAIN.tsv").write_bytes(b"\xff\xfe1\t2\n")
    raises_one_line("cannot read", load_dataset, "GunPoint", tmp_path)


@pytest.mark.parametrize("name, edit, match", [
    ("GunPoint", lambda a, b, c, d: (a[:-3], b[:-3], c, d), "train split has 47 series, the archive summary says 50"),
    ("GunPoint", lambda a, b, c, d: (a, b, c[1:], d[1:]), "test split has 149 series"),
    ("GunPoint", lambda a, b, c, d: (a, b[:, :-1], c, d[:, :-1]), "length 149, the archive summary says 150"),
    ("GunPoint", lambda a, b, c, d: (a, b, c, d[:, :-1]), "train rows have length 150 but test rows 149"),
    ("PickupGestureWiimoteZ", lambda a, b, c, d: (a, np.pad(b, ((0, 0), (0, 1)), constant_values=np.nan), c,
                                                  np.pad(d, ((0, 0), (0, 1)), constant_values=np.nan)),
     "padded to 362 but the longest series has 361"),
    ("GunPoint", lambda a, b, c, d: (np.ones_like(a), b, c, d), "train split has only one class"),
    ("GunPoint", lambda a, b, c, d: (np.where(a == 2, 3, a), b, c, d), r"test labels \['2'\] never occur"),
    ("ArrowHead", lambda a, b, c, d: (np.where(a == 2, 1, a), b, np.where(c == 2, 1, c), d),
     "2 classes, the archive summary says 3"),
])
def test_disagrees_with_summary(tmp_path, name, edit, match):
    root = write_dataset(tmp_path, name, edit)
    message = raises_one_line(match, load_dataset, name, root)
    assert str(root / name) in message


@needs_shared
def test_copied_archive_folder_with_dropped_rows(tmp_path):
    folder = tmp_path / "Coffee"
    folder.mkdir()
    (folder / "Coffee_TEST.tsv").write_bytes((SHARED / "Coffee" / "Coffee_TEST.tsv").read_bytes())
    lines = (SHARED / "Coffee" / "Coffee_TRAIN.tsv").read_text().splitlines(keepends=True)
    (folder / "Coffee_TRAIN.tsv").write_text("".join(lines[:-2]))
    raises_one_line("train split has 26 series, the archive summary says 28", load_dataset, "Coffee", tmp_path)


# --- non-finite and overflowing cells, all-NaN series: the file, the split and the 1-based line ---

def _with_cell(value, row=3, col=5):
    def edit(y_tr, x_tr, y_te, x_te):
        x_tr[row, col] = value
        return y_tr, x_tr, y_te, x_te
    return edit


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e308])
def test_non_finite_or_overflowing_cell_names_file_and_line(tmp_path, value):
    root = write_dataset(tmp_path, "GunPoint", _with_cell(value))
    err = raises_one_line("line 4, column 7", load_dataset, "GunPoint", root)
    assert "GunPoint_TRAIN.tsv" in err and "constant" not in err


def test_all_nan_series_names_file_split_line_and_the_option(tmp_path):
    def edit(y_tr, x_tr, y_te, x_te):
        x_te[9] = np.nan
        return y_tr, x_tr, y_te, x_te
    root = write_dataset(tmp_path, "GunPoint", edit)
    err = raises_one_line("line 10 is all NaN", load_dataset, "GunPoint", root)
    assert "GunPoint_TEST.tsv" in err and "nan_policy=zero" in err
    assert np.isfinite(load_dataset("GunPoint", root, nan_policy="zero").x_test).all()
