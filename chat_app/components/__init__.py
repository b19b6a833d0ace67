"""Reflex UI functions: pure functions of state vars, no business logic."""
