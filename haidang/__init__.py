"""Hải Đăng composition root: settings, CLI and runtime wiring."""
