"""Readers for the data sources the tasks use (files in standard formats, packaged data sets)."""
