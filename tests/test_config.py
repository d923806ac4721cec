import pytest

from tune.config import ConfigError, TrainConfig, from_flat_dict, to_flat_dict


def test_flat_round_trip():
    cfg = TrainConfig(dataset="ArrowHead", ssl_method="vibcreg")
    assert from_flat_dict(to_flat_dict(cfg)) == cfg
    assert "tokenizer.codebook_size" in to_flat_dict(cfg)


def test_dotted_keys_and_strings_are_coerced():
    cfg = from_flat_dict({"tokenizer.codebook_size": "64", "lr": "0.002", "epochs": 3})
    assert cfg.tokenizer.codebook_size == 64 and cfg.lr == pytest.approx(0.002) and cfg.epochs == 3


def test_bookkeeping_never_rides_in_the_config():
    """Trial bookkeeping (MLflow ids, search groups) is passed beside the config, so a config holds only
    real parameters and an underscored key is as unknown as any other."""
    with pytest.raises(ConfigError, match="unknown config key.*_group"):
        from_flat_dict({"epochs": 3, "_group": "GunPoint-0000"})


def test_unknown_key_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown config key.*tokenizer.codebok_size"):
        from_flat_dict({"tokenizer.codebok_size": 64})


def test_bad_value_type():
    with pytest.raises(ValueError, match="epochs expects int"):
        from_flat_dict({"epochs": "many"})


@pytest.mark.parametrize("values, match", [
    ({"ssl_method": "simclr"}, "unknown ssl_method 'simclr'; choose one of none, barlowtwins, vibcreg"),
    ({"ssl_method": "vibcreg", "aug_set": "twist"}, "twist"),
    ({"epochs": 0}, "at least 1"),
    ({"ssl_latent": "zq"}, "unknown ssl_latent .zq.; use z_q"),
])
def test_invalid_values_are_rejected(values, match):
    with pytest.raises(ValueError, match=match):
        from_flat_dict(values)


def test_baseline_ignores_the_augmentation_set():
    assert from_flat_dict({"ssl_method": "none", "aug_set": "none"}).aug_set == "none"
