"""Automations: rules that act on tickets when something happens, or when nothing does."""
