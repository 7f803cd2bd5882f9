"""The `cloudai` command-line interface."""
