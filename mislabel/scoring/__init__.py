"""Noise detectors (the paper's LSTM), hand-crafted baseline scores, and ranking metrics."""
