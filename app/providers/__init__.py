"""CometAPI families behind one adapter interface, and the model catalogue."""
