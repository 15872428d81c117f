"""koforge.lm"""
