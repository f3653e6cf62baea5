"""The results report: runs, evaluations and experiments as one HTML page, Markdown and CSV tables."""
