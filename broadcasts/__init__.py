"""The broadcast domain: bulletins, approval, audiences, schedules, delivery."""
