"""The study: plan (every check before anything starts), run (Ray + Tune), search (Optuna per dataset),
scheduler (early stopping of configurations on their seed means), trial (one configuration trained and
tracked), tracking (the MLflow layout), summary (parent runs), auth (a Ray cluster's token), and their
helpers: console, estimate, interrupts, preflight, retry."""
