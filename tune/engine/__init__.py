"""Ray-free engines: the stage-1 and prior training loops, generation and its FID / IS / CAS evaluation,
the FCN cache, and the scaffolding they share (epoch loop, atomic checkpoints, device choice).

Nothing here imports Ray, Optuna or MLflow: progress leaves through an `on_epoch(metrics, epoch)`
callback, so tests drive these loops directly and the study (tune.study) wraps the same code.
"""
