"""Reflex State classes: thin adapters that hold UI state, call services and raise toasts."""
