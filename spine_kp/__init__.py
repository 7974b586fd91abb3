"""spine_kp."""
