"""What the app holds about a person, and erasing it on request (Meta's data-deletion callback,
later an admin's contact erase)."""
