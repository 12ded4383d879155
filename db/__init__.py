"""Database models, engine helpers, migrations and seed data."""
