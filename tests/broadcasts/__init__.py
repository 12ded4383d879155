"""Tests for broadcasts/."""
