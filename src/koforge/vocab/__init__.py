"""koforge.vocab"""
