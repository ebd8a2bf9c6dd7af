"""Workflow definitions: the schema of WORKFLOWS.md, its loader and validator, and a dry run."""
