"""Run reports: report.json, a Markdown summary and PNG plots."""
