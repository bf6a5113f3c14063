"""Test package (unique module names: tests/unit/test_x.py and tests/e2e/test_x.py may coexist)."""
