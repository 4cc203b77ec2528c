"""Idempotent writes: a key names one write, whose first answer every repeat gets back."""
