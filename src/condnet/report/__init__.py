"""Figures and tables made from a run's records."""
