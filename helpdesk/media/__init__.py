"""Media that lasts: copies of inbound media, agents' uploads, and where they are stored."""
