"""Automatic assignment of team tickets to online agents with room under their capacity."""
