"""What users run: the `coseg` command, the retrieval trainer, reports."""
