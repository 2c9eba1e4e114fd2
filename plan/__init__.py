"""Precision plan files: the answer's plan written in the formats the tools that train or quantize read."""
