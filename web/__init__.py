"""Web app: dashboard, public audio pages and feeds, health check, webhooks."""
