"""The engines' shared scaffolding: atomic writes, self-describing model files, the minibatch epoch."""
import pytest
import torch

from models.fcn import FCN
from tune.engine.checkpoints import FORMAT, CheckpointError, atomic_save, atomic_write, load_model, save_model
from tune.engine.loop import TrainingDiverged, check_diverged, train_epoch


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_atomic_save_leaves_the_old_file_and_no_temp_file_when_writing_fails(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save(path, {"epoch": 1})
    with pytest.raises(Exception):
        atomic_save(path, {"epoch": 2, "unpicklable": lambda: None})
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert list(tmp_path.iterdir()) == [path]
    atomic_write(tmp_path / "sub" / "a.json", lambda f: f.write("{}"), mode="w")   # any writer, any folder
    assert (tmp_path / "sub" / "a.json").read_text() == "{}" and len(list((tmp_path / "sub").iterdir())) == 1


def test_model_file_round_trip_ignores_unknown_keys(tmp_path):
    model = FCN(1, 3)
    save_model(tmp_path / "m.pt", model, model.kwargs, meta={"a": 1}, written_by="a later version")
    loaded, blob = load_model(tmp_path / "m.pt", FCN, "FCN", keys=("meta",))
    assert not loaded.training and blob["meta"] == {"a": 1}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


@pytest.mark.parametrize("content, message", [
    ("text", r"is not a FCN checkpoint \(torch.load failed"),
    ({"kwargs": {"in_channels": 1, "n_classes": 2}}, "no format version"),
    ({"format": FORMAT, "kwargs": {"in_channels": 1, "n_classes": 2}}, "it lacks state_dict"),
    ({"format": FORMAT + 1, "kwargs": {}, "state_dict": {}}, f"format {FORMAT + 1} but this code reads format"),
    ({"format": FORMAT, "kwargs": {"in_channels": 1, "classes": 2}, "state_dict": {}}, "does not rebuild"),
    ({"format": FORMAT, "kwargs": {"in_channels": 1, "n_classes": 2}, "state_dict": {}}, "does not rebuild"),
])
def test_what_is_not_a_model_file_is_one_line_checkpoint_error(tmp_path, content, message):
    path = tmp_path / "m.pt"
    if isinstance(content, str):
        path.write_text(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(path, FCN, "FCN")
    one_line(err)
    with pytest.raises(CheckpointError, match="no FCN checkpoint at"):
        load_model(tmp_path / "missing.pt", FCN, "FCN")


def test_train_epoch_visits_every_example_once_in_near_equal_batches():
    w = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([w], lr=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    seen = []

    def loss_fn(idx):
        seen.append(idx)
        return (w - idx.float().mean()) ** 2

    mean = train_epoch(loss_fn, opt, 10, 4, torch.Generator().manual_seed(0), torch.device("cpu"), sched)
    assert sorted(torch.cat(seen).tolist()) == list(range(10))
    assert sorted(len(i) for i in seen) == [2, 2, 3, 3] and sched.last_epoch == 4
    expected = sum(float(i.float().mean()) ** 2 for i in seen) / 4
    assert isinstance(mean, torch.Tensor) and float(mean) == pytest.approx(expected)


def test_check_finite_names_the_first_bad_value():
    check_diverged(1, {"loss": 0.5, "features": torch.ones(3).numpy()}, "lower lr")
    with pytest.raises(TrainingDiverged, match=r"^diverged at epoch 3: train/loss is inf; lower lr$") as err:
        check_diverged(3, {"ok": 1.0, "train/loss": float("inf")}, "lower lr")
    one_line(err)
    with pytest.raises(TrainingDiverged, match="val features is not finite"):
        check_diverged(2, {"val features": torch.tensor([[0.0, float("nan")]]).numpy()}, "lower lr")
