"""Searching configurations with Optuna: spaces (TOML) and the two-objective study."""
