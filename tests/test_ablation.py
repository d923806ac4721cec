"""The ablation's statistics (results.ablation) on synthetic trial tables with known effects."""
import numpy as np
import pandas as pd

from results.ablation import answer_lines, aug_effects, thesis_verdict, weight_effects

WEIGHTS = (0.05, 0.1, 0.15, 0.2)


def _trials(weight_slope: float, aug_shift: float, datasets=("A", "B", "C"), seeds=3, noise=0.002) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"dataset": "A", "ssl_method": "none", "aug_set": "none", "aug_recon_weight": 0.0, "seed": 0,
             "status": "FINISHED", "test/svm_acc": 0.5, "test/knn_acc": 0.5, "test/recon_loss": 0.1}]
    for ds in datasets:
        for method in ("barlowtwins", "vibcreg"):
            for aug in ("warp", "slice"):
                for w in WEIGHTS:
                    for s in range(seeds):
                        acc = 0.7 + weight_slope * w + (aug_shift if aug == "warp" else 0) + rng.normal(0, noise)
                        rows.append({"dataset": ds, "ssl_method": method, "aug_set": aug, "aug_recon_weight": w,
                                     "seed": s, "status": "FINISHED", "test/svm_acc": acc, "test/knn_acc": acc,
                                     "test/recon_loss": 0.1 + rng.normal(0, noise)})
    rows.append({**rows[-1], "status": "FAILED", "test/svm_acc": 0.0})     # failed trials never count
    return pd.DataFrame(rows)


def test_a_weight_that_moves_accuracy_is_found_and_one_that_does_not_is_not():
    strong = weight_effects(_trials(weight_slope=1.0, aug_shift=0.0))
    svm = strong[strong["metric"] == "test/svm_acc"]
    assert len(svm) == 4 and (svm["blocks"] == 9).all() and (svm["weights"] == 4).all()
    assert (svm["p_holm"] < 0.05).all() and (svm["kendall_w"] > 0.9).all()
    assert np.allclose(svm["weight_gap"], 0.5 / 6, atol=0.01)    # mean |difference| of 0.75, 0.8, 0.85, 0.9
    flat = weight_effects(_trials(weight_slope=0.0, aug_shift=0.0))
    assert (flat.loc[flat["metric"] == "test/svm_acc", "p_holm"] > 0.05).all()


def test_the_augmentation_set_is_compared_with_the_weight():
    trials = _trials(weight_slope=0.0, aug_shift=0.05)
    weights, augs = weight_effects(trials), aug_effects(trials)
    svm = augs[augs["metric"] == "test/svm_acc"]
    assert (svm["sets"] == "warp - slice").all() and (svm["blocks"] == 36).all()
    assert np.allclose(svm["mean_diff"], 0.05, atol=0.005) and (svm["p_holm"] < 0.05).all()
    text = "\n".join(answer_lines(weights, augs))
    assert "the set matters more than the weight" in text and "changes it significantly for no method" in text
    assert "this study agrees on probe accuracy" in thesis_verdict(weights, augs)
    moved = _trials(weight_slope=1.0, aug_shift=0.0)
    assert "does not fully agree" in thesis_verdict(weight_effects(moved), aug_effects(moved))


def test_too_few_blocks_or_weights_give_no_p_value():
    one = _trials(0.5, 0.0, datasets=("A",), seeds=1)
    assert weight_effects(one)["p_value"].isna().all()        # a single (dataset, seed) block
    two_weights = one[one["aug_recon_weight"].isin([0.0, 0.05, 0.1])]
    assert weight_effects(two_weights)["p_value"].isna().all()


def test_a_study_too_small_for_the_weight_test_says_so():
    small = _trials(weight_slope=0.0, aug_shift=0.05, datasets=("A",), seeds=2)
    weights, augs = weight_effects(small), aug_effects(small)
    assert "no weight effect can be significant at this size" in "\n".join(answer_lines(weights, augs))
    assert "cannot confirm or refute it on probe accuracy" in thesis_verdict(weights, augs)
