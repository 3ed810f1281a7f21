"""Person detectors: frames in, person boxes and scores out."""
