"""Tests for the audio package."""
