"""`twincnn compare`: train both twins under one protocol and report them side by side.

protocol.py trains one framework once; summary.py aggregates repeats and the difference;
output.py writes the table, results.json and report.md atomically; plots.py draws the figures.
"""
