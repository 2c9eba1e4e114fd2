"""Collector: measure massive activations over checkpoint series, or import published statistics.

Writes the stats table (``maforecast.tables.StatsRow``). Heavy dependencies (torch,
transformers) are imported only by the modules that measure, never by the importers.
"""
