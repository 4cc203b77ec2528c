"""The audit log: who changed which setting, role, token or channel, and which data was erased."""
