"""The nightly batch: ingest, features, evaluate, allocate, post, report."""
