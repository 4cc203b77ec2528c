"""Console sign-in: password checks and throttling of repeated failures."""
