"""Tests for bot/."""
