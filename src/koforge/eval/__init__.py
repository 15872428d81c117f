"""koforge.eval"""
