"""Reproducing the paper's tables and ablations: every row over several seeds, timed, reported."""
