"""Search over a brand's messages and contacts for the console."""
