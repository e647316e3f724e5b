"""Test-time baselines DATE is compared with, on the same stock pipelines and harness."""
