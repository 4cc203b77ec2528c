"""Customer satisfaction: the survey after a resolved ticket, its answers and figures."""
