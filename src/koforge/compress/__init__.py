"""koforge.compress"""
