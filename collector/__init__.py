"""llmlens.collector: spans into rows.
"""
