"""The test suite, mirroring the packages; shared fixtures in conftest.py."""
