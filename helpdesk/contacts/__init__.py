"""Contacts as agents keep them: their profile, free attributes and a note; the export of
everything held about one person, and their erasure (through `helpdesk.privacy.erase`)."""
