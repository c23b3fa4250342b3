"""Test harness helpers: real engines and programs, started and stopped by the tests."""
