"""Cases: probe photos submitted by caseworkers, their search status, quotas and retention."""
