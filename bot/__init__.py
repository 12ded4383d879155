"""Chat front ends: a channel-neutral conversation core and platform adapters."""
