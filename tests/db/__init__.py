"""Tests for db/."""
