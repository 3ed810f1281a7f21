"""Official metrics: AVA frame-mAP, Kinetics multi-view accuracy."""
