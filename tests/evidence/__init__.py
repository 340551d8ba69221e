"""Checks on the committed data (profiles/, results/, reports/) rather than on the code."""
