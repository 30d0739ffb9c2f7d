"""Spec models: what a workload fixes, what a submission declares, what a trial records."""
