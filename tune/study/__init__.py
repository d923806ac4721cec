"""The study: plan (every check before anything starts), run (Ray + Tune), search (Optuna per dataset),
trial (one configuration trained and tracked), tracking (the MLflow layout), summary (parent runs)."""
