"""Plots for inspection (matplotlib, imported lazily so the rest of minimner never needs a display)."""
