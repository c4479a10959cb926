"""Test stand-in package (not Open edX code)."""
