"""Tests for web/."""
